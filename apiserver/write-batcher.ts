/**
 * Group commit for API writes. Requests that arrive while a write is in
 * flight are queued and sent together as one call of api_write_batch
 * (migrations/011_api_write_batch.sql): one transaction, one hold of the
 * revision lock, one WAL flush and one NOTIFY for the whole batch, as etcd
 * batches proposals into one backend commit. Under no load a write goes out
 * alone at once, so batching adds no latency; under load the batch grows to
 * what arrived during the previous commit.
 *
 * Each element keeps its own optimistic condition: a stale one answers
 * undefined and the others still commit. A write is acknowledged only after
 * its batch committed.
 */
import type pg from "pg";
import type { KubeObject } from "./object.js";

/** One conditional write (the wire form api_write_batch reads). */
export interface WriteOp {
  op: "create" | "update" | "delete";
  g: string;
  r: string;
  ns: string;
  n: string;
  /** create: the new object's uid. */
  uid?: string;
  /** update and delete: the resourceVersion the decision was based on. */
  rv?: string;
  /** The object to store (delete: the object as it was). */
  d: KubeObject;
}

interface Pending {
  op: WriteOp;
  resolve: (rv: string | undefined) => void;
  reject: (err: unknown) => void;
}

const batchSql = "SELECT idx, new_rv::text AS rv FROM api_write_batch($1::jsonb)";

/** Queues writes and commits them in batches. */
export class WriteBatcher {
  private queue: Pending[] = [];
  private inFlight = 0;
  /** Calls of api_write_batch and the writes they carried, since start. */
  readonly stats = { batches: 0, writes: 0 };

  /**
   * @param maxInFlight batches sent at once: two keep the next batch waiting
   *   on the revision lock while the previous one flushes its WAL.
   * @param maxBatch elements per call (bounds statement size and latency).
   */
  constructor(
    private readonly pool: pg.Pool,
    private readonly maxInFlight = 2,
    private readonly maxBatch = 200,
  ) {}

  /** Writes one element; resolves with its new resourceVersion, or undefined when its condition failed. */
  write(op: WriteOp): Promise<string | undefined> {
    return new Promise((resolve, reject) => {
      this.queue.push({ op, resolve, reject });
      this.kick();
    });
  }

  private kick(): void {
    while (this.inFlight < this.maxInFlight && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      this.inFlight++;
      this.stats.batches++;
      this.stats.writes += batch.length;
      void this.run(batch).finally(() => {
        this.inFlight--;
        this.kick();
      });
    }
  }

  private async run(batch: Pending[]): Promise<void> {
    let rows: Array<{ idx: number; rv: string | null }>;
    try {
      const r = await this.pool.query<{ idx: number; rv: string | null }>({
        name: "api_write_batch",
        text: batchSql,
        values: [JSON.stringify(batch.map((p) => p.op))],
      });
      rows = r.rows;
    } catch (err) {
      if (batch.length > 1 && isStatementError(err)) {
        // One element broke the statement (nothing was committed): give each
        // its own transaction so only the offending write fails.
        await Promise.all(batch.map((p) => this.run([p])));
        return;
      }
      for (const p of batch) p.reject(err);
      return;
    }
    for (const row of rows) batch[row.idx]?.resolve(row.rv ?? undefined);
    // Defensive: an element without a row answers "not written".
    if (rows.length !== batch.length) {
      const seen = new Set(rows.map((r) => r.idx));
      batch.forEach((p, i) => seen.has(i) || p.resolve(undefined));
    }
  }
}

/**
 * True for an error PostgreSQL raised while executing the statement (the
 * transaction rolled back, the connection is fine), false for connection
 * loss or shutdown, where the outcome is unknown and must not be retried.
 */
function isStatementError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  if (typeof code !== "string" || code.length !== 5) return false;
  const cls = code.slice(0, 2);
  return !["08", "53", "57", "58", "XX"].includes(cls);
}
