/**
 * fabric-controllers: the controllers alone, against any Kubernetes API
 * server that has the accessfabric.io CRDs (a real cluster, or an embedded
 * control plane started with --controllers=false), with an external
 * PostgreSQL. Several replicas elect a leader through a Lease.
 *
 *   DATABASE_URL=postgres://... FABRIC_KEK=<base64 32 bytes> \
 *   fabric-controllers [--kubeconfig FILE] [--metrics-port 8080] [lease flags]
 *
 * Serves /metrics, /healthz (process alive) and /readyz (caches synced).
 */
import http from "node:http";
import { hostname } from "node:os";
import { parseArgs } from "node:util";
import { KubeConfig } from "@kubernetes/client-node";
import client from "prom-client";
import { leaseFlagOptions, leaseFlagUsage, leaseSettingsFromFlags } from "../controllers/flags.js";
import { startControllers } from "../controllers/main.js";
import { loadKek } from "../lib/crypto/kek.js";
import { openDatabase } from "../lib/db/database.js";
import { logger } from "../lib/log.js";
import { PooledKubeConfig } from "../lib/kube/kubeconfig.js";

const log = logger("controllers");

const usage = `usage: fabric-controllers [options]

  DATABASE_URL (required) external PostgreSQL; FABRIC_KEK (or --kek-file) the key-encryption key

  --kubeconfig FILE    kubeconfig (default $KUBECONFIG, then in-cluster service account)
  --metrics-port N     /metrics, /healthz, /readyz (default 8080, 0 for ephemeral)
  --metrics-host ADDR  address of that endpoint (default 0.0.0.0)
  --kek-file FILE      file holding the base64 key-encryption key (when FABRIC_KEK is unset)
${leaseFlagUsage("$POD_NAMESPACE or fabric-system")}  -h, --help           this text
`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      kubeconfig: { type: "string" },
      "metrics-port": { type: "string", default: "8080" },
      "metrics-host": { type: "string", default: "0.0.0.0" },
      "kek-file": { type: "string" },
      ...leaseFlagOptions(process.env.POD_NAME ?? `${hostname()}-${process.pid}`, process.env.POD_NAMESPACE ?? "fabric-system"),
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(usage);
    return;
  }
  const databaseUrl = process.env.DATABASE_URL;
  if (!databaseUrl) throw new Error("DATABASE_URL is required");
  const metricsPort = Number.parseInt(values["metrics-port"], 10);
  if (!Number.isInteger(metricsPort) || metricsPort < 0 || metricsPort > 65535) throw new Error(`invalid --metrics-port: ${values["metrics-port"]}`);
  const settings = leaseSettingsFromFlags(values);
  const kek = loadKek({ file: values["kek-file"] });

  const kubeConfig = new PooledKubeConfig();
  const kubeconfigFile = values.kubeconfig ?? process.env.KUBECONFIG;
  if (kubeconfigFile) kubeConfig.loadFromFile(kubeconfigFile);
  else kubeConfig.loadFromCluster();

  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  const db = await openDatabase({ stateDir: ".", databaseUrl, log: log.with({ part: "db" }), maxConnections: 12 });
  const controllers = startControllers({ ...settings, kubeConfig, pool: db.pool, kek, registry, log });
  let synced = false;
  void controllers.waitForSync().then((ok) => (synced = ok));

  const server = http.createServer((req, res) => {
    if (req.url === "/metrics") {
      registry.metrics().then(
        (body) => {
          res.writeHead(200, { "Content-Type": registry.contentType });
          res.end(body);
        },
        () => {
          res.writeHead(500);
          res.end();
        },
      );
      return;
    }
    if (req.url === "/healthz") {
      res.writeHead(200);
      res.end("ok\n");
      return;
    }
    if (req.url === "/readyz") {
      res.writeHead(synced ? 200 : 503);
      res.end(synced ? "ok\n" : "caches not synced\n");
      return;
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise<void>((r) => server.listen(metricsPort, values["metrics-host"], () => r()));
  const addr = server.address();
  log.info("controllers ready", { identity: settings.identity, metricsPort: typeof addr === "object" && addr ? addr.port : metricsPort, kek: kek.id });

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info("shutting down", { signal });
    controllers
      .stop()
      .then(async () => {
        server.closeAllConnections();
        await new Promise<void>((r) => server.close(() => r()));
        await db.close();
        process.exit(0);
      })
      .catch((err: unknown) => {
        log.error("shutdown failed", { error: err });
        process.exit(1);
      });
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
}

main().catch((err: unknown) => {
  log.error("controllers failed to start", { error: err });
  process.exit(1);
});
