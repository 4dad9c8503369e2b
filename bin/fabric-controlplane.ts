/**
 * fabric-controlplane: the embedded control plane in one process — PostgreSQL
 * (embedded unless DATABASE_URL is set), the kube-compatible API server and
 * the metrics endpoint, and the controllers (Lease leader election, so several
 * processes may share one database).
 *
 *   fabric-controlplane [--state-dir DIR] [--port 6443] [--metrics-port 9464]
 *                       [--host 127.0.0.1] [--no-fsync] [--controllers=false]
 */
import { hostname } from "node:os";
import { parseArgs } from "node:util";
import { resolve } from "node:path";
import type { ControlPlane } from "../controlplane/controlplane.js";
import { leaseFlagOptions, leaseFlagUsage, leaseSettingsFromFlags } from "../controllers/flags.js";
import { logger, parseLogFormat, setLogFormat } from "../lib/log.js";
import { parseDuration } from "../lib/enrollment/token.js";
import { parseRateLimit } from "../agentapi/rate-limit.js";

const log = logger("controlplane");

const usage = `usage: fabric-controlplane [options]

  --state-dir DIR      state directory (default $FABRIC_STATE_DIR or .fabric)
  --host ADDR          address the API listens on (default 127.0.0.1)
  --port N             API server port, 0 for an ephemeral port (default 6443)
  --metrics-port N     Prometheus /metrics port, 0 for ephemeral (default 9464)
  --database-url URL   external PostgreSQL (default $DATABASE_URL; embedded when unset)
  --no-fsync           embedded PostgreSQL without fsync (tests only: loses data on power loss)
  --controllers BOOL   run the controllers in this process (default true)
  --agent-port N       agent-facing enrollment API (HTTPS) port, 0 for ephemeral, -1 off (default 8443)
  --node-cert-lifetime DUR    lifetime of node certificates (default 24h)
  --join-request-retention DUR  keep decided JoinRequests this long (default 24h)
  --enroll-rate-limit B/R     enrollment requests per client address: burst/per-second (default 200/50)
  --log-format json|text      log lines as JSON (default) or text for people (default $FABRIC_LOG_FORMAT)
${leaseFlagUsage("kube-system")}  -h, --help           this text
`;

/**
 * util.parseArgs refuses `--flag -1` ("argument is ambiguous": a value that
 * starts with a dash could be an option) and only takes `--flag=-1`. A
 * negative number can never be one of our options, so such a value is
 * joined to its string-valued flag first: `--agent-port -1` as documented.
 */
function joinNegativeNumbers(argv: readonly string[], options: Readonly<Record<string, { type: "string" | "boolean" }>>): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    if (arg === "--") return [...out, ...argv.slice(i)];
    const next = argv[i + 1];
    const name = arg.startsWith("--") && !arg.includes("=") ? arg.slice(2) : undefined;
    if (name !== undefined && options[name]?.type === "string" && next !== undefined && /^-\d+(\.\d+)?$/.test(next)) {
      out.push(`${arg}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

async function main(): Promise<void> {
  const options = {
    "state-dir": { type: "string" },
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "6443" },
    "metrics-port": { type: "string", default: "9464" },
    "database-url": { type: "string" },
    "no-fsync": { type: "boolean", default: false },
    controllers: { type: "string", default: "true" },
    "agent-port": { type: "string", default: "8443" },
    "node-cert-lifetime": { type: "string", default: "24h" },
    "join-request-retention": { type: "string", default: "24h" },
    "enroll-rate-limit": { type: "string", default: "200/50" },
    "log-format": { type: "string" },
    ...leaseFlagOptions(`${hostname()}-${process.pid}`, "kube-system"),
    help: { type: "boolean", short: "h", default: false },
  } as const;
  const { values } = parseArgs({ args: joinNegativeNumbers(process.argv.slice(2), options), options, strict: true });
  if (values.help) {
    process.stdout.write(usage);
    return;
  }
  if (values["log-format"] !== undefined) setLogFormat(parseLogFormat(values["log-format"]));
  const port = Number.parseInt(values.port, 10);
  const metricsPort = Number.parseInt(values["metrics-port"], 10);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid --port: ${values.port}`);
  if (!Number.isInteger(metricsPort) || metricsPort < 0 || metricsPort > 65535) throw new Error(`invalid --metrics-port: ${values["metrics-port"]}`);
  if (values.controllers !== "true" && values.controllers !== "false") throw new Error(`invalid --controllers: ${values.controllers}`);
  const agentPort = Number.parseInt(values["agent-port"], 10);
  if (!Number.isInteger(agentPort) || agentPort < -1 || agentPort > 65535) throw new Error(`invalid --agent-port: ${values["agent-port"]}`);
  const enrollment = { nodeCertLifetimeMs: parseDuration(values["node-cert-lifetime"]), joinRequestRetentionMs: parseDuration(values["join-request-retention"]) };
  const stateDir = resolve(values["state-dir"] ?? process.env.FABRIC_STATE_DIR ?? ".fabric");
  const controllers = values.controllers === "true" ? { ...leaseSettingsFromFlags(values), enrollment } : undefined;
  const rateLimit = parseRateLimit(values["enroll-rate-limit"]);
  // Signal handlers first: a SIGTERM that arrives while starting (or right
  // after the ready line) waits for start-up to finish, then stops cleanly.
  let started: Promise<ControlPlane> | undefined;
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("shutting down", { signal });
    (started ?? Promise.reject(new Error("not started")))
      .then((cp) => cp.stop())
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
  // Loaded only now: --help and a refused flag answer without loading the control plane's modules.
  started = import("../controlplane/controlplane.js").then(({ runControlPlane }) => runControlPlane({
    stateDir,
    host: values.host,
    port,
    metricsPort,
    databaseUrl: values["database-url"],
    fsync: !values["no-fsync"],
    log,
    controllers,
    agentPort: agentPort === -1 ? undefined : agentPort,
    agentApi: { rateLimit },
  }));
  await started;
}

main().catch((err: unknown) => {
  log.error("control plane failed to start", { err });
  process.exit(1);
});
