/**
 * Test support: a mesh of real `bin/fabric-agent` processes, one per network
 * namespace, against a real control plane (`bin/fabric-controlplane`) in a
 * namespace of its own. The test process is only a client: kubectl and the
 * in-process join reach the control plane through the root namespace's
 * address on the lab's bridge. Agents bind their QUIC mesh on their
 * namespace address, port 4433, and advertise it (or a proxy's address the
 * test gives). Used by test/e2e/mesh-netns.test.ts and
 * test/bench/mesh-failover.bench.ts.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import { join as joinPath } from "node:path";
import { join } from "../../agent/enroll/join.js";
import { loadIdentities } from "../../agent/enroll/identity-store.js";
import { readMeshStatus, type MeshStatus } from "../../agent/mesh/mesh-status.js";
import { agentEnv, eventually, kubectl, repoRoot, tempStateDir, type KubectlResult } from "./controlplane.js";
import { createToken } from "./enrollment.js";
import { createLab, type NetnsHost, type NetnsLab } from "./netns.js";
import { spawnUdpProxies, type Impairment, type UdpProxy, type UdpProxyStats } from "./udp-proxy.js";

export const MESH_PORT = 4433;
/** Port of the proxy in front of the i-th proxied agent: PROXY_PORT_BASE + i. */
export const PROXY_PORT_BASE = 5000;
const agentBin = joinPath(repoRoot, "bin", "fabric-agent");
const cpBin = joinPath(repoRoot, "bin", "fabric-controlplane");
const CAPABILITIES = "can_accept_client_ingress,can_route_mesh,can_accept_node_ingress";

/** How a test wants one node. */
export interface AgentSpec {
  /** Short name (also the namespace's host name). */
  short: string;
  nodeClass: "Thin" | "Standard" | "Relay";
  /** Mesh roles besides entry-node (relay-node, core-node). */
  roles?: string[];
  /** Endpoint to advertise instead of its own address:4433 (a proxy's). */
  advertise?: string;
}

/** One running (or stopped) agent. */
export interface LabAgent {
  spec: AgentSpec;
  /** FabricNode name (`<cluster>.<short>`). */
  name: string;
  host: NetnsHost;
  dir: string;
  child: ChildProcess | undefined;
  /** Everything it printed, across restarts. */
  out(): string;
  /** Output since the last start. */
  outSinceStart(): string;
}

/** The control plane child. */
export interface LabControlPlane {
  host: NetnsHost;
  child: ChildProcess;
  stateDir: string;
  kubeconfig: string;
  agentApi: string;
  caHash: string;
  output(): string;
  exited: Promise<number | null>;
}

/** A running mesh lab. */
export interface MeshLab {
  lab: NetnsLab;
  cluster: string;
  cp: LabControlPlane;
  agents: LabAgent[];
  kubectl(args: string[], input?: string): Promise<KubectlResult>;
  apply(obj: Record<string, unknown>): Promise<void>;
  /** Joins the nodes (in process, through the bridge), sets their classes and roles; does not start them. */
  enrol(specs: AgentSpec[]): Promise<LabAgent[]>;
  /** Starts (or restarts) an agent's `run` process in its namespace. */
  start(a: LabAgent): void;
  /** Signals an agent and waits for it to exit. */
  stop(a: LabAgent, signal?: NodeJS.Signals): Promise<void>;
  /** Stops the control plane (SIGTERM) and waits for it. */
  stopControlPlane(): Promise<void>;
  /** The agent's mesh-status.json, when written by its running process (undefined otherwise). */
  status(a: LabAgent): Promise<MeshStatus | undefined>;
  byShort(short: string): LabAgent;
  /**
   * Puts a UDP proxy in front of each of `agents` (one child process in a
   * namespace `px`; listener i on PROXY_PORT_BASE + i) and makes each agent
   * advertise its proxy's endpoint: every link then crosses exactly one
   * proxy, the one in front of the node that was dialled. Call before
   * starting them.
   */
  proxyAll(agents: readonly LabAgent[]): Promise<LabProxies>;
  /** Stops everything, removes the namespaces and the state directories. */
  destroy(): Promise<void>;
}

/** The proxies in front of every agent (MeshLab.proxyAll). */
export interface LabProxies {
  host: NetnsHost;
  /** The proxy in front of an agent. */
  of(a: LabAgent): UdpProxy;
  /**
   * Impairs every datagram to and from `a` (each direction), whichever side
   * dialled: `a`'s own proxy impairs all its flows, every other proxy the
   * flows whose client is `a`'s address. `null` lifts it.
   */
  impair(a: LabAgent, imp: Partial<Impairment> | null): Promise<void>;
  /** Impairs every flow of every proxy (each direction); `null` lifts it. */
  impairAll(imp: Partial<Impairment> | null): Promise<void>;
  /** Counters of every proxy, by agent name. */
  stats(): Promise<Map<string, UdpProxyStats>>;
  /** Seed lines printed by the proxies. */
  output(): string;
  close(): Promise<void>;
}

/** Peers a status shows as up. */
export function upPeers(s: MeshStatus | undefined): string[] {
  return (s?.peers ?? []).filter((p) => p.state === "up").map((p) => p.peer);
}

/** Whether the undirected graph of up links over `nodes` is connected. */
export function connected(nodes: readonly string[], edges: ReadonlyMap<string, readonly string[]>): boolean {
  if (nodes.length === 0) return true;
  const adj = new Map<string, Set<string>>(nodes.map((n) => [n, new Set<string>()]));
  for (const [a, peers] of edges) for (const b of peers) if (adj.has(a) && adj.has(b)) (adj.get(a)?.add(b), adj.get(b)?.add(a));
  const seen = new Set<string>([nodes[0] ?? ""]);
  const todo = [nodes[0] ?? ""];
  while (todo.length > 0) for (const n of adj.get(todo.pop() ?? "") ?? []) if (!seen.has(n)) (seen.add(n), todo.push(n));
  return seen.size === nodes.length;
}

async function spawnControlPlaneIn(host: NetnsHost, stateDir: string): Promise<LabControlPlane> {
  const child = host.spawn(
    cpBin,
    ["--state-dir", stateDir, "--host", host.address, "--port", "0", "--metrics-port", "0", "--agent-port", "0", "--no-fsync", "--enroll-rate-limit", "100000/100000"],
    { env: { ...process.env, FABRIC_LOG_LEVEL: "info" }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`control plane not ready in 120 s:\n${out}`)), 120_000);
    child.stdout?.on("data", (b: Buffer) => {
      out += b.toString();
      const line = out.split("\n").find((l) => l.includes('"control plane ready"'));
      if (line !== undefined) {
        clearTimeout(timer);
        resolve(JSON.parse(line) as Record<string, unknown>);
      }
    });
    child.stderr?.on("data", (b: Buffer) => (out += b.toString()));
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`control plane exited with ${String(code)} before ready:\n${out}`));
    });
  });
  const agentApi = String(ready.agentApi);
  assert.ok(agentApi.includes(host.address), `agent API on the namespace address: ${agentApi}`);
  return { host, child, stateDir, kubeconfig: String(ready.kubeconfig), agentApi, caHash: String(ready.agentApiCaHash), output: () => out, exited };
}

/** Builds the lab and starts the control plane with a cluster whose peerPolicy is given. */
export async function startMeshLab(o: { prefix: string; cluster: string; peerPolicy: Record<string, { min: number; max: number }>; evaluateInterval?: string; heartbeatInterval?: string }): Promise<MeshLab> {
  const lab = await createLab(o.prefix);
  const dirs: string[] = [];
  let cp: LabControlPlane;
  try {
    const cpHost = await lab.addHost("cp");
    const cpDir = tempStateDir("fabric-netns-cp-");
    dirs.push(cpDir);
    cp = await spawnControlPlaneIn(cpHost, cpDir);
  } catch (err) {
    await lab.destroy();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    throw err;
  }
  const agents: LabAgent[] = [];
  const closers: Array<() => Promise<void>> = [];
  const outputs = new Map<LabAgent, { all: string; since: string }>();
  let token: string | undefined;
  const kc = (args: string[], input?: string): Promise<KubectlResult> => kubectl(cp.kubeconfig, args, input === undefined ? {} : { input });
  const apply = async (obj: Record<string, unknown>): Promise<void> => {
    const r = await kc(["apply", "-f", "-"], JSON.stringify({ apiVersion: "accessfabric.io/v1alpha1", ...obj }));
    assert.equal(r.code, 0, r.stderr);
  };
  const stopChild = async (child: ChildProcess | undefined, signal: NodeJS.Signals): Promise<void> => {
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((r) => child.once("exit", r));
    child.kill(signal);
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    await gone;
    clearTimeout(timer);
  };
  const m: MeshLab = {
    lab,
    cluster: o.cluster,
    cp,
    agents,
    kubectl: kc,
    apply,
    async enrol(specs) {
      if (token === undefined) {
        await apply({ kind: "FabricCluster", metadata: { name: o.cluster }, spec: { enrollmentPolicy: { approval: "TokenAutoApprove" }, peerPolicy: o.peerPolicy } });
        const w = await kc(["wait", "--for=condition=Ready", `fabriccluster/${o.cluster}`, "--timeout=120s"]);
        assert.equal(w.code, 0, w.stderr);
        token = await createToken(cp.kubeconfig, `${o.cluster}-join`, { cluster: o.cluster, maxUses: 100, autoApprove: true });
      }
      const added: LabAgent[] = [];
      for (const spec of specs) {
        const host = await lab.addHost(spec.short);
        const dir = tempStateDir("fabric-netns-agent-");
        dirs.push(dir);
        await join({ server: cp.agentApi, token, caHash: cp.caHash, stateDir: dir, nodeName: spec.short, cluster: o.cluster, capabilities: CAPABILITIES.split(","), pollIntervalMs: 200, timeoutMs: 120_000 });
        const a: LabAgent = {
          spec,
          name: `${o.cluster}.${spec.short}`,
          host,
          dir,
          child: undefined,
          out: () => outputs.get(a)?.all ?? "",
          outSinceStart: () => outputs.get(a)?.since ?? "",
        };
        outputs.set(a, { all: "", since: "" });
        agents.push(a);
        added.push(a);
        if (spec.nodeClass !== "Standard") {
          const r = await kc(["patch", "fabricnode", a.name, "--type", "merge", "-p", JSON.stringify({ spec: { nodeClass: spec.nodeClass } })]);
          assert.equal(r.code, 0, r.stderr);
        }
      }
      // One RoleAssignment per mesh role over every enrolled node that holds it.
      for (const role of ["entry-node", "relay-node", "core-node"]) {
        const nodes = agents.filter((a) => role === "entry-node" || (a.spec.roles ?? []).includes(role)).map((a) => a.name);
        if (nodes.length > 0) await apply({ kind: "RoleAssignment", metadata: { name: `${o.cluster}-${role}` }, spec: { cluster: o.cluster, role, nodeNames: nodes } });
      }
      return added;
    },
    start(a) {
      const advertise = a.spec.advertise ?? `${a.host.address}:${MESH_PORT}`;
      const child = a.host.spawn(
        agentBin,
        [
          "run", "--state-dir", a.dir, "--capabilities", CAPABILITIES, "--heartbeat-interval", o.heartbeatInterval ?? "1s", "--backoff-cap", "1s",
          "--mesh-port", String(MESH_PORT), "--mesh-bind", a.host.address, "--mesh-advertise", advertise, "--mesh-evaluate-interval", o.evaluateInterval ?? "1s",
        ],
        { stdio: ["ignore", "pipe", "pipe"], env: agentEnv() },
      );
      const buf = outputs.get(a) ?? { all: "", since: "" };
      buf.since = "";
      outputs.set(a, buf);
      const add = (b: Buffer): void => {
        buf.all += b.toString();
        buf.since += b.toString();
      };
      child.stdout?.on("data", add);
      child.stderr?.on("data", add);
      a.child = child;
    },
    stop: (a, signal = "SIGTERM") => stopChild(a.child, signal),
    stopControlPlane: () => stopChild(cp.child, "SIGTERM"),
    async status(a) {
      const ids = await loadIdentities(a.dir);
      const id = ids[0];
      const s = id === undefined ? undefined : await readMeshStatus(id.dir);
      // The file outlives its writer: only the running process's own status counts.
      return s !== undefined && a.child !== undefined && s.pid === a.child.pid ? s : undefined;
    },
    byShort(short) {
      const a = agents.find((x) => x.spec.short === short);
      assert.ok(a, short);
      return a;
    },
    async proxyAll(targets) {
      const host = await lab.addHost("px");
      let out = "";
      const list = await spawnUdpProxies(
        host,
        targets.map((a, i) => ({ listenPort: PROXY_PORT_BASE + i, targetHost: a.host.address, targetPort: MESH_PORT })),
        (t) => (out += t),
      );
      const byAgent = new Map(targets.map((a, i) => [a, list[i] as UdpProxy] as const));
      targets.forEach((a, i) => (a.spec.advertise = `${host.address}:${PROXY_PORT_BASE + i}`));
      const none: Impairment = { latencyMs: 0, jitterMs: 0, loss: 0 };
      const full = (imp: Partial<Impairment> | null): Impairment => ({ ...none, ...(imp ?? {}) });
      const proxies: LabProxies = {
        host,
        of(a) {
          const p = byAgent.get(a);
          assert.ok(p, `no proxy in front of ${a.name}`);
          return p;
        },
        async impair(a, imp) {
          await Promise.all(
            [...byAgent].map(([b, p]) =>
              b === a ? p.set({ toTarget: full(imp), toClient: full(imp) }) : p.set({ clients: { [a.host.address]: imp === null ? null : { toTarget: full(imp), toClient: full(imp) } } }),
            ),
          );
        },
        async impairAll(imp) {
          await Promise.all([...byAgent.values()].map((p) => p.set({ toTarget: full(imp), toClient: full(imp) })));
        },
        async stats() {
          return new Map(await Promise.all([...byAgent].map(async ([a, p]) => [a.name, await p.stats()] as const)));
        },
        output: () => out,
        close: () => list[0]?.close() ?? Promise.resolve(),
      };
      closers.push(() => proxies.close());
      return proxies;
    },
    async destroy() {
      for (const c of closers.splice(0)) await c().catch(() => undefined);
      await Promise.all(agents.map((a) => stopChild(a.child, "SIGTERM")));
      await stopChild(cp.child, "SIGTERM");
      await lab.destroy();
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    },
  };
  return m;
}

/** Waits until every agent's status satisfies `ok` (polling the status files). */
export async function waitAll(m: MeshLab, agents: readonly LabAgent[], ok: (a: LabAgent, s: MeshStatus | undefined) => boolean, timeoutMs: number, what: string): Promise<Map<LabAgent, MeshStatus | undefined>> {
  return eventually(async () => {
    const all = new Map(await Promise.all(agents.map(async (a) => [a, await m.status(a)] as const)));
    return [...all].every(([a, s]) => ok(a, s)) ? all : undefined;
  }, timeoutMs, 500).catch(async (err: unknown) => {
    const rows = await Promise.all(agents.map(async (a) => `${a.name}: ${JSON.stringify((await m.status(a))?.peers ?? null)}\n${a.outSinceStart().slice(-2500)}`));
    throw new Error(`${what}: ${(err as Error).message}\n${rows.join("\n")}`);
  });
}
