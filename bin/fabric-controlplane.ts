/**
 * fabric-controlplane: the embedded control plane in one process — PostgreSQL
 * (embedded unless DATABASE_URL is set), the kube-compatible API server and
 * the metrics endpoint.
 *
 *   fabric-controlplane [--state-dir DIR] [--port 6443] [--metrics-port 9464]
 *                       [--host 127.0.0.1] [--no-fsync]
 */
import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { runControlPlane } from "../apiserver/controlplane.js";
import { logger } from "../lib/log.js";

const log = logger("controlplane");

const usage = `usage: fabric-controlplane [options]

  --state-dir DIR      state directory (default $FABRIC_STATE_DIR or .fabric)
  --host ADDR          address the API listens on (default 127.0.0.1)
  --port N             API server port, 0 for an ephemeral port (default 6443)
  --metrics-port N     Prometheus /metrics port, 0 for ephemeral (default 9464)
  --database-url URL   external PostgreSQL (default $DATABASE_URL; embedded when unset)
  --no-fsync           embedded PostgreSQL without fsync (tests only: loses data on power loss)
  -h, --help           this text
`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      "state-dir": { type: "string" },
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "6443" },
      "metrics-port": { type: "string", default: "9464" },
      "database-url": { type: "string" },
      "no-fsync": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(usage);
    return;
  }
  const port = Number.parseInt(values.port, 10);
  const metricsPort = Number.parseInt(values["metrics-port"], 10);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid --port: ${values.port}`);
  if (!Number.isInteger(metricsPort) || metricsPort < 0 || metricsPort > 65535) throw new Error(`invalid --metrics-port: ${values["metrics-port"]}`);
  const stateDir = resolve(values["state-dir"] ?? process.env.FABRIC_STATE_DIR ?? ".fabric");
  const cp = await runControlPlane({
    stateDir,
    host: values.host,
    port,
    metricsPort,
    databaseUrl: values["database-url"],
    fsync: !values["no-fsync"],
    log,
  });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("shutting down", { signal });
    cp.stop()
      .then(() => {
        log.info("stopped");
        process.exit(0);
      })
      .catch((err: unknown) => {
        log.error("shutdown failed", { err });
        process.exit(1);
      });
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
}

main().catch((err: unknown) => {
  log.error("control plane failed to start", { err });
  process.exit(1);
});
