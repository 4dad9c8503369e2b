/**
 * Pure decisions of the RoleAssignment controller: which selected nodes get
 * the role and which are refused (and why), and the status to publish.
 *
 * A node is granted the role only when it is a FabricNode of the
 * assignment's cluster, its membership is Active (spec and record), and it
 * reports every capability the role requires (lib/enrollment/roles.ts
 * ROLE_REQUIREMENTS, the one place that maps roles to capabilities).
 * Capabilities are what a host can do, never a permission by themselves.
 */
import type { RoleAssignmentStatus, RoleAssignmentStatusRefusedNode } from "../../lib/api/types.generated.js";
import { ROLE_REQUIREMENTS } from "../../lib/enrollment/roles.js";
import type { RoleCandidate } from "../../lib/state/index.js";
import { setCondition, type Condition } from "../runtime/index.js";

/** Ready reasons of RoleAssignment. */
export const RoleReasons = {
  AllNodesAccepted: "AllNodesAccepted",
  NodesRefused: "NodesRefused",
  NoNodesSelected: "NoNodesSelected",
  AssignmentDisabled: "AssignmentDisabled",
  ClusterNotFound: "ClusterNotFound",
  InvalidSelector: "InvalidSelector",
} as const;

/** A FabricNode as the plan sees it. */
export interface NodeView {
  name: string;
  cluster: string;
  /** spec.membership (default Active). */
  membership: "Active" | "Disabled" | "Revoked";
  labels: Record<string, string>;
}

/** Inputs of planGrants. */
export interface GrantInput {
  cluster: string;
  role: string;
  nodeNames: readonly string[];
  /** Nodes the selector matched (any cluster; filtered here). */
  selected: readonly NodeView[];
  /** Every FabricNode by name (for nodeNames lookups). */
  nodes: ReadonlyMap<string, NodeView>;
  /** Enrollment records of the cluster's nodes (membership, capabilities). */
  records: ReadonlyMap<string, RoleCandidate>;
}

/** Outcome: nodes granted, nodes refused. */
export interface GrantPlan {
  granted: string[];
  refused: RoleAssignmentStatusRefusedNode[];
}

/** Capabilities of `role` that `have` lacks. */
export function missingFor(role: string, have: readonly string[]): string[] {
  const set = new Set(have);
  return (ROLE_REQUIREMENTS[role] ?? []).filter((c) => !set.has(c));
}

/** Decides every selected node (see the module comment). Sorted, deterministic. */
export function planGrants(i: GrantInput): GrantPlan {
  const granted: string[] = [];
  const refused = new Map<string, RoleAssignmentStatusRefusedNode>();
  const consider = (name: string, n: NodeView | undefined): void => {
    if (refused.has(name) || granted.includes(name)) return;
    if (n === undefined) {
      refused.set(name, { node: name, reason: "NotFound", message: "no FabricNode of that name" });
      return;
    }
    if (n.cluster !== i.cluster) {
      refused.set(name, { node: name, reason: "WrongCluster", message: `node belongs to cluster ${n.cluster}, not ${i.cluster}` });
      return;
    }
    const rec = i.records.get(name);
    if (rec === undefined) {
      refused.set(name, { node: name, reason: "NotActive", message: "node has no enrollment record (nodes join only through an approved JoinRequest)" });
      return;
    }
    if (n.membership !== "Active" || rec.membership !== "Active") {
      const m = rec.membership !== "Active" ? rec.membership : n.membership;
      refused.set(name, { node: name, reason: "NotActive", message: `membership is ${m}` });
      return;
    }
    const missing = missingFor(i.role, rec.capabilities);
    if (missing.length > 0) {
      refused.set(name, { node: name, reason: "MissingCapability", message: `role ${i.role} requires capabilities the node does not report: ${missing.join(", ")}` });
      return;
    }
    granted.push(name);
  };
  for (const name of i.nodeNames) consider(name, i.nodes.get(name));
  for (const n of i.selected) if (n.cluster === i.cluster) consider(n.name, n);
  granted.sort();
  const refusedList = [...refused.values()].sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  return { granted, refused: refusedList };
}

/** The status to publish. */
export function desiredRoleStatus(
  current: RoleAssignmentStatus | undefined,
  generation: number,
  plan: GrantPlan,
  ready: { reason: keyof typeof RoleReasons; message?: string } | undefined,
  now: Date,
): RoleAssignmentStatus {
  let cond: Omit<Condition, "lastTransitionTime">;
  if (ready !== undefined) cond = { type: "Ready", status: "False", reason: RoleReasons[ready.reason], message: ready.message ?? "", observedGeneration: generation };
  else if (plan.refused.length > 0) {
    const byReason = new Map<string, number>();
    for (const r of plan.refused) byReason.set(r.reason, (byReason.get(r.reason) ?? 0) + 1);
    const summary = [...byReason].map(([r, n]) => `${n} ${r}`).join(", ");
    cond = { type: "Ready", status: "False", reason: RoleReasons.NodesRefused, message: `${plan.refused.length} node(s) refused (${summary}); ${plan.granted.length} granted`, observedGeneration: generation };
  } else if (plan.granted.length === 0) cond = { type: "Ready", status: "False", reason: RoleReasons.NoNodesSelected, message: "no node selected", observedGeneration: generation };
  else cond = { type: "Ready", status: "True", reason: RoleReasons.AllNodesAccepted, message: `role granted to ${plan.granted.length} node(s)`, observedGeneration: generation };
  return {
    ...current,
    observedGeneration: generation,
    matchedNodes: plan.granted,
    matchedCount: plan.granted.length,
    refusedNodes: plan.refused,
    refusedCount: plan.refused.length,
    conditions: setCondition(current?.conditions as Condition[] | undefined, cond, now),
  };
}
