/**
 * Events for the controllers: the kind-agnostic recorder of lib/kube/events.ts
 * (shared with the agent API, which records refused enrollments), and the
 * shape in which a kind's pure event decisions (its events.ts) hand events
 * to its reconciler.
 */
import type { EventRecorderLike, EventType } from "../../lib/kube/events.js";

export { EventRecorder, coreV1EventSink, noEvents, referenceOf, type EventRecorderLike, type EventRecorderOptions, type EventSink, type EventType, type ObjectRef } from "../../lib/kube/events.js";

/** One event a plan decided to record about the object reconciled. */
export interface PlannedEvent {
  type: EventType;
  /** PascalCase, constant (e.g. CertificateIssued). */
  reason: string;
  message: string;
}

/** Records each planned event about obj (nothing when no recorder is given). */
export function recordAll(events: EventRecorderLike | undefined, obj: Parameters<EventRecorderLike["event"]>[0], planned: readonly PlannedEvent[]): void {
  if (events === undefined) return;
  for (const e of planned) events.event(obj, e.type, e.reason, e.message);
}
