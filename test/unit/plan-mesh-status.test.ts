/**
 * Mesh status in the control plane (controllers/fabricnode/mesh.ts,
 * controllers/fabriccluster/mesh.ts, pure): a node's health against its
 * class's bounds from a fresh report only, the cluster's members below their
 * minimum and the connectivity of the reported active graph, the
 * MeshPartitioned condition and its events.
 */
import assert from "node:assert/strict";
import { meshPartitionEvents } from "../../controllers/fabriccluster/events.js";
import { clusterMeshStatus, MAX_BELOW_MINIMUM_NODES, meshComponents, meshPartitionedCondition } from "../../controllers/fabriccluster/mesh.js";
import { DEFAULT_LIVENESS } from "../../controllers/fabricnode/liveness.js";
import { meshHealthOf, nodeMeshStatus } from "../../controllers/fabricnode/mesh.js";
import { DEFAULT_NODE_GRACE_PERIOD_MS } from "../../lib/state/heartbeats.js";
import { DEFAULT_PEER_POLICY, type MeshReportFacts } from "../../lib/state/mesh.js";
import { seeded } from "../support/random.js";

const NOW = new Date("2026-01-01T00:01:00Z");
const GRACE = 40_000;
const fresh = new Date(NOW.getTime() - 5_000);
const stale = new Date(NOW.getTime() - 60_000);

function member(node: string, up: string[] | undefined, over: Partial<MeshReportFacts> = {}): MeshReportFacts {
  return {
    node,
    nodeClass: "standard",
    roles: ["entry-node"],
    heartbeatAt: fresh,
    ...(up !== undefined ? { report: { receivedAt: fresh, enabled: true, up } } : {}),
    ...over,
  };
}

describe("plan: mesh status of a FabricNode", () => {
  it("judges the active count against the class bounds", () => {
    assert.equal(meshHealthOf(0, { min: 3, max: 5 }), "Isolated");
    assert.equal(meshHealthOf(2, { min: 3, max: 5 }), "BelowMinimum");
    assert.equal(meshHealthOf(3, { min: 3, max: 5 }), "Healthy");
    assert.equal(meshHealthOf(5, { min: 3, max: 5 }), "Healthy");
    assert.equal(meshHealthOf(6, { min: 3, max: 5 }), "AboveMaximum");
    assert.equal(meshHealthOf(0, { min: 0, max: 0 }), "Healthy");
  });

  it("shows count, bounds, sorted peers and health from a fresh report", () => {
    assert.deepEqual(nodeMeshStatus(member("c.a", ["c.d", "c.b", "c.c"]), DEFAULT_PEER_POLICY, NOW, GRACE), {
      nodeClass: "standard",
      minPeers: 3,
      maxPeers: 5,
      activePeers: 3,
      peers: ["c.b", "c.c", "c.d"],
      health: "Healthy",
    });
    assert.equal(nodeMeshStatus(member("c.a", ["c.b"]), DEFAULT_PEER_POLICY, NOW, GRACE)?.health, "BelowMinimum");
    assert.equal(nodeMeshStatus(member("c.a", []), DEFAULT_PEER_POLICY, NOW, GRACE)?.health, "Isolated");
  });

  it("applies the class: thin 1-3, relay and core 8-20 (a core-node role makes it core)", () => {
    const thin = nodeMeshStatus(member("c.a", ["c.b"], { nodeClass: "thin" }), DEFAULT_PEER_POLICY, NOW, GRACE);
    assert.deepEqual([thin?.nodeClass, thin?.minPeers, thin?.maxPeers, thin?.health], ["thin", 1, 3, "Healthy"]);
    const core = nodeMeshStatus(member("c.a", ["c.b", "c.c", "c.d"], { roles: ["core-node"] }), DEFAULT_PEER_POLICY, NOW, GRACE);
    assert.deepEqual([core?.nodeClass, core?.minPeers, core?.maxPeers, core?.health], ["core", 8, 20, "BelowMinimum"]);
  });

  it("judges freshness with the FabricNode liveness grace period by default", () => {
    assert.equal(DEFAULT_NODE_GRACE_PERIOD_MS, DEFAULT_LIVENESS.gracePeriodMs);
  });

  it("is Unknown without a report, or when the agent's heartbeats are stale; absent for non-members", () => {
    assert.deepEqual(nodeMeshStatus(member("c.a", undefined), DEFAULT_PEER_POLICY, NOW, GRACE), { nodeClass: "standard", minPeers: 3, maxPeers: 5, health: "Unknown" });
    assert.deepEqual(nodeMeshStatus(member("c.a", ["c.b", "c.c", "c.d"], { heartbeatAt: stale }), DEFAULT_PEER_POLICY, NOW, GRACE), { nodeClass: "standard", minPeers: 3, maxPeers: 5, health: "Unknown" });
    const noHeartbeat = member("c.a", ["c.b", "c.c", "c.d"]);
    delete noHeartbeat.heartbeatAt;
    assert.equal(nodeMeshStatus(noHeartbeat, DEFAULT_PEER_POLICY, NOW, GRACE)?.health, "Unknown");
    assert.equal(nodeMeshStatus(undefined, DEFAULT_PEER_POLICY, NOW, GRACE), undefined);
  });
});

describe("plan: mesh status of a FabricCluster", () => {
  it("counts components with union-find, ignoring edges to unknown nodes", () => {
    assert.equal(meshComponents([], []), 0);
    assert.equal(meshComponents(["a"], []), 1);
    assert.equal(meshComponents(["a", "b", "c"], [["a", "b"]]), 2);
    assert.equal(meshComponents(["a", "b", "c"], [["a", "b"], ["c", "b"]]), 1);
    assert.equal(meshComponents(["a", "b"], [["a", "x"], ["x", "b"]]), 2);
  });

  it("agrees with a breadth-first search on random graphs (seeded)", () => {
    const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
    console.log(`      seed ${seed}`);
    const rnd = seeded(seed);
    for (let round = 0; round < 200; round++) {
      const n = 1 + Math.floor(rnd() * 40);
      const nodes = Array.from({ length: n }, (_, i) => `n${i}`);
      const edges: [string, string][] = [];
      const m = Math.floor(rnd() * n * 1.2);
      for (let i = 0; i < m; i++) edges.push([`n${Math.floor(rnd() * n)}`, `n${Math.floor(rnd() * (n + 3))}`]);
      const adj = new Map(nodes.map((x) => [x, [] as string[]]));
      for (const [a, b] of edges) if (adj.has(a) && adj.has(b)) (adj.get(a) as string[]).push(b), (adj.get(b) as string[]).push(a);
      const seen = new Set<string>();
      let comps = 0;
      for (const s of nodes) {
        if (seen.has(s)) continue;
        comps++;
        const q = [s];
        seen.add(s);
        while (q.length > 0) for (const y of adj.get(q.pop() as string) ?? []) if (!seen.has(y)) (seen.add(y), q.push(y));
      }
      assert.equal(meshComponents(nodes, edges), comps, `seed ${seed} round ${round}`);
    }
  });

  it("a link counts when either end reports it; stale and unreported members are left out", () => {
    // a-b reported by a only, c-d by both; e is stale (its links do not join anything), f never reported.
    const members = [member("c.a", ["c.b"]), member("c.b", []), member("c.c", ["c.d"]), member("c.d", ["c.c"]), member("c.e", ["c.a", "c.c"], { heartbeatAt: stale }), member("c.f", undefined)];
    const s = clusterMeshStatus(members, DEFAULT_PEER_POLICY, NOW, GRACE);
    assert.deepEqual(s, { reportingNodes: 4, belowMinimum: 4, belowMinimumNodes: ["c.a", "c.b", "c.c", "c.d"], components: 2, connected: false });
    const c = meshPartitionedCondition(s, 3);
    assert.deepEqual([c?.status, c?.reason, c?.observedGeneration], ["True", "ComponentsDisconnected", 3]);
    assert.match(c?.message ?? "", /2 components over 4 reporting nodes/);
    // One bridge joins them.
    const joined = clusterMeshStatus([...members.slice(0, 4), member("c.g", ["c.b", "c.d"])], DEFAULT_PEER_POLICY, NOW, GRACE);
    assert.deepEqual([joined?.components, joined?.connected], [1, true]);
    assert.equal(meshPartitionedCondition(joined, 3)?.status, "False");
  });

  it("bounds the list of nodes below their minimum; no members, no status; no reports, Unknown", () => {
    const members = Array.from({ length: 50 }, (_, i) => member(`c.n${String(i).padStart(2, "0")}`, []));
    const s = clusterMeshStatus(members, DEFAULT_PEER_POLICY, NOW, GRACE);
    assert.equal(s?.belowMinimum, 50);
    assert.equal(s?.belowMinimumNodes?.length, MAX_BELOW_MINIMUM_NODES);
    assert.equal(s?.belowMinimumNodes?.[0], "c.n00");
    assert.equal(clusterMeshStatus([], DEFAULT_PEER_POLICY, NOW, GRACE), undefined);
    assert.equal(meshPartitionedCondition(undefined, 1), undefined);
    const none = clusterMeshStatus([member("c.a", undefined)], DEFAULT_PEER_POLICY, NOW, GRACE);
    assert.deepEqual(none, { reportingNodes: 0, belowMinimum: 0, belowMinimumNodes: [], components: 0, connected: true });
    assert.equal(meshPartitionedCondition(none, 1)?.status, "Unknown");
  });

  it("warns when the condition turns True, tells when it heals, and stays quiet otherwise", () => {
    assert.deepEqual(meshPartitionEvents("False", { status: "True", message: "m" }).map((e) => [e.type, e.reason]), [["Warning", "MeshPartitioned"]]);
    assert.deepEqual(meshPartitionEvents(undefined, { status: "True", message: "m" }).map((e) => e.reason), ["MeshPartitioned"]);
    assert.deepEqual(meshPartitionEvents("True", { status: "True", message: "m" }), []);
    assert.deepEqual(meshPartitionEvents("True", { status: "False", message: "m" }).map((e) => [e.type, e.reason]), [["Normal", "MeshConnected"]]);
    assert.deepEqual(meshPartitionEvents(undefined, { status: "False", message: "m" }), []);
    assert.deepEqual(meshPartitionEvents("Unknown", { status: "False", message: "m" }), []);
  });
});
