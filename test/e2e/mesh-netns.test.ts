/**
 * The mesh with real agents as separate hosts: ten `bin/fabric-agent`
 * processes, each in its own network namespace on a bridge, and the control
 * plane in a namespace of its own (test/support/mesh-lab.ts). Mixed classes:
 * one core node (core-node role), two relays (Relay class, relay-node role),
 * thin and standard nodes, bounds from the cluster's peerPolicy. Every node
 * advertises the endpoint of a UDP proxy in front of it (one child process in
 * namespace `px`, test/support/udp-proxy.ts), so every link crosses exactly
 * one proxy whichever side dialled, and a node's flows can be impaired on
 * every proxy by its address (both directions).
 *
 * In order: convergence within bounds on a connected graph; two minutes of
 * noisy RTT on every link (40 ms +-30 %) without a swap (hysteresis); warm
 * candidates measured; 10 % loss on one node's flows (its peers replace it)
 * and 80 ms on another's (reaches their RTT; swaps reported); a SIGKILLed
 * peer replaced after the trust window; a
 * rogue process with a self-signed certificate for a valid node name, on the
 * dead node's address, never linked; the control plane stopped, every agent
 * restarted: the mesh comes back from the checkpointed snapshots.
 */
import assert from "node:assert/strict";
import { loadIdentities } from "../../agent/enroll/identity-store.js";
import type { MeshStatus } from "../../agent/mesh/mesh-status.js";
import { TRUST_WINDOW_MS } from "../../agent/mesh/peer-manager.js";
import { eventually, repoRoot } from "../support/controlplane.js";
import { selfSignedNodeCreds } from "../support/mesh-certs.js";
import { connected, startMeshLab, upPeers, waitAll, type AgentSpec, type LabAgent, type LabProxies, type MeshLab } from "../support/mesh-lab.js";

const CLUSTER = "afn-mesh";
const POLICY = { thin: { min: 1, max: 2 }, standard: { min: 2, max: 4 }, relay: { min: 3, max: 6 } };

function boundsOk(s: MeshStatus | undefined): boolean {
  if (s?.enabled !== true || s.bounds === undefined) return false;
  const up = upPeers(s).length;
  return up >= s.bounds.min && up <= s.bounds.max;
}

interface MeshAction {
  msg: string;
  peer: string;
  reason: string;
  replaces?: string;
}

/** Every `mesh connecting` / `mesh disconnecting` log line of an output, parsed. */
function meshActions(out: string): MeshAction[] {
  const rows: MeshAction[] = [];
  for (const line of out.split("\n")) {
    if (!line.includes('"mesh connecting"') && !line.includes('"mesh disconnecting"')) continue;
    try {
      rows.push(JSON.parse(line) as MeshAction);
    } catch {
      // a partial line
    }
  }
  return rows;
}

const short = (node: string): string => node.slice(CLUSTER.length + 1);

describe("e2e: the mesh with real agents in network namespaces", function () {
  this.timeout(900_000);
  let m: MeshLab;
  let proxies: LabProxies;
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
    { short: "s9", nodeClass: "Standard" },
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
  });
  after(async () => {
    await m?.destroy();
  });

  it("ten agents of mixed classes converge within their bounds, none above max, on a connected graph", async () => {
    const enrolled = await m.enrol(specs);
    proxies = await m.proxyAll(enrolled);
    const started = Date.now();
    for (const a of enrolled) m.start(a);
    const all = await converged(m.agents, "convergence");
    console.log(`      converged in ${Date.now() - started} ms; proxies: ${proxies.output().trim().split("\n").length} seeds printed (${proxies.output().match(/seed=\d+/g)?.slice(0, 3).join(" ")} ...)`);
    for (const [a, s] of all) {
      assert.ok(s !== undefined);
      const want = a.spec.roles?.includes("core-node") ? "core" : a.spec.nodeClass.toLowerCase();
      assert.equal(s.nodeClass, want, a.name);
      const bounds = POLICY[a.spec.nodeClass === "Relay" ? "relay" : a.spec.nodeClass === "Thin" ? "thin" : "standard"];
      assert.equal(s.bounds?.min, bounds.min, a.name);
      assert.equal(s.bounds?.max, bounds.max, a.name);
      assert.ok(upPeers(s).length <= bounds.max, `${a.name} above max: ${upPeers(s).join(",")}`);
      assert.equal(s.endpoints[0], a.spec.advertise, a.name);
      for (const p of s.peers.filter((x) => x.state === "up")) assert.ok(p.peer.startsWith(`${CLUSTER}.`) && p.peer !== a.name);
      console.log(`      ${a.spec.short} (${s.nodeClass} ${s.bounds?.min}-${s.bounds?.max}): ${s.peers.filter((x) => x.state === "up").map((p) => `${short(p.peer)}${p.direction === "outbound" ? ">" : "<"}`).join(" ")}`);
    }
    // Every node with a link is reached through its proxy (links dialled to it cross it; links it dialled cross the other end's).
    const st = await proxies.stats();
    for (const [a, s] of all) if (upPeers(s).length > 0) assert.ok((st.get(a.name)?.forwarded.toTarget ?? 0) > 0 || upPeers(s).every((p) => (st.get(p)?.forwarded.toTarget ?? 0) > 0), `${a.name}: no traffic through the proxies`);
  });

  it("with steady noisy RTT on every link (40 ms +-30 %) there is no swap for 2 minutes (hysteresis)", async () => {
    // 14-26 ms each way, uniform, per datagram (a flow keeps its order): RTT 28-52 ms.
    await proxies.impairAll({ latencyMs: 14, jitterMs: 12 });
    // The noise shows in every link table before the window starts (the RTT EWMA has moved to it).
    await waitAll(m, m.agents, (_a, s) => upPeers(s).length > 0 && (s?.peers ?? []).filter((p) => p.state === "up").every((p) => (p.rttMs ?? 0) > 25 && (p.jitterMs ?? 0) > 1), 90_000, "noise visible");
    const key = (s: MeshStatus | undefined): string => JSON.stringify((s?.peers ?? []).filter((p) => p.state === "up").map((p) => [p.peer, p.since]));
    const baseline = await statuses(m.agents);
    const swapsAt = new Map([...baseline].map(([a, s]) => [a, s?.swaps ?? -1] as const));
    const logStart = new Map(m.agents.map((a) => [a, a.out().length]));
    const changes: string[] = [];
    const rtts: number[] = [];
    const until = Date.now() + 120_000;
    while (Date.now() < until) {
      await new Promise((r) => setTimeout(r, 2000));
      for (const [a, s] of await statuses(m.agents)) {
        if (key(s) !== key(baseline.get(a))) changes.push(`${a.spec.short}: ${key(baseline.get(a))} -> ${key(s)}`);
        for (const p of s?.peers ?? []) if (p.state === "up" && p.rttMs !== undefined) rtts.push(p.rttMs);
      }
    }
    const after = await statuses(m.agents);
    const swapped = [...after].filter(([a, s]) => (s?.swaps ?? -2) !== swapsAt.get(a)).map(([a, s]) => `${a.spec.short}: ${swapsAt.get(a)} -> ${s?.swaps}`);
    const actions = m.agents.flatMap((a) => meshActions(a.out().slice(logStart.get(a) ?? 0)).map((x) => `${a.spec.short}: ${x.msg} ${short(x.peer)} ${x.reason}`));
    console.log(`      RTT EWMA over every link during the window: ${Math.min(...rtts).toFixed(1)}-${Math.max(...rtts).toFixed(1)} ms; swaps per agent ${[...after].map(([a, s]) => `${a.spec.short}=${s?.swaps}`).join(" ")}`);
    assert.ok(Math.max(...rtts) - Math.min(...rtts) > 3, "the RTT moved during the window (otherwise the test proves nothing)");
    assert.ok([...swapsAt.values()].every((n) => n >= 0), "every agent reports its swap counter");
    assert.deepEqual(swapped, [], "no swap counted");
    assert.deepEqual(actions, [], "no connect or disconnect logged");
    assert.deepEqual(changes, [], "every link table unchanged");
    await proxies.impairAll(null);
  });

  it("warm candidates are measured by short-lived probes", async () => {
    // Warm candidates at their maximum refuse a link from a node they do not list (the probe fails): most nodes, not all, hold measurements.
    const withWarm = m.agents.length;
    const all = await eventually(async () => {
      const st = await statuses(m.agents);
      const holding = [...st].filter(([, s]) => (s?.warmProbes ?? []).length > 0).length;
      return holding * 2 >= withWarm ? st : undefined;
    }, 120_000, 1000);
    let measured = 0;
    for (const [a, s] of all) {
      for (const w of s?.warmProbes ?? []) {
        assert.ok(Number.isFinite(w.rttMs) && w.rttMs > 0 && w.loss >= 0 && w.loss <= 1, `${a.name}: ${JSON.stringify(w)}`);
        assert.ok(s?.candidates.includes(w.peer), `${a.name} probed a non-candidate ${w.peer}`);
        measured++;
      }
    }
    console.log(`      warm measurements held: ${[...all].map(([a, s]) => `${a.spec.short}=${(s?.warmProbes ?? []).map((w) => `${short(w.peer)}:${w.rttMs.toFixed(1)}`).join(",") || "-"}`).join(" ")}`);
    assert.ok(measured > 0, "some warm candidate measured");
  });

  // What holds on a loaded 2-core host (load average 30-40 in the runs so far): 10 % loss reaches the loss estimate and gets
  // the lossy node replaced; 80 ms reaches the RTT but clean links here measure 60-120 ms with 20-110 ms of jitter, so the
  // latency swap is reported, not asserted (docs/support-matrix.md).
  it("10 % loss on one node's flows gets it replaced by its peers; 80 ms on another's reaches their RTT (swaps reported)", async () => {
    const all = await statuses(m.agents);
    // The two standard nodes with the most links, each linked to someone.
    const ranked = [...all].filter(([a]) => a.spec.nodeClass === "Standard").sort(([, x], [, y]) => upPeers(y).length - upPeers(x).length);
    const slow = ranked[0]?.[0] as LabAgent;
    const lossy = ranked[1]?.[0] as LabAgent;
    const observersOf = (x: LabAgent): LabAgent[] => [...all].filter(([a, s]) => a !== slow && a !== lossy && upPeers(s).includes(x.name)).map(([a]) => a);
    const slowObs = observersOf(slow);
    const lossyObs = observersOf(lossy);
    assert.ok(slowObs.length > 0 && lossyObs.length > 0, `observers: ${slow.spec.short} by ${slowObs.length}, ${lossy.spec.short} by ${lossyObs.length}`);
    const logStart = new Map(m.agents.map((a) => [a, a.out().length]));
    // 40 ms each way on every datagram to and from `slow`: 80 ms added to its RTT. 10 % of `lossy`'s datagrams dropped each way.
    await proxies.impair(slow, { latencyMs: 40 });
    await proxies.impair(lossy, { loss: 0.1 });
    const injectedAt = Date.now();
    const seen = { rtt: 0, loss: 0 };
    /** Whether `o` replaced `x` (or `x` replaced `o`) by another candidate since the injection. */
    const replaced = (o: LabAgent, x: LabAgent): boolean => {
      const mine = meshActions(o.out().slice(logStart.get(o) ?? 0));
      const theirs = meshActions(x.out().slice(logStart.get(x) ?? 0));
      // Swapped for another candidate, or (loss at the hard filter's 20 %) dropped while above min, the set refilled by the next fill.
      const by = (acts: MeshAction[], gone: string): boolean =>
        acts.some((a) => a.msg === "mesh disconnecting" && a.peer === gone && (a.reason === "Replaced" || a.reason === "HighLoss")) &&
        (acts.some((a) => a.msg === "mesh connecting" && a.replaces === gone) || acts.some((a) => a.msg === "mesh disconnecting" && a.peer === gone && a.reason === "HighLoss"));
      return by(mine, x.name) || by(theirs, o.name);
    };
    await eventually(
      async () => {
        for (const [a, s] of await statuses([...slowObs, ...lossyObs])) {
          for (const p of s?.peers ?? []) {
            if (p.peer === slow.name && slowObs.includes(a)) seen.rtt = Math.max(seen.rtt, p.rttMs ?? 0);
            if (p.peer === lossy.name && lossyObs.includes(a)) seen.loss = Math.max(seen.loss, p.loss ?? 0);
          }
        }
        // Every observer of the lossy node swapped it out, or (no candidate with room left to it) at least one did and a minute passed.
        const lossDone = lossyObs.every((o) => replaced(o, lossy)) || (lossyObs.some((o) => replaced(o, lossy)) && Date.now() - injectedAt > 60_000);
        return lossDone && seen.rtt >= 80 ? true : undefined;
      },
      240_000,
      2000,
    ).catch(async (err: unknown) => {
      const diag = await statuses([...slowObs, ...lossyObs]);
      const rows = [...slowObs.map((o) => `${o.spec.short}/${slow.spec.short}: ${replaced(o, slow)}`), ...lossyObs.map((o) => `${o.spec.short}/${lossy.spec.short}: ${replaced(o, lossy)}`)];
      for (const [o, s] of diag) rows.push(`${o.spec.short}: costs ${JSON.stringify(s?.costs)} peers ${JSON.stringify((s?.peers ?? []).map((p) => [short(p.peer), p.rttMs, p.jitterMs, p.loss]))} warm ${JSON.stringify(s?.warmProbes)}`);
      throw new Error(`not replaced (${(err as Error).message}); highest RTT seen to ${slow.spec.short} ${seen.rtt.toFixed(1)} ms, loss seen to ${lossy.spec.short} ${seen.loss.toFixed(3)}:\n${rows.join("\n")}`);
    });
    const ms = Date.now() - injectedAt;
    const st = await proxies.stats();
    const lossySt = st.get(lossy.name);
    console.log(`      ${slow.spec.short} (+80 ms) replaced by ${slowObs.filter((o) => replaced(o, slow)).map((a) => a.spec.short).join(",") || "none"} of ${slowObs.map((a) => a.spec.short).join(",")}; ${lossy.spec.short} (10 % loss, its proxy dropped ${lossySt?.dropped.toTarget}/${lossySt?.dropped.toClient} of ${(lossySt?.forwarded.toTarget ?? 0) + (lossySt?.dropped.toTarget ?? 0)}/${(lossySt?.forwarded.toClient ?? 0) + (lossySt?.dropped.toClient ?? 0)}) replaced by ${lossyObs.filter((o) => replaced(o, lossy)).map((a) => a.spec.short).join(",")} of ${lossyObs.map((a) => a.spec.short).join(",")}; within ${ms} ms`);
    console.log(`      highest RTT EWMA seen to ${slow.spec.short}: ${seen.rtt.toFixed(1)} ms; highest loss estimate seen to ${lossy.spec.short}: ${(seen.loss * 100).toFixed(1)} %`);
    for (const o of [...slowObs, ...lossyObs]) console.log(`      ${o.spec.short}: ${meshActions(o.out().slice(logStart.get(o) ?? 0)).map((x) => `${x.msg.replace("mesh ", "")} ${short(x.peer)} ${x.reason}${x.replaces ? ` (replaces ${short(x.replaces)})` : ""}`).join("; ")}`);
    for (const [o, st2] of await statuses(slowObs)) console.log(`      ${o.spec.short} warm measurements: ${(st2?.warmProbes ?? []).map((w) => `${short(w.peer)} ${w.rttMs.toFixed(1)} ms`).join(", ") || "none"}`);
    // The estimate covers the last 20 probes (50 s) and is sampled from status every 2 s: a replacement ~30 s after the
    // injection happens while it still climbs (4.7 % seen in one CI run), so any clear rise shows the loss reached the
    // cost; a link dropped for HighLoss (the 20 % hard filter) between two samples proves it too.
    const highLoss = lossyObs.some((o) => meshActions(o.out().slice(logStart.get(o) ?? 0)).some((a) => a.msg === "mesh disconnecting" && a.peer === lossy.name && a.reason === "HighLoss")) ||
      meshActions(lossy.out().slice(logStart.get(lossy) ?? 0)).some((a) => a.msg === "mesh disconnecting" && lossyObs.some((o) => o.name === a.peer) && a.reason === "HighLoss");
    assert.ok(seen.loss >= 0.02 || highLoss, `the loss estimate reached ${seen.loss} and no link to ${lossy.name} was dropped for HighLoss`);
    await proxies.impair(slow, null);
    await proxies.impair(lossy, null);
  });

  let victim: LabAgent;
  it("a SIGKILLed peer is replaced after the trust window", async () => {
    const all = await statuses(live());
    // The busiest standard node.
    victim = [...all].filter(([a]) => a.spec.nodeClass === "Standard").sort(([, x], [, y]) => upPeers(y).length - upPeers(x).length)[0]?.[0] as LabAgent;
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
    // On an ephemeral port: peers still dial the dead node's endpoint (fill, warm probes), and a connection they open and then
    // refuse would show on the rogue's side as a link it "connected" to.
    const creds = selfSignedNodeCreds(CLUSTER, victim.name);
    // The cluster CA certificate is public: with it the rogue accepts the agents' certificates, so the refusal is theirs.
    const caPem = (await loadIdentities(m.agents[0]?.dir ?? ""))[0]?.caPem ?? "";
    assert.match(caPem, /BEGIN CERTIFICATE/);
    const targets = live().map((a) => {
      const [host, port] = (a.spec.advertise ?? "").split(":");
      return { node: a.name, endpoint: { host, port: Number(port) } };
    });
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
      env: { ...process.env, ROGUE: JSON.stringify({ cluster: CLUSTER, node: victim.name, keyPem: creds.keyPem, certPem: creds.certPem, caPem, host: victim.host.address, port: 0, targets }) },
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
    const started = Date.now();
    for (const a of m.agents) m.start(a);
    await converged(m.agents, "mesh from checkpoints");
    console.log(`      ten agents restarted without a control plane: mesh converged again in ${Date.now() - started} ms`);
    for (const a of m.agents) assert.match(a.outSinceStart(), /booted from checkpoint/, a.name);
  });
});
