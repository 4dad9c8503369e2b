/**
 * Collects heartbeats in memory and writes them to PostgreSQL in batches:
 * one multi-row statement every `flushMs` (default 500 ms), or sooner when
 * `maxBatch` are pending. Only the newest heartbeat per node is kept between
 * flushes. Ten thousand agents every 10 s are ~1,000 rows/s, i.e. two
 * statements a second instead of a thousand transactions.
 *
 * A heartbeat is acknowledged when queued, not when written: losing the last
 * half second of heartbeats in a crash only makes a node look silent for
 * one more interval, which the grace period already absorbs.
 */
import type pg from "pg";
import type { Logger } from "../lib/log.js";
import { writeHeartbeats, type HeartbeatRow } from "../lib/state/heartbeats.js";
import { writeMeshReports, type MeshReportRow } from "../lib/state/mesh.js";

/** See the module comment. */
export class HeartbeatBatcher {
  private pending = new Map<string, HeartbeatRow>();
  private pendingMesh = new Map<string, MeshReportRow>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  /** Rows written so far (for metrics and tests). */
  written = 0;
  /** Statements issued so far. */
  batches = 0;

  constructor(
    private readonly pool: pg.Pool,
    private readonly log: Logger,
    private readonly flushMs = 500,
    private readonly maxBatch = 5000,
  ) {}

  /** Queues a heartbeat (a newer one of the same node replaces it). */
  add(row: HeartbeatRow): void {
    const prev = this.pending.get(row.node);
    if (prev === undefined || prev.seq <= row.seq) this.pending.set(row.node, row);
    if (this.pending.size >= this.maxBatch) void this.flush();
    else if (this.timer === undefined) {
      this.timer = setTimeout(() => void this.flush(), this.flushMs);
      this.timer.unref();
    }
  }

  /**
   * Queues a heartbeat's mesh report (the newest per node wins). Written
   * after the heartbeats of the same flush, only where something changed
   * (lib/state/mesh.ts).
   */
  addMesh(row: MeshReportRow): void {
    this.pendingMesh.set(row.node, row);
    if (this.timer === undefined) {
      this.timer = setTimeout(() => void this.flush(), this.flushMs);
      this.timer.unref();
    }
  }

  /** Writes what is pending now. */
  async flush(): Promise<void> {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    await this.flushing;
    if (this.pending.size === 0 && this.pendingMesh.size === 0) return;
    const rows = [...this.pending.values()];
    this.pending = new Map();
    const mesh = [...this.pendingMesh.values()];
    this.pendingMesh = new Map();
    this.flushing = (async () => {
      try {
        if (rows.length > 0) {
          await writeHeartbeats(this.pool, rows);
          this.written += rows.length;
          this.batches++;
        }
        if (mesh.length > 0) await writeMeshReports(this.pool, mesh);
      } catch (err) {
        this.log.warn("writing heartbeats failed; they will be re-sent", { error: (err as Error).message, rows: rows.length, mesh: mesh.length });
      } finally {
        this.flushing = undefined;
      }
    })();
    await this.flushing;
  }

  /** Flushes and stops. */
  async stop(): Promise<void> {
    await this.flush();
  }
}
