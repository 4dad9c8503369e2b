/**
 * Sends the newest state of one status kind to the control plane, level-
 * triggered: only when its body changed since the last delivery, each report
 * with a version that only grows (also across agent restarts: max(now in ms,
 * last + 1)), so a stale report never overwrites a newer one. A failed send is
 * retried with the latest state on the next update or after retryMs; reports
 * are never queued (only the newest state matters). The workload, update and
 * VPN reporters are this with their own bodies.
 */
import type { StatusReport } from "../../lib/agent-protocol.js";
import type { Logger } from "../../lib/log.js";

/** Options of {@link LatestReportSender}. */
export interface LatestReportOptions<T> {
  send: (report: StatusReport) => Promise<void>;
  log: Logger;
  /** The report body of a state. */
  body: (state: T) => Record<string, unknown>;
  /**
   * What counts as a change (default: the body's JSON). A body with a field
   * that moves on its own (a countdown) leaves that field out here, so that
   * it rides along with real changes without making reports of its own.
   */
  changeKey?: (state: T) => string;
  /** What the log calls it ("workload status report failed; will retry"). */
  what: string;
  /** Retry period after a failed send (default 5 s). */
  retryMs?: number;
  now?: () => number;
}

/** See the module comment. */
export class LatestReportSender<T> {
  private version = 0;
  private latest: T | undefined;
  private sentJson = "";
  private sending: Promise<void> | undefined;
  private retry: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly o: LatestReportOptions<T>) {}

  /** Hands over the current state; sends it when its body differs from the last one delivered. */
  update(state: T): void {
    this.latest = state;
    void this.flush();
  }

  /** Sends the latest state if it has not been delivered; resolves when done (never rejects). */
  async flush(): Promise<void> {
    while (this.sending !== undefined) await this.sending;
    const s = this.latest;
    if (s === undefined || this.closed) return;
    const body = this.o.body(s);
    const json = this.o.changeKey === undefined ? JSON.stringify(body) : this.o.changeKey(s);
    if (json === this.sentJson) return;
    this.version = Math.max((this.o.now ?? Date.now)(), this.version + 1);
    const report: StatusReport = { version: this.version, body };
    this.sending = (async () => {
      try {
        await this.o.send(report);
        this.sentJson = json;
      } catch (err) {
        this.o.log.warn(`${this.o.what} failed; will retry`, { err, version: report.version });
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
