/**
 * The Kubernetes Events of the RoleAssignment controller: nodes newly
 * refused (one event per node, with the plan's reason), grants added and
 * withdrawn, and an assignment that cannot be honoured at all (its
 * cluster is missing, its selector invalid). Each is decided against what
 * the status last published, so a steady state records nothing.
 */
import type { RoleAssignmentStatus, RoleAssignmentStatusRefusedNode } from "../../lib/api/types.generated.js";
import type { PlannedEvent } from "../runtime/index.js";

/** Reasons of RoleAssignment events. */
export const RoleEventReasons = {
  NodeRefused: "NodeRefused",
  RoleGranted: "RoleGranted",
  RoleWithdrawn: "RoleWithdrawn",
  ClusterNotFound: "ClusterNotFound",
  InvalidSelector: "InvalidSelector",
} as const;

/** At most this many per-node events per reconcile (the rest are summarised in one). */
const MAX_NODE_EVENTS = 20;

/** Events of one reconcile, from the published status and what it decided. */
export function roleEvents(
  published: RoleAssignmentStatus | undefined,
  role: string,
  refused: readonly RoleAssignmentStatusRefusedNode[],
  change: { added: readonly string[]; removed: readonly string[] },
  notReady: { reason: string; message?: string } | undefined,
): PlannedEvent[] {
  const out: PlannedEvent[] = [];
  const before = new Map((published?.refusedNodes ?? []).map((r) => [r.node, r.reason]));
  const fresh = refused.filter((r) => before.get(r.node) !== r.reason);
  for (const r of fresh.slice(0, MAX_NODE_EVENTS)) out.push({ type: "Warning", reason: RoleEventReasons.NodeRefused, message: `role ${role} refused to node ${r.node}: ${r.reason}: ${r.message}` });
  if (fresh.length > MAX_NODE_EVENTS) out.push({ type: "Warning", reason: RoleEventReasons.NodeRefused, message: `role ${role} refused to ${fresh.length - MAX_NODE_EVENTS} more node(s); see status.refusedNodes` });
  const list = (ns: readonly string[]): string => (ns.length <= 10 ? ns.join(", ") : `${ns.slice(0, 10).join(", ")} and ${ns.length - 10} more`);
  if (change.added.length > 0) out.push({ type: "Normal", reason: RoleEventReasons.RoleGranted, message: `role ${role} granted to ${change.added.length} node(s): ${list(change.added)}` });
  if (change.removed.length > 0) out.push({ type: "Normal", reason: RoleEventReasons.RoleWithdrawn, message: `role ${role} withdrawn from ${change.removed.length} node(s): ${list(change.removed)}` });
  const wasReason = published?.conditions?.find((c) => c.type === "Ready")?.reason;
  if (notReady !== undefined && wasReason !== notReady.reason && (notReady.reason === "ClusterNotFound" || notReady.reason === "InvalidSelector")) {
    out.push({ type: "Warning", reason: RoleEventReasons[notReady.reason], message: notReady.message ?? notReady.reason });
  }
  return out;
}
