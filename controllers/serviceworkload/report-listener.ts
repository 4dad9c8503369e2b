/**
 * Wakes the ServiceWorkload controller when agents report: storing a
 * workload status report sends `pg_notify('workload_reports', <JSON names>)`
 * (trigger in migrations/008_workload_report_projection.sql), and this listener, on a connection of its own,
 * turns each notification into requeues. It works whether the agent API runs
 * in this process or another. A lost connection is re-established after a
 * second; reconcilers also requeue periodically, so a missed notification
 * only delays a status update.
 */
import type pg from "pg";
import type { Logger } from "../../lib/log.js";

/** Channel of workload report notifications. */
export const WORKLOAD_REPORTS_CHANNEL = "workload_reports";

/** Listens until signal aborts; calls onWorkloads with the names in each notification. */
export async function listenForReports(pool: pg.Pool, onWorkloads: (names: string[]) => void, log: Logger, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    let client: pg.PoolClient | undefined;
    try {
      client = await pool.connect();
      const c = client;
      const ended = new Promise<void>((resolve) => {
        c.on("error", () => resolve());
        c.on("end", () => resolve());
        signal.addEventListener("abort", () => resolve(), { once: true });
      });
      c.on("notification", (n) => {
        if (n.channel !== WORKLOAD_REPORTS_CHANNEL || n.payload === undefined) return;
        try {
          const names = JSON.parse(n.payload) as unknown;
          if (Array.isArray(names)) onWorkloads(names.filter((x): x is string => typeof x === "string"));
        } catch {
          log.warn("malformed workload report notification", { payload: n.payload.slice(0, 200) });
        }
      });
      await c.query(`LISTEN ${WORKLOAD_REPORTS_CHANNEL}`);
      await ended;
    } catch (err) {
      if (!signal.aborted) log.warn("workload report listener failed; retrying", { err });
    } finally {
      if (client !== undefined) {
        try {
          await client.query(`UNLISTEN ${WORKLOAD_REPORTS_CHANNEL}`);
          client.release();
        } catch {
          client.release(true);
        }
      }
    }
    if (!signal.aborted) await new Promise((r) => setTimeout(r, 1000));
  }
}
