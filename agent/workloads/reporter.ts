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
import type { WorkloadStatus } from "./types.js";

/** Options of WorkloadReporter. */
export interface WorkloadReporterOptions {
  send: (report: StatusReport) => Promise<void>;
  log: Logger;
  /** Retry period after a failed send (default 5 s). */
  retryMs?: number;
  now?: () => number;
}

/** See the module comment. */
export class WorkloadReporter {
  private version = 0;
  private latest: WorkloadStatus[] | undefined;
  private sentJson = "";
  private sending: Promise<void> | undefined;
  private retry: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly o: WorkloadReporterOptions) {}

  /** Hands over the current status; sends it when it differs from the last one delivered. */
  update(status: WorkloadStatus[]): void {
    this.latest = status;
    void this.flush();
  }

  /** Sends the latest status if it has not been delivered; resolves when done (never rejects). */
  async flush(): Promise<void> {
    while (this.sending !== undefined) await this.sending;
    const s = this.latest;
    if (s === undefined || this.closed) return;
    const body: WorkloadReportBody = {
      workloads: s.map((w) => ({ name: w.name, observedGeneration: w.observedGeneration, state: w.state, ready: w.ready, reason: w.reason, message: w.message, restartCount: w.restartCount })),
    };
    const json = JSON.stringify(body);
    if (json === this.sentJson) return;
    this.version = Math.max((this.o.now ?? Date.now)(), this.version + 1);
    const report: StatusReport = { version: this.version, body: body as unknown as Record<string, unknown> };
    this.sending = (async () => {
      try {
        await this.o.send(report);
        this.sentJson = json;
      } catch (err) {
        this.o.log.warn("workload status report failed; will retry", { err, version: report.version });
        if (this.retry === undefined && !this.closed) {
          this.retry = setTimeout(() => {
            this.retry = undefined;
            void this.flush();
          }, this.o.retryMs ?? 5000);
          this.retry.unref();
        }
      } finally {
        this.sending = undefined;
      }
    })();
    await this.sending;
  }

  /** Stops retrying. */
  close(): void {
    this.closed = true;
    if (this.retry !== undefined) clearTimeout(this.retry);
  }
}
