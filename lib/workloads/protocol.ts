/**
 * The workload status report an agent sends to the agent API
 * (`POST /v1/status/workloads`, mTLS): the COMPLETE list of its workloads'
 * states (a workload missing from the list is no longer reported), stamped
 * with the agent process's boot id and a sequence number that grows within
 * that boot, so a stale report (a retry overtaken by a newer one) never
 * overwrites a newer one.
 */

/** States an agent reports (FabricNode status.workloads[].state). */
export const WORKLOAD_STATES = ["Starting", "Running", "Degraded", "Stopped", "Failed", "Unsupported"] as const;

/** One workload's state on the reporting node. */
export interface WorkloadReportItem {
  /** ServiceWorkload name. */
  name: string;
  /** Generation of the ServiceWorkload the agent acted on. */
  observedGeneration: number;
  state: (typeof WORKLOAD_STATES)[number];
  ready: boolean;
  reason: string;
  message: string;
  restartCount: number;
}

/** The request body. */
export interface WorkloadReport {
  /** Random id of the agent process run (changes when the agent restarts). */
  boot: string;
  /** Grows with every report of this boot. */
  seq: number;
  workloads: WorkloadReportItem[];
}

/** At most this many workloads per report. */
export const MAX_REPORTED_WORKLOADS = 1024;

const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/** Checks a decoded body; returns the report or a message naming the first problem. */
export function parseWorkloadReport(v: unknown): { ok: true; report: WorkloadReport } | { ok: false; message: string } {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return { ok: false, message: "body must be an object" };
  const o = v as Record<string, unknown>;
  if (typeof o.boot !== "string" || o.boot.length === 0 || o.boot.length > 64) return { ok: false, message: "boot must be a string of 1-64 characters" };
  if (typeof o.seq !== "number" || !Number.isSafeInteger(o.seq) || o.seq < 0) return { ok: false, message: "seq must be a non-negative integer" };
  if (!Array.isArray(o.workloads) || o.workloads.length > MAX_REPORTED_WORKLOADS) return { ok: false, message: `workloads must be an array of at most ${MAX_REPORTED_WORKLOADS}` };
  const items: WorkloadReportItem[] = [];
  const seen = new Set<string>();
  for (const [n, x] of o.workloads.entries()) {
    const p = `workloads[${n}]`;
    if (typeof x !== "object" || x === null) return { ok: false, message: `${p} must be an object` };
    const w = x as Record<string, unknown>;
    if (typeof w.name !== "string" || w.name.length > 253 || !NAME.test(w.name)) return { ok: false, message: `${p}.name must be an object name` };
    if (seen.has(w.name)) return { ok: false, message: `${p}.name ${w.name} is listed twice` };
    seen.add(w.name);
    if (typeof w.state !== "string" || !(WORKLOAD_STATES as readonly string[]).includes(w.state)) return { ok: false, message: `${p}.state must be one of ${WORKLOAD_STATES.join(", ")}` };
    const gen = w.observedGeneration ?? 0;
    const rc = w.restartCount ?? 0;
    if (typeof gen !== "number" || !Number.isSafeInteger(gen) || gen < 0) return { ok: false, message: `${p}.observedGeneration must be a non-negative integer` };
    if (typeof rc !== "number" || !Number.isSafeInteger(rc) || rc < 0 || rc > 2_147_483_647) return { ok: false, message: `${p}.restartCount must be a non-negative int32` };
    if (typeof w.ready !== "boolean") return { ok: false, message: `${p}.ready must be a boolean` };
    const reason = typeof w.reason === "string" ? w.reason.slice(0, 128) : "";
    const message = typeof w.message === "string" ? w.message.slice(0, 1024) : "";
    items.push({ name: w.name, observedGeneration: gen, state: w.state as WorkloadReportItem["state"], ready: w.ready, reason, message, restartCount: rc });
  }
  return { ok: true, report: { boot: o.boot, seq: o.seq, workloads: items } };
}
