/**
 * The workload status report: the agent sends it through the agent API's
 * generic status endpoint (lib/agent-protocol.ts) as
 *
 *   POST /v1/status/workloads   { "version": V, "body": WorkloadReportBody }
 *
 * The body is the COMPLETE list of the node's workload states (a workload
 * missing from it is no longer reported). `version` only grows, also across
 * agent restarts (the reporter uses max(now in ms, last + 1)), so a stale
 * report never overwrites a newer one. The control plane projects the
 * stored report into workload_reports (migrations/008).
 */

/** The status kind of workload reports. */
export const WORKLOAD_STATUS_KIND = "workloads";

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

/** `body` of the status report. */
export interface WorkloadReportBody {
  workloads: WorkloadReportItem[];
}
