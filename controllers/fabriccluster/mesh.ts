/**
 * Pure: status.mesh of a FabricCluster from its members' mesh reports
 * (lib/state/mesh.ts meshReportsOf): the members below their class minimum
 * and whether the graph of reporting members joined by their reported
 * active links is connected (union-find, O(N*k α)). A link counts when
 * either end reports it up: the two ends report at different times, and a
 * link one side still shows is one that carried probes a moment ago.
 * Only members whose agent is alive (fresh heartbeats) and reported count;
 * links to nodes outside that set are ignored.
 */
import type { FabricClusterStatusMesh } from "../../lib/api/types.generated.js";
import { meshBoundsOf, meshClassOf, type MeshPeerPolicy, type MeshReportFacts } from "../../lib/state/mesh.js";
import { type Condition } from "../runtime/index.js";

/** At most this many names in status.mesh.belowMinimumNodes. */
export const MAX_BELOW_MINIMUM_NODES = 20;

/** Connected components of an undirected graph over `nodes`; edges naming other nodes are ignored. */
export function meshComponents(nodes: readonly string[], edges: Iterable<readonly [string, string]>): number {
  const index = new Map(nodes.map((n, i) => [n, i]));
  const parent = nodes.map((_, i) => i);
  const find = (i: number): number => {
    let r = i;
    while (parent[r] !== r) r = parent[r] as number;
    while (parent[i] !== r) {
      const next = parent[i] as number;
      parent[i] = r;
      i = next;
    }
    return r;
  };
  let components = nodes.length;
  for (const [a, b] of edges) {
    const i = index.get(a);
    const j = index.get(b);
    if (i === undefined || j === undefined) continue;
    const ri = find(i);
    const rj = find(j);
    if (ri !== rj) {
      parent[ri] = rj;
      components--;
    }
  }
  return components;
}

/** The cluster's status.mesh; undefined (the field removed) when the cluster has no mesh member. */
export function clusterMeshStatus(members: readonly MeshReportFacts[], policy: MeshPeerPolicy, now: Date, graceMs: number): FabricClusterStatusMesh | undefined {
  if (members.length === 0) return undefined;
  const fresh = members.filter((m) => m.report !== undefined && m.heartbeatAt !== undefined && now.getTime() - m.heartbeatAt.getTime() <= graceMs);
  const below = fresh.filter((m) => new Set(m.report?.up ?? []).size < meshBoundsOf(policy, meshClassOf(m)).min).map((m) => m.node).sort();
  const edges = fresh.flatMap((m) => (m.report?.up ?? []).map((p) => [m.node, p] as const));
  const components = meshComponents(fresh.map((m) => m.node), edges);
  return {
    reportingNodes: fresh.length,
    belowMinimum: below.length,
    belowMinimumNodes: below.slice(0, MAX_BELOW_MINIMUM_NODES),
    components,
    connected: components <= 1,
  };
}

/** Reasons of the MeshPartitioned condition. */
export const MeshReasons = { Partitioned: "ComponentsDisconnected", Connected: "Connected", NoReports: "NoReports" } as const;

/** The MeshPartitioned condition for a status.mesh (undefined: no mesh member, no condition). */
export function meshPartitionedCondition(mesh: FabricClusterStatusMesh | undefined, generation: number): Omit<Condition, "lastTransitionTime"> | undefined {
  if (mesh === undefined) return undefined;
  if ((mesh.reportingNodes ?? 0) === 0) return { type: "MeshPartitioned", status: "Unknown", reason: MeshReasons.NoReports, message: "no mesh member has reported from a live agent", observedGeneration: generation };
  if (mesh.connected === false) {
    return {
      type: "MeshPartitioned",
      status: "True",
      reason: MeshReasons.Partitioned,
      message: `the reported active mesh graph has ${mesh.components} components over ${mesh.reportingNodes} reporting nodes`,
      observedGeneration: generation,
    };
  }
  return { type: "MeshPartitioned", status: "False", reason: MeshReasons.Connected, message: `the reported active mesh graph of ${mesh.reportingNodes} nodes is connected`, observedGeneration: generation };
}
