/**
 * Pure tree validation of NodeGroups and the status it yields.
 *
 * A group is valid when its cluster exists and every ancestor exists, is in
 * the same cluster and the chain of parents ends at a top-level group
 * without returning to a group already seen.
 */
import type { NodeGroupStatus } from "../../lib/api/types.generated.js";
import type { FabricNodeObject as FabricNode, NodeGroupObject as NodeGroup } from "../objects.js";
import { setCondition, type Condition } from "../runtime/index.js";

/** Reasons of the Ready condition. */
export const Reasons = {
  Valid: "Valid",
  ClusterNotFound: "ClusterNotFound",
  ParentNotFound: "ParentNotFound",
  ParentInOtherCluster: "ParentInOtherCluster",
  CycleDetected: "CycleDetected",
  ParentNotReady: "ParentNotReady",
} as const;

/** What validation needs of a group. */
export interface GroupView {
  name: string;
  cluster: string;
  /** undefined or "" for a top-level group. */
  parent?: string;
}

/** Outcome of validating one group. */
export interface TreeVerdict {
  ready: boolean;
  reason: (typeof Reasons)[keyof typeof Reasons];
  message: string;
  /** Root-to-group path (names joined by "/"), when valid. */
  path?: string;
}

/** Validates the group `name` against the other groups and the clusters. */
export function validateGroup(
  name: string,
  lookup: (name: string) => GroupView | undefined,
  clusterExists: (cluster: string) => boolean,
): TreeVerdict {
  const self = lookup(name);
  if (self === undefined) return { ready: false, reason: Reasons.ParentNotFound, message: `group ${name} not found` };
  if (!clusterExists(self.cluster)) {
    return { ready: false, reason: Reasons.ClusterNotFound, message: `FabricCluster ${self.cluster} does not exist` };
  }
  const chain = [name];
  let cur = self;
  for (;;) {
    const parent = cur.parent;
    if (parent === undefined || parent === "") break;
    const direct = cur === self;
    if (chain.includes(parent)) {
      if (parent === name) {
        return { ready: false, reason: Reasons.CycleDetected, message: `parent chain returns to ${name}: ${[...chain, parent].join(" -> ")}` };
      }
      return { ready: false, reason: Reasons.ParentNotReady, message: `ancestor ${parent} is part of a cycle` };
    }
    const p = lookup(parent);
    if (p === undefined) {
      return direct
        ? { ready: false, reason: Reasons.ParentNotFound, message: `parent NodeGroup ${parent} does not exist` }
        : { ready: false, reason: Reasons.ParentNotReady, message: `ancestor ${cur.name} has a missing parent ${parent}` };
    }
    if (p.cluster !== self.cluster) {
      return direct
        ? { ready: false, reason: Reasons.ParentInOtherCluster, message: `parent NodeGroup ${parent} belongs to cluster ${p.cluster}, not ${self.cluster}` }
        : { ready: false, reason: Reasons.ParentNotReady, message: `ancestor ${parent} belongs to cluster ${p.cluster}, not ${self.cluster}` };
    }
    chain.push(parent);
    cur = p;
  }
  return { ready: true, reason: Reasons.Valid, message: "group tree is valid", path: [...chain].reverse().join("/") };
}

/** The GroupView of a NodeGroup object. */
export function viewOf(g: NodeGroup): GroupView | undefined {
  const name = g.metadata.name;
  if (name === undefined) return undefined;
  return { name, cluster: g.spec.cluster, parent: g.spec.parent };
}

/** The status to publish for a group. */
export function desiredGroupStatus(obj: NodeGroup, verdict: TreeVerdict, childCount: number, now: Date): NodeGroupStatus {
  const generation = obj.metadata.generation ?? 0;
  const current = obj.status ?? {};
  const conditions = setCondition(
    current.conditions as Condition[] | undefined,
    { type: "Ready", status: verdict.ready ? "True" : "False", reason: verdict.reason, message: verdict.message, observedGeneration: generation },
    now,
  );
  const next: NodeGroupStatus = { ...current, observedGeneration: generation, childCount, conditions };
  if (verdict.path !== undefined) next.path = verdict.path;
  else delete next.path;
  return next;
}

/** status.memberCount: the FabricNodes whose spec.group names the group. */
export function memberCount(group: string, nodes: ReadonlyArray<Pick<FabricNode, "spec">>): number {
  let n = 0;
  for (const node of nodes) if (node.spec.group === group) n++;
  return n;
}
