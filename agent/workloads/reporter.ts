/**
 * The agent's one workload status writer: sends the supervisor's status to
 * the control plane (POST /v1/status/workloads, lib/workloads/protocol.ts)
 * only when it changed, each report with a version that only grows (also
 * across agent restarts: max(now in ms, last + 1)), so a stale report never
 * overwrites a newer one. A failed send is retried with the latest status on
 * the next update or after retryMs; reports are never queued
 * (level-triggered: only the newest state matters).
 *
 * Wiring (the agent's loops):
 *   const reporter = new WorkloadReporter({ send: (r) => client.request("POST", "/v1/status/workloads", r).then(() => undefined), log });
 *   const sup = new WorkloadSupervisor({ stateDir, log, onStatusChange: (s) => reporter.update(s) });
 */
import type { StatusReport } from "../../lib/agent-protocol.js";
import type { Logger } from "../../lib/log.js";
import type { WorkloadReportBody } from "../../lib/workloads/protocol.js";
import { LatestReportSender } from "../sync/latest-report.js";
import type { WorkloadStatus } from "./types.js";

/** Options of WorkloadReporter. */
export interface WorkloadReporterOptions {
  send: (report: StatusReport) => Promise<void>;
  log: Logger;
  /** Retry period after a failed send (default 5 s). */
  retryMs?: number;
  now?: () => number;
}

/** The report body of the supervisor's status. */
export function workloadsBody(status: readonly WorkloadStatus[]): WorkloadReportBody {
  return {
    workloads: status.map((w) => ({ name: w.name, observedGeneration: w.observedGeneration, state: w.state, ready: w.ready, reason: w.reason, message: w.message, restartCount: w.restartCount })),
  };
}

/** See the module comment. */
export class WorkloadReporter extends LatestReportSender<WorkloadStatus[]> {
  constructor(o: WorkloadReporterOptions) {
    super({ ...o, what: "workload status report", body: (s) => workloadsBody(s) as unknown as Record<string, unknown> });
  }
}
