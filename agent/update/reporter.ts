/**
 * Reports the update states of a membership's channel-bound workloads as
 * status kind `updates` (POST /v1/status/updates):
 * `{ workloads: [{ workload, channel, state, version, previousVersion?, reason?, since }] }`,
 * only when the body changed, with a version that only grows (max(now in ms,
 * last + 1)); a failed send is retried with the newest body after retryMs.
 */
import type { StatusReport } from "../../lib/agent-protocol.js";
import type { Logger } from "../../lib/log.js";
import type { UpdateRecord } from "./state.js";

/** Status kind of update reports. */
export const UPDATES_STATUS_KIND = "updates";

/** The report body of a set of update records. */
export function updatesBody(records: readonly UpdateRecord[]): { workloads: Record<string, unknown>[] } {
  return {
    workloads: [...records]
      .sort((a, b) => a.workload.localeCompare(b.workload))
      .map((r) => {
        const version = r.target?.version ?? r.current?.version;
        const previousVersion = r.target !== undefined ? r.current?.version : r.previous?.version;
        return {
          workload: r.workload,
          channel: r.channel,
          state: r.state,
          ...(version !== undefined ? { version } : {}),
          ...(previousVersion !== undefined ? { previousVersion } : {}),
          ...(r.reason !== undefined ? { reason: r.reason.slice(0, 1024) } : {}),
          since: r.since,
        };
      }),
  };
}

/** See the module comment. */
export class UpdateReporter {
  private version = 0;
  private sentJson = "";
  private latest: UpdateRecord[] | undefined;
  private sending: Promise<void> | undefined;
  private retry: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly o: { send: (r: StatusReport) => Promise<void>; log: Logger; retryMs?: number }) {}

  update(records: UpdateRecord[]): void {
    this.latest = records;
    void this.flush();
  }

  async flush(): Promise<void> {
    while (this.sending !== undefined) await this.sending;
    if (this.latest === undefined || this.closed) return;
    const body = updatesBody(this.latest);
    const json = JSON.stringify(body);
    if (json === this.sentJson) return;
    this.version = Math.max(Date.now(), this.version + 1);
    const report: StatusReport = { version: this.version, body };
    this.sending = (async () => {
      try {
        await this.o.send(report);
        this.sentJson = json;
      } catch (err) {
        this.o.log.warn("update status report failed; will retry", { err });
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

  close(): void {
    this.closed = true;
    if (this.retry !== undefined) clearTimeout(this.retry);
  }
}
