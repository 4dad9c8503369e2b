/**
 * The mesh with real agents as separate hosts: ten `bin/fabric-agent`
 * processes, each in its own network namespace on a bridge, and the control
 * plane in a namespace of its own (test/support/mesh-lab.ts). Mixed classes:
 * one core node (core-node role), two relays (Relay class, relay-node role),
 * thin and standard nodes, bounds from the cluster's peerPolicy. One node,
 * `s9`, advertises the address of a UDP proxy in another namespace, so every
 * peer that dials it goes through the proxy (test/support/udp-proxy.ts).
 *
 * In order: convergence within bounds on a connected graph; a SIGKILLed
 * peer replaced after the trust window; a
 * rogue process with a self-signed certificate for a valid node name, on the
 * dead node's address, never linked; the control plane stopped, every agent
 * restarted: the mesh comes back from the checkpointed snapshots.
 */
import assert from "node:assert/strict";
import { loadIdentities } from "../../agent/enroll/identity-store.js";
import type { MeshStatus } from "../../agent/mesh/mesh-status.js";
import { repoRoot } from "../support/controlplane.js";
import { selfSignedNodeCreds } from "../support/mesh-certs.js";
import { connected, MESH_PORT, startMeshLab, upPeers, waitAll, type AgentSpec, type LabAgent, type MeshLab } from "../support/mesh-lab.js";
import type { NetnsHost } from "../support/netns.js";
import { spawnUdpProxy, type UdpProxy } from "../support/udp-proxy.js";

const CLUSTER = "afn-mesh";
const POLICY = { thin: { min: 1, max: 2 }, standard: { min: 2, max: 4 }, relay: { min: 3, max: 6 } };
const TRUST_WINDOW_MS = 6_500;

/** The proxied node sorts last: when two nodes dial each other at once, the link dialled by the other is kept (through the proxy). */
const PROXIED = "s9";

function boundsOk(s: MeshStatus | undefined): boolean {
  if (s?.enabled !== true || s.bounds === undefined) return false;
  const up = upPeers(s).length;
  return up >= s.bounds.min && up <= s.bounds.max;
}

describe("e2e: the mesh with real agents in network namespaces", function () {
  this.timeout(600_000);
  let m: MeshLab;
  let px: NetnsHost;
  let proxy: UdpProxy;
  let proxyOut = "";
  const specs: AgentSpec[] = [
    { short: "c0", nodeClass: "Relay", roles: ["core-node"] },
    { short: "r1", nodeClass: "Relay", roles: ["relay-node"] },
    { short: "r2", nodeClass: "Relay", roles: ["relay-node"] },
    { short: "s3", nodeClass: "Standard" },
    { short: "s4", nodeClass: "Standard" },
    { short: "s5", nodeClass: "Standard" },
    { short: "t6", nodeClass: "Thin" },
    { short: "t7", nodeClass: "Thin" },
    { short: "t8", nodeClass: "Thin" },
    { short: PROXIED, nodeClass: "Standard" },
  ];
  const live = (): LabAgent[] => m.agents.filter((a) => a.child !== undefined && a.child.exitCode === null && a.child.signalCode === null);
  const statuses = async (agents: readonly LabAgent[]): Promise<Map<LabAgent, MeshStatus | undefined>> => new Map(await Promise.all(agents.map(async (a) => [a, await m.status(a)] as const)));
  const converged = async (agents: readonly LabAgent[], what: string): Promise<Map<LabAgent, MeshStatus | undefined>> => {
    // Three consecutive samples in bounds on a connected graph: a settled mesh, not a passing moment.
    let streak = 0;
    for (;;) {
      const all = await waitAll(m, agents, (_a, s) => boundsOk(s), 180_000, what);
      const edges = new Map([...all].map(([a, s]) => [a.name, upPeers(s)] as const));
      if (connected(agents.map((a) => a.name), edges)) streak++;
      else streak = 0;
      if (streak >= 3) return all;
      await new Promise((r) => setTimeout(r, 1000));
    }
  };

  before(async () => {
    m = await startMeshLab({ prefix: "afn", cluster: CLUSTER, peerPolicy: POLICY });
    px = await m.lab.addHost("px");
  });
  after(async () => {
    await proxy?.close().catch(() => undefined);
    await m?.destroy();
  });

  it("ten agents of mixed classes converge within their bounds, none above max, on a connected graph", async () => {
    const enrolled = await m.enrol(specs.map((s) => (s.short === PROXIED ? { ...s, advertise: `${px.address}:${MESH_PORT}` } : s)));
    const s9 = m.byShort(PROXIED);
    proxy = await spawnUdpProxy(px, { listenPort: MESH_PORT, targetHost: s9.host.address, targetPort: MESH_PORT, onOutput: (t) => (proxyOut += t) });
    console.log(`      ${proxyOut.trim()}`);
    const started = Date.now();
    for (const a of enrolled) m.start(a);
    const all = await converged(m.agents, "convergence");
    console.log(`      converged in ${Date.now() - started} ms`);
    const classes = new Map<string, string>();
    for (const [a, s] of all) {
      assert.ok(s !== undefined);
      classes.set(a.spec.short, s.nodeClass ?? "");
      const want = a.spec.roles?.includes("core-node") ? "core" : a.spec.nodeClass.toLowerCase();
      assert.equal(s.nodeClass, want, a.name);
      const bounds = POLICY[a.spec.nodeClass === "Relay" ? "relay" : a.spec.nodeClass === "Thin" ? "thin" : "standard"];
      assert.equal(s.bounds?.min, bounds.min, a.name);
      assert.equal(s.bounds?.max, bounds.max, a.name);
      assert.ok(upPeers(s).length <= bounds.max, `${a.name} above max: ${upPeers(s).join(",")}`);
      assert.ok(s.endpoints[0] === (a.spec.short === PROXIED ? `${px.address}:${MESH_PORT}` : `${a.host.address}:${MESH_PORT}`), `${a.name}: ${s.endpoints.join(",")}`);
      for (const p of s.peers.filter((x) => x.state === "up")) assert.ok(p.peer.startsWith(`${CLUSTER}.`) && p.peer !== a.name);
      console.log(`      ${a.spec.short} (${s.nodeClass} ${s.bounds?.min}-${s.bounds?.max}): ${s.peers.filter((x) => x.state === "up").map((p) => `${p.peer.slice(CLUSTER.length + 1)}${p.direction === "outbound" ? ">" : "<"}`).join(" ")}`);
    }
  });

  // Hysteresis under injected noise and the replacement of a peer behind 80 ms are proven on the
  // peer manager (test/unit/mesh-peer-manager.test.ts), not here: the UDP proxy sits only on links
  // dialled to s9's advertised endpoint, and which side of a link dials is not deterministic (since
  // links are authorised from either side, s9 often dials all of its peers itself). See
  // docs/support-matrix.md for the design that would make it deterministic.

  let victim: LabAgent;
  it("a SIGKILLed peer is replaced after the trust window", async () => {
    const all = await statuses(live());
    // The busiest standard node other than s9.
    victim = [...all].filter(([a]) => a.spec.nodeClass === "Standard" && a.spec.short !== PROXIED).sort(([, x], [, y]) => upPeers(y).length - upPeers(x).length)[0]?.[0] as LabAgent;
    const watchers = [...all].filter(([, s]) => upPeers(s).includes(victim.name));
    assert.ok(watchers.length > 0, `someone links to ${victim.name}`);
    const before = new Map(watchers.map(([a, s]) => [a, upPeers(s)] as const));
    const killedAt = Date.now();
    await m.stop(victim, "SIGKILL");
    const done = await waitAll(
      m,
      watchers.map(([a]) => a),
      (a, s) => {
        const now = upPeers(s);
        const was = before.get(a) ?? [];
        const bounds = s?.bounds ?? { min: 1, max: 1 };
        const target = Math.min(bounds.max, Math.ceil((bounds.min + bounds.max) / 2));
        return !now.includes(victim.name) && now.length >= Math.min(was.length, target) && boundsOk(s);
      },
      60_000,
      "victim replaced",
    );
    const ms = Date.now() - killedAt;
    for (const [a, s] of done) {
      const fresh = upPeers(s).filter((p) => !(before.get(a) ?? []).includes(p));
      console.log(`      ${a.spec.short}: ${(before.get(a) ?? []).map((p) => p.slice(CLUSTER.length + 1)).join(",")} -> ${upPeers(s).map((p) => p.slice(CLUSTER.length + 1)).join(",")} (new: ${fresh.map((p) => p.slice(CLUSTER.length + 1)).join(",") || "none needed"})`);
    }
    console.log(`      ${victim.spec.short} SIGKILLed: every peer of it back in bounds without it ${ms} ms later (trust window ${TRUST_WINDOW_MS} ms + one evaluation + a dial)`);
  });

  it("refuses a rogue process presenting a self-signed certificate with a valid node name (on the dead node's address)", async () => {
    const creds = selfSignedNodeCreds(CLUSTER, victim.name);
    // The cluster CA certificate is public: with it the rogue accepts the agents' certificates, so the refusal is theirs.
    const caPem = (await loadIdentities(m.agents[0]?.dir ?? ""))[0]?.caPem ?? "";
    assert.match(caPem, /BEGIN CERTIFICATE/);
    const targets = live().map((a) => ({ node: a.name, endpoint: a.spec.short === PROXIED ? { host: px.address, port: MESH_PORT } : { host: a.host.address, port: MESH_PORT } }));
    const script = `
      const { PeerLinks } = await import(${JSON.stringify(`${repoRoot}/agent/mesh/transport/peer-links.ts`)});
      const o = JSON.parse(process.env.ROGUE);
      const links = await PeerLinks.start({ cluster: o.cluster, node: o.node, keyPem: o.keyPem, certPem: o.certPem, caPem: o.caPem, authorised: () => true, host: o.host, port: o.port, connectTimeoutMs: 3000 });
      const results = [];
      for (const t of o.targets) {
        try { await links.connect({ node: t.node, endpoints: [t.endpoint] }); results.push({ node: t.node, ok: true }); }
        catch (err) { results.push({ node: t.node, ok: false, error: String(err && err.message || err) }); }
      }
      await new Promise((r) => setTimeout(r, 3000));
      console.log(JSON.stringify({ results, links: links.links().map((l) => l.node) }));
      await links.stop();
    `;
    const rogue = victim.host.spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ROGUE: JSON.stringify({ cluster: CLUSTER, node: victim.name, keyPem: creds.keyPem, certPem: creds.certPem, caPem, host: victim.host.address, port: MESH_PORT, targets }) },
    });
    let out = "";
    rogue.stdout?.on("data", (b: Buffer) => (out += b.toString()));
    rogue.stderr?.on("data", (b: Buffer) => (out += b.toString()));
    const code = await new Promise<number | null>((r) => rogue.once("exit", (c) => r(c)));
    const line = out.split("\n").find((l) => l.startsWith("{\"results\""));
    assert.ok(line !== undefined && code === 0, `rogue output (${String(code)}):\n${out}`);
    const r = JSON.parse(line) as { results: Array<{ node: string; ok: boolean; error?: string }>; links: string[] };
    assert.equal(r.results.length, targets.length);
    for (const x of r.results) assert.equal(x.ok, false, `${x.node} accepted the rogue`);
    assert.deepEqual(r.links, []);
    // Every agent saw and refused it; none lists the dead node's name as up.
    const all = await statuses(live());
    for (const [a, s] of all) {
      assert.ok(!upPeers(s).includes(victim.name), `${a.name} links to ${victim.name}`);
      assert.ok(/"mesh peer refused"/.test(a.outSinceStart()), `${a.name} logged no refusal`);
    }
    console.log(`      rogue refused by ${r.results.length} agents: ${[...new Set(r.results.map((x) => x.error?.slice(0, 60)))].join(" | ")}`);
  });

  it("with the control plane stopped, agents restarted come back from their checkpoints and form the mesh again", async () => {
    await m.stopControlPlane();
    assert.notEqual(m.cp.child.exitCode ?? m.cp.child.signalCode, null, "control plane stopped");
    await Promise.all(live().map((a) => m.stop(a, "SIGTERM")));
    await proxy.set({ toTarget: { latencyMs: 0, jitterMs: 0 }, toClient: { latencyMs: 0, jitterMs: 0 } });
    const started = Date.now();
    for (const a of m.agents) m.start(a);
    await converged(m.agents, "mesh from checkpoints");
    console.log(`      ten agents restarted without a control plane: mesh converged again in ${Date.now() - started} ms`);
    for (const a of m.agents) assert.match(a.outSinceStart(), /booted from checkpoint/, a.name);
  });
});
