/**
 * The Kubernetes Events of the FabricNode controller: health as the
 * heartbeats tell it (Ready lost when they stop, back when they resume, a
 * degraded report) and membership decisions (disabled, revoked,
 * re-activated). Decided from the published value and the new one, so an
 * event marks a change, like the kubelet's NodeReady / NodeNotReady.
 */
import type { PlannedEvent } from "../runtime/index.js";

/** Reasons of FabricNode events. */
export const NodeEventReasons = {
  NodeReady: "NodeReady",
  NodeNotReady: "NodeNotReady",
  NodeDegraded: "NodeDegraded",
  NodeRevoked: "NodeRevoked",
  NodeDisabled: "NodeDisabled",
  NodeActivated: "NodeActivated",
} as const;

/** The event of a published health change (none when it did not change or was never published). */
export function healthEvents(from: string | undefined, to: string | undefined, why: string): PlannedEvent[] {
  if (to === undefined || from === to) return [];
  if (to === "Unknown") return [{ type: "Warning", reason: NodeEventReasons.NodeNotReady, message: `Ready is Unknown: ${why}` }];
  if (to === "Healthy") return from === undefined ? [] : [{ type: "Normal", reason: NodeEventReasons.NodeReady, message: from === "Unknown" ? `heartbeats resumed: ${why}` : `health ${from} -> Healthy: ${why}` }];
  return [{ type: "Warning", reason: NodeEventReasons.NodeDegraded, message: `health ${to}: ${why}` }];
}

/** The event of a membership change applied to the node's row. */
export function membershipEvents(from: string, to: string, reason: string): PlannedEvent[] {
  if (from === to) return [];
  if (to === "Revoked") return [{ type: "Warning", reason: NodeEventReasons.NodeRevoked, message: `membership revoked (${reason}): every certificate of the node is revoked, for good` }];
  if (to === "Disabled") return [{ type: "Normal", reason: NodeEventReasons.NodeDisabled, message: `membership ${from} -> Disabled (${reason})` }];
  return [{ type: "Normal", reason: NodeEventReasons.NodeActivated, message: `membership ${from} -> ${to} (${reason})` }];
}
