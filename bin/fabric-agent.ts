/**
 * fabric-agent: the host agent. This issue brings enrollment and identity:
 *
 *   fabric-agent join --server URL --token TOKEN --ca-hash sha256:HEX [options]
 *       pins the agent API CA, generates the node key on this host (0600,
 *       never sent), enrolls, waits for approval printing its status, stores
 *       the identity, then keeps running to renew it (unless --once).
 *   fabric-agent run       keeps every stored identity renewed
 *   fabric-agent status    prints the stored identities
 *
 * Common: --state-dir DIR (default $FABRIC_AGENT_STATE_DIR or /var/lib/fabric-agent)
 */
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { JoinRefused, join } from "../agent/enroll/join.js";
import { keepRenewed } from "../agent/enroll/renew.js";
import { loadIdentities } from "../agent/enroll/identity-store.js";
import { AgentApiRequestError } from "../agent/enroll/client.js";
import { parseDuration } from "../lib/enrollment/token.js";
import { logger } from "../lib/log.js";

const log = logger("agent");

const usage = `usage:
  fabric-agent join --server URL --token TOKEN --ca-hash sha256:HEX [options]
  fabric-agent run [--state-dir DIR]
  fabric-agent status [--state-dir DIR]

join options:
  --cluster NAME          the cluster you mean to join (a token of another cluster is refused)
  --node-name NAME        node name (default: the hostname as a DNS label)
  --capabilities A,B      capabilities this host reports (e.g. can_route_mesh,can_run_vpn_exit)
  --roles A,B             roles to request (must be allowed by the token)
  --poll-interval DUR     between approval polls (default 2s)
  --once                  exit after joining instead of staying to renew
`;

function list(v: string | undefined): string[] {
  return v === undefined || v === "" ? [] : v.split(",").map((s) => s.trim()).filter((s) => s !== "");
}

async function run(stateDir: string, signal: AbortSignal): Promise<void> {
  const ids = await loadIdentities(stateDir);
  if (ids.length === 0) throw new Error(`no identities in ${stateDir}: run fabric-agent join first`);
  log.info("agent running", { stateDir, memberships: ids.map((i) => `${i.info.cluster}/${i.info.node}`) });
  await Promise.all(ids.map((id) => keepRenewed(stateDir, id, { signal, log: (m, f) => log.info(m, f) })));
}

async function main(): Promise<number> {
  const [command, ...args] = process.argv.slice(2);
  const { values } = parseArgs({
    args,
    options: {
      "state-dir": { type: "string" },
      server: { type: "string" },
      token: { type: "string" },
      "ca-hash": { type: "string" },
      cluster: { type: "string" },
      "node-name": { type: "string" },
      capabilities: { type: "string" },
      roles: { type: "string" },
      "poll-interval": { type: "string", default: "2s" },
      once: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help || command === undefined) {
    process.stdout.write(usage);
    return command === undefined ? 2 : 0;
  }
  const stateDir = resolve(values["state-dir"] ?? process.env.FABRIC_AGENT_STATE_DIR ?? "/var/lib/fabric-agent");
  const stop = new AbortController();
  process.on("SIGINT", () => stop.abort());
  process.on("SIGTERM", () => stop.abort());
  switch (command) {
    case "join": {
      const { server, token } = values;
      const caHash = values["ca-hash"];
      if (server === undefined || token === undefined || caHash === undefined) {
        process.stderr.write("join needs --server, --token and --ca-hash\n");
        return 2;
      }
      try {
        const id = await join({
          server,
          token,
          caHash,
          stateDir,
          cluster: values.cluster,
          nodeName: values["node-name"],
          capabilities: list(values.capabilities),
          roles: list(values.roles),
          pollIntervalMs: parseDuration(values["poll-interval"]),
          signal: stop.signal,
          onStatus: (line) => process.stdout.write(`fabric-agent: ${line}\n`),
        });
        log.info("joined", { cluster: id.info.cluster, node: id.info.node, serial: id.info.serial, dir: id.dir });
      } catch (err) {
        if (err instanceof JoinRefused || err instanceof AgentApiRequestError) {
          process.stderr.write(`fabric-agent: join refused: ${err.code}: ${err.message}\n`);
          return 1;
        }
        throw err;
      }
      if (values.once) return 0;
      await run(stateDir, stop.signal);
      return 0;
    }
    case "run":
      await run(stateDir, stop.signal);
      return 0;
    case "status": {
      for (const id of await loadIdentities(stateDir)) process.stdout.write(`${id.info.cluster}\t${id.info.node}\tserial=${id.info.serial}\tnotAfter=${id.info.notAfter}\n`);
      return 0;
    }
    default:
      process.stderr.write(usage);
      return 2;
  }
}

main()
  .then((code) => process.exit(code))
  .catch((err: unknown) => {
    log.error("fabric-agent failed", { err });
    process.exit(1);
  });
