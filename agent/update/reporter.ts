/**
 * Reports the update states of a membership's channel-bound workloads as
 * status kind `updates` (POST /v1/status/updates):
 * `{ workloads: [{ workload, channel, state, version, previousVersion?, reason?, since }] }`,
 * only when the body changed, with a version that only grows (max(now in ms,
 * last + 1)); a failed send is retried with the newest body after retryMs.
 */
import type { StatusReport } from "../../lib/agent-protocol.js";
import type { Logger } from "../../lib/log.js";
import { LatestReportSender } from "../sync/latest-report.js";
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
export class UpdateReporter extends LatestReportSender<UpdateRecord[]> {
  constructor(o: { send: (r: StatusReport) => Promise<void>; log: Logger; retryMs?: number }) {
    super({ ...o, what: "update status report", body: (records) => updatesBody(records) });
  }
}
