/**
 * Peer manager simulation: N nodes of one cluster, each given a bounded
 * candidate set (20 random peers, as the peer directory will hand out) with
 * synthetic RTT from random positions (5-155 ms), loss (most 0-1 %, 5 % of
 * nodes 10 %) and ±10 % RTT noise per probe. Every node runs its own peer
 * manager over a simulated transport: probes every 2.5 s, an evaluation
 * every 10 s, for 10 simulated minutes. Prints rounds to converge (the round
 * after the last change of an active set), swaps, and evaluation CPU time per
 * node. Prints figures only; asserts nothing.
 *
 *   npx tsx test/bench/mesh-peers.bench.ts [nodes ...]   (default 10 100 1000)
 */
import { performance } from "node:perf_hooks";
import { DEFAULT_CLASS_BOUNDS, emptyPeerMemory, evaluatePeers, type PeerManagerMemory } from "../../agent/mesh/peer-manager.js";
import type { MeshCandidate, MeshNodeClass, MeshSelf } from "../../agent/mesh/types.js";
import { SimTransport, type PeerTruth } from "../support/mesh-sim.js";
import { seeded } from "../support/random.js";

const SEED = 20251122;
const sizes = process.argv.slice(2).map(Number).filter((n) => n > 1);
const ROUNDS = 60;
const CANDIDATES = 20;

function simulate(n: number): void {
  const random = seeded(SEED + n);
  const names = Array.from({ length: n }, (_, i) => `node-${String(i).padStart(5, "0")}`);
  const pos = names.map(() => [random(), random()] as const);
  const lossy = names.map(() => (random() < 0.05 ? 0.1 : random() * 0.01));
  const classOf = (i: number): MeshNodeClass => (i % 10 === 0 ? "relay" : i % 5 === 1 ? "thin" : "standard");
  const regionOf = (i: number): string => ((pos[i]?.[0] ?? 0) < 0.5 ? "west" : "east");
  const zoneOf = (i: number): string => `${regionOf(i)}-${(pos[i]?.[1] ?? 0) < 0.5 ? "a" : "b"}`;
  const cand = (i: number): MeshCandidate => ({
    node: names[i] ?? "",
    cluster: "c1",
    nodeClass: classOf(i),
    endpoints: [`10.0.${i >> 8}.${i & 255}:4433`],
    region: regionOf(i),
    zone: zoneOf(i),
    roles: [],
    relayCapable: classOf(i) === "relay",
    directlyReachable: true,
    load: random() * 0.6,
  });
  const all = names.map((_, i) => cand(i));
  const nodes = names.map((name, i) => {
    const picked = new Set<number>();
    const k = Math.min(CANDIDATES, n - 1);
    while (picked.size < k) {
      const j = Math.floor(random() * n);
      if (j !== i) picked.add(j);
    }
    const truth = new Map<string, PeerTruth>();
    for (const j of picked) {
      const dx = (pos[i]?.[0] ?? 0) - (pos[j]?.[0] ?? 0);
      const dy = (pos[i]?.[1] ?? 0) - (pos[j]?.[1] ?? 0);
      truth.set(names[j] ?? "", { rttMs: 5 + 150 * Math.hypot(dx, dy) / Math.SQRT2, loss: Math.max(lossy[i] ?? 0, lossy[j] ?? 0), alive: true });
    }
    const self: MeshSelf = { node: name, cluster: "c1", nodeClass: classOf(i), region: regionOf(i), zone: zoneOf(i), directlyReachable: true };
    return {
      self,
      candidates: [...picked].map((j) => all[j] as MeshCandidate),
      transport: new SimTransport(truth, seeded(SEED ^ i), 0.1),
      memory: emptyPeerMemory() as PeerManagerMemory,
    };
  });

  let now = 1_000_000;
  let lastChange = 0;
  let swaps = 0;
  let changes = 0;
  let evalMs = 0;
  let evaluations = 0;
  let warmChurn = 0;
  for (let round = 1; round <= ROUNDS; round++) {
    for (let p = 0; p < 4; p++) {
      now += 2_500;
      for (const node of nodes) node.transport.probe(now);
    }
    let changed = false;
    for (const node of nodes) {
      const t0 = performance.now();
      const d = evaluatePeers({ self: node.self, bounds: DEFAULT_CLASS_BOUNDS[node.self.nodeClass], candidates: node.candidates, links: node.transport.table(), now }, node.memory);
      evalMs += performance.now() - t0;
      evaluations++;
      node.memory = d.memory;
      node.transport.apply(d.actions, now);
      for (const a of d.actions) {
        if (a.kind === "connect" && a.reason === "BetterCandidate") swaps++;
        if (a.kind === "disconnect" && a.reason === "NoLongerWarm") warmChurn++;
        else if ((a.kind === "connect" || a.kind === "disconnect") && round > 1) {
          changes++;
          changed = true;
        }
      }
    }
    if (changed) lastChange = round;
  }
  const activeCounts = nodes.map((node) => [...node.transport.links.values()].filter((l) => l.state === "active").length);
  const outOfBounds = nodes.filter((node, i) => {
    const b = DEFAULT_CLASS_BOUNDS[node.self.nodeClass];
    const c = activeCounts[i] ?? 0;
    return c > b.max || c < Math.min(b.min, node.candidates.length);
  }).length;
  console.log(
    `| ${n.toLocaleString("en")} | ${lastChange + 1} | ${swaps} (${(swaps / n).toFixed(2)}/node) | ${changes} | ${(activeCounts.reduce((a, b) => a + b, 0) / n).toFixed(1)} | ${outOfBounds} | ${warmChurn} | ${((evalMs * 1000) / evaluations).toFixed(1)} µs |`,
  );
}

console.log(`seed ${SEED}; ${ROUNDS} rounds of 10 s (probes every 2.5 s), ${CANDIDATES} candidates per node, ±10 % RTT noise`);
console.log("| nodes | rounds to converge | swaps | connects+disconnects after round 1 | mean active | outside bounds | warm set changes | evaluation CPU per node per round |");
console.log("|---|---|---|---|---|---|---|---|");
for (const n of sizes.length ? sizes : [10, 100, 1000]) simulate(n);
