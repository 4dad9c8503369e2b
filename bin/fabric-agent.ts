/**
 * fabric-agent: the host agent. It enrolls the host, keeps its identity
 * renewed, follows the signed snapshot of each membership and supervises
 * the workloads that snapshot assigns:
 *
 *   fabric-agent join --server URL --token TOKEN --ca-hash sha256:HEX [options]
 *       pins the agent API CA, generates the node key on this host (0600,
 *       never sent), enrolls, waits for approval printing its status, stores
 *       the identity, then keeps running to renew it (unless --once).
 *   fabric-agent run       keeps every stored identity renewed, and for each
 *       membership boots from its checkpoint, long-polls its signed snapshot
 *       (verified before anything uses it), sends heartbeats and supervises
 *       the service workloads of the snapshot in force (agent/workloads/wire.ts)
 *   fabric-agent status    prints identity, snapshot serial and age, last
 *       contact and errors of every membership (from its status.json)
 *   fabric-agent mesh status   the mesh link table of every membership (from
 *       its mesh-status.json, written by the running agent's mesh loop)
 *   fabric-agent mesh ping NODE   asks the running agent (over mesh.sock) to
 *       ping NODE along the routing engine's path; prints the RTT and the path
 *       (`direct` or `relay via R`)
 *   fabric-agent mesh forward [--listen IP:PORT] NODE:PORT   asks the running
 *       agent to listen on IP:PORT (default 127.0.0.1, ephemeral port) and
 *       forward each TCP connection to PORT on NODE through the mesh, while
 *       this command runs
 *   fabric-agent vpn status    the VPN connections this node may own: owner
 *       state, token, tunnel, deadline (from its vpn-status.json, written by
 *       the running agent's VPN owner, agent/vpn/vpn-loop.ts)
 *
 * Common: --state-dir DIR (default $FABRIC_AGENT_STATE_DIR or /var/lib/fabric-agent),
 * --log-format json|text (default $FABRIC_LOG_FORMAT, else json): every line
 * the agent logs, join progress included, is in that one format.
 */
// First: stack traces of the bundle name TypeScript sources (agent/stack-trace.ts).
import "../agent/stack-trace.js";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { JoinRefused, join } from "../agent/enroll/join.js";
import { keepRenewed } from "../agent/enroll/renew.js";
import { loadIdentities } from "../agent/enroll/identity-store.js";
import { AgentApiRequestError } from "../agent/http/client.js";
import { parseDuration } from "../lib/enrollment/token.js";
import http from "node:http";
import { runMembership } from "../agent/sync/runner.js";
import { superviseWorkloads, type SupervisedWorkloads } from "../agent/workloads/wire.js";
import { superviseUpdates, type SupervisedUpdates } from "../agent/update/wire.js";
import { runUpdateCache, type UpdateCacheFlags } from "../agent/update/cache-wire.js";
import type { MembershipSync } from "../agent/sync/snapshot-sync.js";
import { formatStatus, metricsText, readStatus } from "../agent/sync/status.js";
import { DEFAULT_MESH_PORT, runMeshLoop, type MeshLoop } from "../agent/mesh/mesh-loop.js";
import { formatMeshStatus, readMeshStatus } from "../agent/mesh/mesh-status.js";
import { requestForward, requestPing } from "../agent/mesh/control-socket.js";
import { logger, parseLogFormat, setLogFormat } from "../lib/log.js";
import { DEFAULT_VPN_INTERFACE_PREFIX, runVpnOwner, type VpnOwnerHandle } from "../agent/vpn/vpn-loop.js";
import { formatVpnStatus, readVpnStatus } from "../agent/vpn/vpn-status.js";

const log = logger("agent");

const usage = `usage:
  fabric-agent join --server URL --token TOKEN --ca-hash sha256:HEX [options]
  fabric-agent run [--state-dir DIR] [--heartbeat-interval DUR] [--backoff-cap DUR] [--metrics-port N] [--capabilities A,B]
  fabric-agent status [--state-dir DIR] [--json]
  fabric-agent mesh status [--state-dir DIR] [--output text|json]
  fabric-agent mesh ping NODE [--state-dir DIR] [--cluster NAME] [--output text|json]
  fabric-agent mesh forward [--listen IP:PORT] NODE:PORT [--state-dir DIR] [--cluster NAME]
  fabric-agent vpn status [--state-dir DIR] [--output text|json]
  fabric-agent --help

join options:
  --cluster NAME          the cluster you mean to join (a token of another cluster is refused)
  --node-name NAME        node name (default: the hostname as a DNS label)
  --capabilities A,B      capabilities this host reports (e.g. can_route_mesh,can_run_vpn_exit);
                          a cluster may require some (its spec.enrollmentPolicy), a role needs its own
  --roles A,B             roles to request (must be allowed by the token)
  --poll-interval DUR     between approval polls (default 2s)
  --once                  exit after joining instead of staying to renew

mesh options (run, join; the mesh starts only when the node's snapshot gives it a mesh role):
  --mesh-port N           UDP port of the QUIC mesh (default ${DEFAULT_MESH_PORT}; 0 = ephemeral)
  --mesh-bind ADDR        address to bind (default 0.0.0.0)
  --mesh-advertise H:P,.. endpoints reported to the control plane (IP literals; port 0 = the bound port).
                          Default: 127.0.0.1 and the bound port when the agent API is on loopback;
                          otherwise none, and the node is reported not directly reachable
  --mesh-evaluate-interval DUR  period of the peer manager's evaluation (default 10s)

update-cache options (run, join; the cache serves only when the node's snapshot gives it the update-cache role):
  --update-cache-port N   HTTPS port of the artifact cache (default 8450; 0 = ephemeral)
  --update-cache-bind ADDR  address to bind (default 0.0.0.0)
  --update-cache-advertise IP:PORT  endpoint reported to the control plane (port 0 = the bound port;
                          default the host's first non-internal IPv4 and the bound port)

vpn options (run, join; the VPN owner contends only for connections the snapshot assigns to this node):
  --vpn-hook PATH         run after each tunnel bring-up and teardown with FABRIC_VPN_CONNECTION,
                          FABRIC_VPN_TOKEN, FABRIC_VPN_EVENT=up|down and FABRIC_VPN_INTERFACE
  --vpn-interface-prefix P  prefix of the WireGuard interface names (default ${DEFAULT_VPN_INTERFACE_PREFIX}; 1-7 of a-z0-9)

common options:
  --state-dir DIR         where identities, snapshots and workload records live
                          (default $FABRIC_AGENT_STATE_DIR or /var/lib/fabric-agent)
  --log-format json|text  log lines as JSON (default) or text for people (default $FABRIC_LOG_FORMAT)
  -h, --help              this text
`;

function list(v: string | undefined): string[] {
  return v === undefined || v === "" ? [] : v.split(",").map((s) => s.trim()).filter((s) => s !== "");
}

/** Options of run. */
interface RunOptions {
  heartbeatIntervalMs?: number;
  backoffCapMs?: number;
  metricsPort?: number;
  capabilities: string[];
  mesh?: MeshFlags;
  vpn?: VpnFlags;
  updateCache?: UpdateCacheFlags;
}

/** The VPN flags of run and join. */
interface VpnFlags {
  hook?: string;
  interfacePrefix?: string;
}

/** The mesh flags of run and join. */
interface MeshFlags {
  port: number;
  host?: string;
  advertise: string[];
  evaluateIntervalMs?: number;
}

async function run(stateDir: string, signal: AbortSignal, ro: RunOptions = { capabilities: [] }): Promise<void> {
  const ids = await loadIdentities(stateDir);
  if (ids.length === 0) throw new Error(`no identities in ${stateDir}: run fabric-agent join first`);
  log.info("agent running", { stateDir, memberships: ids.map((i) => `${i.info.cluster}/${i.info.node}`) });
  const syncs: MembershipSync[] = [];
  // One workload supervisor per membership, fed by its verified snapshots (agent/workloads/wire.ts).
  const workloads: SupervisedWorkloads[] = [];
  // One mesh loop per membership, fed by the same verified snapshots (agent/mesh/mesh-loop.ts).
  const meshes: MeshLoop[] = [];
  const updates: SupervisedUpdates[] = [];
  // One VPN owner per membership, fed by the same verified snapshots (agent/vpn/vpn-loop.ts).
  const vpns: VpnOwnerHandle[] = [];
  const caches: Array<{ stop: () => Promise<void> }> = [];
  const meshFlags = ro.mesh ?? { port: DEFAULT_MESH_PORT, advertise: [] };
  let metrics: http.Server | undefined;
  if (ro.metricsPort !== undefined) {
    metrics = http.createServer((req, res) => {
      if (req.url !== "/metrics") {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { "Content-Type": "text/plain; version=0.0.4" }).end(metricsText(syncs.map((s) => s.status), new Date()));
    });
    const server = metrics;
    await new Promise<void>((r) => server.listen(ro.metricsPort, "127.0.0.1", () => r()));
    const addr = server.address();
    log.info("agent metrics listening", { port: typeof addr === "object" && addr !== null ? addr.port : ro.metricsPort });
  }
  try {
    await Promise.all(
      ids.flatMap((id) => {
        let mesh: MeshLoop | undefined;
        return [
          keepRenewed(stateDir, id, { signal, log: (m, f) => log.info(m, f) }),
          runMembership({
            identity: id,
            signal,
            log: (m, f) => log.info(m, { cluster: id.info.cluster, node: id.info.node, ...f }),
            heartbeatIntervalMs: ro.heartbeatIntervalMs,
            backoffCapMs: ro.backoffCapMs,
            capabilities: ro.capabilities,
            mesh: () => mesh?.heartbeatReport(),
            onSync: (s) => {
              syncs.push(s);
              // Channel-bound workloads run from their release slots (agent/update/wire.ts).
              let w: SupervisedWorkloads | undefined;
              const u = superviseUpdates(s, { log, identity: id, supervisor: () => (w as SupervisedWorkloads).supervisor, reapply: () => w?.reapply() });
              w = superviseWorkloads(s, { log, identity: id, rewrite: (d) => u.rewrite(d) });
              workloads.push(w);
              updates.push(u);
              // Several memberships cannot share one fixed port: the first takes it, the others bind an ephemeral one.
              const port = meshes.length === 0 ? meshFlags.port : 0;
              mesh = runMeshLoop(s, { log, identity: id, port, advertise: meshFlags.advertise, ...(meshFlags.host !== undefined ? { host: meshFlags.host } : {}), ...(meshFlags.evaluateIntervalMs !== undefined ? { evaluateIntervalMs: meshFlags.evaluateIntervalMs } : {}) });
              meshes.push(mesh);
              // Several memberships cannot share one fixed port either.
              const cacheFlags = ro.updateCache ?? { port: 8450 };
              caches.push(runUpdateCache(s, { log, identity: id, ...cacheFlags, port: caches.length === 0 ? cacheFlags.port : 0 }));
              vpns.push(runVpnOwner(s, { log, identity: id, ...(ro.vpn?.hook !== undefined ? { hook: ro.vpn.hook } : {}), ...(ro.vpn?.interfacePrefix !== undefined ? { interfacePrefix: ro.vpn.interfacePrefix } : {}) }));
            },
          }),
        ];
      }),
    );
  } finally {
    // Workloads keep running; the next agent adopts them.
    for (const u of updates) u.stop();
    await Promise.all(workloads.map((w) => w.stop()));
    await Promise.all(meshes.map((m) => m.stop()));
    await Promise.all(caches.map((c) => c.stop()));
    // Tunnels go down before their leases are released: the next holder never overlaps.
    await Promise.all(vpns.map((v) => v.stop()));
    metrics?.close();
  }
}

function parsePort(v: string, flag = "--mesh-port"): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n > 65535) throw new Error(`${flag} ${JSON.stringify(v)} is not a port (0..65535)`);
  return n;
}

/** `fabric-agent mesh status|ping`: reads the running agent's mesh-status.json, or asks it over mesh.sock. */
async function meshCommand(stateDir: string, words: string[], output: string, cluster: string | undefined, listen: string | undefined, signal: AbortSignal): Promise<number> {
  if (output !== "text" && output !== "json") {
    process.stderr.write("fabric-agent: --output must be text or json\n");
    return 2;
  }
  if (!existsSync(stateDir)) {
    process.stderr.write(`fabric-agent: no agent state in ${stateDir} (the directory does not exist): run fabric-agent join, or pass --state-dir\n`);
    return 1;
  }
  const ids = (await loadIdentities(stateDir)).filter((i) => cluster === undefined || i.info.cluster === cluster);
  const [sub, ...rest] = words;
  if (sub === "status" && rest.length === 0) {
    const all = [];
    for (const id of ids) {
      const st = await readMeshStatus(id.dir);
      all.push({ cluster: id.info.cluster, node: id.info.node, mesh: st ?? null });
      if (output === "text") process.stdout.write(st === undefined ? `mesh ${id.info.cluster}/${id.info.node}: no mesh status (the agent has not run with a verified snapshot yet)\n` : formatMeshStatus(st, new Date()));
    }
    if (output === "json") process.stdout.write(JSON.stringify(all, null, 2) + "\n");
    return 0;
  }
  if (sub === "forward" && rest.length === 1 && rest[0] !== undefined) {
    const id = ids[0];
    if (id === undefined || ids.length > 1) {
      process.stderr.write(ids.length === 0 ? `fabric-agent: no memberships in ${stateDir}\n` : "fabric-agent: several memberships: pass --cluster NAME\n");
      return 1;
    }
    const target = /^(.+):(\d{1,5})$/.exec(rest[0]);
    const at = /^\[?([0-9a-fA-F:.]+?)\]?:(\d{1,5})$/.exec(listen ?? "127.0.0.1:0");
    if (target === null || Number(target[2]) < 1 || Number(target[2]) > 65535 || at === null || Number(at[2]) > 65535) {
      process.stderr.write("fabric-agent: mesh forward needs NODE:PORT (port 1..65535) and --listen IP:PORT\n");
      return 2;
    }
    try {
      const f = await requestForward(id.dir, { node: target[1] ?? "", port: Number(target[2]), listen: { host: at[1] ?? "", port: Number(at[2]) } });
      process.stdout.write(output === "json" ? JSON.stringify(f.result) + "\n" : `forwarding ${f.result.listen} -> ${f.result.node}:${f.result.port} (path ${f.result.path})\n`);
      const stopped = new Promise<"signal">((resolve) => signal.addEventListener("abort", () => resolve("signal"), { once: true }));
      const why = await Promise.race([stopped, f.closed.then(() => "agent" as const)]);
      f.close();
      if (why === "agent") {
        process.stderr.write("fabric-agent: mesh forward: the agent closed the forward (stopped or restarted its mesh)\n");
        return 1;
      }
      return 0;
    } catch (err) {
      process.stderr.write(`fabric-agent: mesh forward ${rest[0]}: ${(err as Error).message}\n`);
      return 1;
    }
  }
  if (sub === "ping" && rest.length === 1 && rest[0] !== undefined) {
    const node = rest[0];
    const id = ids[0];
    if (id === undefined || ids.length > 1) {
      process.stderr.write(ids.length === 0 ? `fabric-agent: no memberships in ${stateDir}\n` : "fabric-agent: several memberships: pass --cluster NAME\n");
      return 1;
    }
    try {
      const r = await requestPing(id.dir, node);
      process.stdout.write(output === "json" ? JSON.stringify(r) + "\n" : `${r.node}: rtt ${r.rttMs.toFixed(3)} ms, path ${r.path} (${r.remote})\n`);
      return 0;
    } catch (err) {
      process.stderr.write(`fabric-agent: mesh ping ${node}: ${(err as Error).message}\n`);
      return 1;
    }
  }
  process.stderr.write(usage);
  return 2;
}

/** `fabric-agent vpn status`: reads the running agent's vpn-status.json of every membership. */
async function vpnCommand(stateDir: string, words: string[], output: string): Promise<number> {
  if (output !== "text" && output !== "json") {
    process.stderr.write("fabric-agent: --output must be text or json\n");
    return 2;
  }
  if (words.length !== 1 || words[0] !== "status") {
    process.stderr.write(usage);
    return 2;
  }
  if (!existsSync(stateDir)) {
    process.stderr.write(`fabric-agent: no agent state in ${stateDir} (the directory does not exist): run fabric-agent join, or pass --state-dir\n`);
    return 1;
  }
  const all = [];
  for (const id of await loadIdentities(stateDir)) {
    const st = await readVpnStatus(id.dir);
    all.push({ cluster: id.info.cluster, node: id.info.node, vpn: st ?? null });
    if (output === "text") process.stdout.write(st === undefined ? `vpn ${id.info.cluster}/${id.info.node}: no VPN status (the agent has not run with a verified snapshot yet)\n` : formatVpnStatus(st, new Date()));
  }
  if (output === "json") process.stdout.write(JSON.stringify(all, null, 2) + "\n");
  return 0;
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  // `fabric-agent --help` (an option before any command) asks for the usage too.
  const optionFirst = argv[0]?.startsWith("-") === true;
  const command = optionFirst ? undefined : argv[0];
  const args = optionFirst ? argv : argv.slice(1);
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
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
      "heartbeat-interval": { type: "string" },
      "backoff-cap": { type: "string" },
      "metrics-port": { type: "string" },
      json: { type: "boolean", default: false },
      output: { type: "string" },
      listen: { type: "string" },
      "mesh-port": { type: "string" },
      "mesh-bind": { type: "string" },
      "mesh-advertise": { type: "string" },
      "mesh-evaluate-interval": { type: "string" },
      "vpn-hook": { type: "string" },
      "update-cache-port": { type: "string" },
      "update-cache-bind": { type: "string" },
      "update-cache-advertise": { type: "string" },
      "vpn-interface-prefix": { type: "string" },
      "log-format": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(usage);
    return 0;
  }
  if (command === undefined) {
    process.stderr.write(usage);
    return 2;
  }
  // Only `mesh` and `vpn` take words after the command; elsewhere one is an error, as before.
  if (command !== "mesh" && command !== "vpn" && positionals.length > 0) {
    process.stderr.write(`fabric-agent: unexpected argument ${JSON.stringify(positionals[0])}\n`);
    return 2;
  }
  let meshFlags: MeshFlags;
  try {
    meshFlags = {
      port: values["mesh-port"] === undefined ? DEFAULT_MESH_PORT : parsePort(values["mesh-port"]),
      advertise: list(values["mesh-advertise"]),
      ...(values["mesh-bind"] !== undefined ? { host: values["mesh-bind"] } : {}),
      ...(values["mesh-evaluate-interval"] !== undefined ? { evaluateIntervalMs: parseDuration(values["mesh-evaluate-interval"]) } : {}),
    };
  } catch (err) {
    process.stderr.write(`fabric-agent: ${(err as Error).message}\n`);
    return 2;
  }
  let cacheFlags: UpdateCacheFlags;
  try {
    const adv = values["update-cache-advertise"];
    if (adv !== undefined && !/^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]):\d{1,5}$/.test(adv)) throw new Error(`--update-cache-advertise ${JSON.stringify(adv)} is not IP:PORT (IPv6 in brackets)`);
    cacheFlags = {
      port: values["update-cache-port"] === undefined ? 8450 : parsePort(values["update-cache-port"], "--update-cache-port"),
      ...(values["update-cache-bind"] !== undefined ? { host: values["update-cache-bind"] } : {}),
      ...(adv !== undefined ? { advertise: adv } : {}),
    };
  } catch (err) {
    process.stderr.write(`fabric-agent: ${(err as Error).message}\n`);
    return 2;
  }
  const vpnPrefix = values["vpn-interface-prefix"];
  if (vpnPrefix !== undefined && !/^[a-z][a-z0-9]{0,6}$/.test(vpnPrefix)) {
    process.stderr.write(`fabric-agent: --vpn-interface-prefix ${JSON.stringify(vpnPrefix)} must be 1-7 lower-case letters or digits, starting with a letter\n`);
    return 2;
  }
  const vpnFlags: VpnFlags = { ...(values["vpn-hook"] !== undefined ? { hook: resolve(values["vpn-hook"]) } : {}), ...(vpnPrefix !== undefined ? { interfacePrefix: vpnPrefix } : {}) };
  if (values["log-format"] !== undefined) {
    try {
      setLogFormat(parseLogFormat(values["log-format"]));
    } catch (err) {
      process.stderr.write(`fabric-agent: ${(err as Error).message}\n`);
      return 2;
    }
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
          onStatus: (line) => log.info("join progress", { detail: line }),
        });
        log.info("joined", { cluster: id.info.cluster, node: id.info.node, serial: id.info.serial, dir: id.dir });
      } catch (err) {
        if (err instanceof JoinRefused || err instanceof AgentApiRequestError) {
          log.error("join refused", { code: err.code, detail: `join refused: ${err.code}: ${err.message}` });
          return 1;
        }
        throw err;
      }
      if (values.once) return 0;
      // Keep reporting what the host joined with (heartbeats publish capabilities).
      await run(stateDir, stop.signal, { capabilities: list(values.capabilities), mesh: meshFlags, vpn: vpnFlags, updateCache: cacheFlags });
      return 0;
    }
    case "run":
      await run(stateDir, stop.signal, {
        heartbeatIntervalMs: values["heartbeat-interval"] === undefined ? undefined : parseDuration(values["heartbeat-interval"]),
        backoffCapMs: values["backoff-cap"] === undefined ? undefined : parseDuration(values["backoff-cap"]),
        metricsPort: values["metrics-port"] === undefined ? undefined : Number.parseInt(values["metrics-port"], 10),
        capabilities: list(values.capabilities),
        mesh: meshFlags,
        vpn: vpnFlags,
        updateCache: cacheFlags,
      });
      return 0;
    case "vpn":
      return vpnCommand(stateDir, positionals, values.output ?? (values.json ? "json" : "text"));
    case "mesh":
      return meshCommand(stateDir, positionals, values.output ?? (values.json ? "json" : "text"), values.cluster, values.listen, stop.signal);
    case "status": {
      // No state directory at all is an error (a wrong --state-dir, or nothing ever joined on this host);
      // an existing one without memberships is an empty answer.
      if (!existsSync(stateDir)) {
        process.stderr.write(`fabric-agent: no agent state in ${stateDir} (the directory does not exist): run fabric-agent join, or pass --state-dir\n`);
        return 1;
      }
      const ids = await loadIdentities(stateDir);
      if (ids.length === 0 && !values.json) process.stdout.write(`no memberships in ${stateDir}: run fabric-agent join first\n`);
      const all = [];
      for (const id of ids) {
        const st = await readStatus(id.dir);
        all.push({ cluster: id.info.cluster, node: id.info.node, certificateSerial: id.info.serial, notAfter: id.info.notAfter, status: st ?? null });
        if (!values.json) {
          if (st === undefined) process.stdout.write(`membership ${id.info.cluster}/${id.info.node}\n  identity:        certificate ${id.info.serial}, valid until ${id.info.notAfter}\n  agent has not run yet (no status)\n`);
          else process.stdout.write(formatStatus({ ...st, identitySerial: id.info.serial, certificateNotAfter: id.info.notAfter }, new Date()));
        }
      }
      if (values.json) process.stdout.write(JSON.stringify(all, null, 2) + "\n");
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
    // The stack names TypeScript sources also when running from the bundle (agent/stack-trace.ts).
    log.error("fabric-agent failed", { err, stack: err instanceof Error ? err.stack : undefined });
    process.exit(1);
  });
