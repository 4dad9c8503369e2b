/**
 * The Kubernetes Events of the NodeGroup controller: a group whose place in
 * the tree became invalid (missing or foreign parent, cycle, missing
 * cluster) and one that became valid again, decided against the Ready
 * reason the status last published.
 */
import type { PlannedEvent } from "../runtime/index.js";

/** Reasons of NodeGroup events (the invalid ones are the Ready reasons themselves). */
export const GroupEventReasons = { GroupValid: "GroupValid" } as const;

/** The event of a verdict that changed since the published one. */
export function groupEvents(publishedReason: string | undefined, verdict: { ready: boolean; reason: string; message: string }): PlannedEvent[] {
  if (publishedReason === verdict.reason) return [];
  if (!verdict.ready) return [{ type: "Warning", reason: verdict.reason, message: verdict.message }];
  return publishedReason === undefined ? [] : [{ type: "Normal", reason: GroupEventReasons.GroupValid, message: `${verdict.message} (was ${publishedReason})` }];
}
