/**
 * Wakes the ServiceWorkload controller when agents report: storing a
 * workload status report sends `pg_notify('workload_reports', <JSON names>)`
 * (trigger in migrations/008_workload_report_projection.sql), and this listener, on a connection of its own,
 * turns each notification into requeues. It works whether the agent API runs
 * in this process or another. A lost connection is re-established (from a
 * second on, lib/db/listener.ts); reports stored meanwhile were announced to
 * nobody, so a reconnection wakes every workload ("*", as the trigger sends
 * when the names do not fit). Reconcilers also requeue periodically.
 */
import type pg from "pg";
import { PgListener } from "../../lib/db/listener.js";
import type { Logger } from "../../lib/log.js";

/** Channel of workload report notifications. */
export const WORKLOAD_REPORTS_CHANNEL = "workload_reports";

/** Listens until signal aborts; calls onWorkloads with the names in each notification. */
export async function listenForReports(pool: pg.Pool, onWorkloads: (names: string[]) => void, log: Logger, signal: AbortSignal): Promise<void> {
  let reconnecting = false;
  const listener = new PgListener({
    connection: pool,
    channels: [WORKLOAD_REPORTS_CHANNEL],
    onNotification: (n) => {
      if (n.channel !== WORKLOAD_REPORTS_CHANNEL || n.payload === undefined) return;
      try {
        const names = JSON.parse(n.payload) as unknown;
        if (Array.isArray(names)) onWorkloads(names.filter((x): x is string => typeof x === "string"));
      } catch {
        log.warn("malformed workload report notification", { payload: n.payload.slice(0, 200) });
      }
    },
    onConnect: () => {
      // Not on the first connection: the controller's start lists everything anyway.
      if (reconnecting) onWorkloads(["*"]);
      reconnecting = true;
    },
    meanwhile: "periodic requeues only",
    log,
    retryMs: 1000,
  });
  await listener.run(signal);
}
