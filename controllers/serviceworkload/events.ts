/**
 * The Kubernetes Events of the ServiceWorkload controller, decided from the
 * agents' reports as the status summarises them: an instance that starts
 * crash-looping, one that degrades or fails otherwise, one that recovers,
 * and a spec the controller refuses. Compared with the per-node detail the
 * status last published, so a steady state records nothing.
 */
import type { ServiceWorkloadStatus, ServiceWorkloadStatusNode } from "../../lib/api/types.generated.js";
import type { PlannedEvent } from "../runtime/index.js";

/** Reasons of ServiceWorkload events. */
export const WorkloadEventReasons = {
  CrashLoopBackOff: "CrashLoopBackOff",
  WorkloadDegraded: "WorkloadDegraded",
  WorkloadRecovered: "WorkloadRecovered",
  InvalidSpec: "InvalidSpec",
} as const;

const BAD = new Set(["Degraded", "Failed", "Unsupported"]);
const MAX_NODE_EVENTS = 20;

function crashLooping(n: ServiceWorkloadStatusNode | undefined): boolean {
  return n?.message?.startsWith("CrashLoopBackOff") === true;
}

/** Events of one reconcile, from the published status and the new one. */
export function workloadEvents(published: ServiceWorkloadStatus | undefined, next: ServiceWorkloadStatus, problem: { reason: string; message: string } | undefined): PlannedEvent[] {
  const out: PlannedEvent[] = [];
  const before = new Map((published?.nodes ?? []).map((n) => [n.node, n]));
  for (const n of next.nodes ?? []) {
    if (out.length >= MAX_NODE_EVENTS) break;
    const p = before.get(n.node);
    const detail = `${n.message ?? n.state}${n.restartCount !== undefined ? ` (restarts: ${n.restartCount})` : ""}`;
    if (crashLooping(n) && !crashLooping(p)) out.push({ type: "Warning", reason: WorkloadEventReasons.CrashLoopBackOff, message: `crash-looping on node ${n.node}: ${detail}` });
    else if (BAD.has(n.state) && !crashLooping(n) && (p === undefined || p.state !== n.state)) out.push({ type: "Warning", reason: WorkloadEventReasons.WorkloadDegraded, message: `${n.state} on node ${n.node}: ${detail}` });
    else if (n.ready && p !== undefined && !p.ready && BAD.has(p.state)) out.push({ type: "Normal", reason: WorkloadEventReasons.WorkloadRecovered, message: `ready again on node ${n.node} (was ${p.state})` });
  }
  const wasReason = published?.conditions?.find((c) => c.type === "Ready")?.reason;
  if (problem?.reason === "InvalidSpec" && wasReason !== "InvalidSpec") out.push({ type: "Warning", reason: WorkloadEventReasons.InvalidSpec, message: problem.message });
  return out;
}
