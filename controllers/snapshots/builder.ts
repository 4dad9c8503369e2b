/**
 * SnapshotBuilder (leader only): drains the dirty index (snapshot_dirty,
 * lib/snapshot/contributors.ts) and re-signs only the snapshots a change
 * touched. For each dirty node it builds the complete payload (identity from
 * PostgreSQL, then every contributor it was given), hashes the canonical
 * payload and compares it with the stored hash: the same input gives the
 * same bytes, so an unchanged payload keeps its serial and is not re-signed.
 * A changed payload gets the next serial, the held authority term and a fresh
 * validity window, and is stored with its hashes in node_snapshots; the
 * agent API is notified at commit.
 *
 * Each batch is one fenced transaction: the term written in the header is
 * the term the transaction is fenced on, and a deposed leader writes nothing.
 * The dirty marks of a batch are deleted in the same transaction, and only
 * if not re-marked meanwhile (a change during the build is never lost).
 * A batch holds at most `batchSize` nodes: a cluster-wide mark ("*") over a
 * larger cluster is first replaced by one mark per node (one statement), so
 * a rebuild of 100,000 nodes is 100 bounded transactions, each committed and
 * announced on its own, instead of one transaction holding every payload.
 * Within the transaction, an assembly pass builds the payloads (assemble.ts)
 * and a sign/store pass signs and stores the changed ones, pipelined
 * (store.ts: signatures on the thread pool, a chunk upserted while the next
 * ones are signed; figures in docs/benchmarks.md).
 *
 * Wake-ups: a trigger on snapshot_dirty NOTIFYs the builder at the writer's
 * commit (one arriving during a batch starts the next batch at once, as that
 * batch may have read the tables before the commit); a poll (default 1 s)
 * covers lost notifications and a sweep (default
 * 30 s) marks nodes without a snapshot and snapshots past half their lifetime.
 * The sweep also runs as soon as the earliest stored snapshot reaches half its
 * lifetime (known from the last sweep and from what the builder wrote since),
 * so a lifetime shorter than twice the sweep period (FabricCluster
 * spec.snapshotLifetime may be as short as 10 s) is still re-issued before it
 * expires.
 *
 * The cluster's Ed25519 key is opened from cluster_keys with the KEK once and
 * cached as a KeyObject.
 */
import { createPrivateKey } from "node:crypto";
import type pg from "pg";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { open as openSealed, type Kek } from "../../lib/crypto/kek.js";
import { PgListener } from "../../lib/db/listener.js";
import { withTransaction } from "../../lib/db/pool.js";
import type { Logger } from "../../lib/log.js";
import type { SnapshotContributor } from "../../lib/snapshot/contributors.js";
import { keyIdOf } from "../../lib/snapshot/format.js";
import { clusterKeyAad, type ClusterStore, type Fence } from "../../lib/state/index.js";
import { clearDirty, deleteSnapshots, dirtyBacklog, expandClusterMarks, markMissingAndAging, nextRefreshAt, readDirty, SNAPSHOT_DIRTY_CHANNEL, type DirtyMark } from "../../lib/state/snapshots.js";
import { assemblePayloads, loadBatch, type DirtyBatch, type SigningKey } from "./assemble.js";
import { signAndStore } from "./store.js";

/** Options of SnapshotBuilder. */
export interface SnapshotBuilderOptions {
  pool: pg.Pool;
  fence: Fence;
  clusters: ClusterStore;
  kek: Kek;
  /** The parts of a node's payload after its identity, filled in this order. */
  contributors: readonly SnapshotContributor[];
  /** True while this instance leads. */
  isLeader: () => boolean;
  log: Logger;
  registry?: Registry;
  now?: () => Date;
  /** Dirty marks, and nodes, per batch (default 1000; a "*" mark over more nodes is split into per-node marks). */
  batchSize?: number;
  /** Poll period when no notification arrives (default 1 s). */
  pollMs?: number;
  /** Period of the missing/aging sweep (default 30 s). */
  sweepMs?: number;
}

/** Result of one batch. */
export interface BatchResult {
  marks: number;
  nodes: number;
  signed: number;
  unchanged: number;
  deleted: number;
}

/** See the module comment. */
export class SnapshotBuilder {
  private readonly keys = new Map<string, Promise<SigningKey>>();
  private readonly now: () => Date;
  private readonly built: Counter | undefined;
  private readonly batchSeconds: Histogram | undefined;
  private wake: (() => void) | undefined;
  private lastSweep = 0;
  /** Epoch ms at which the earliest stored snapshot reaches half its lifetime (Infinity: none known). */
  private nextRefreshMs = Number.POSITIVE_INFINITY;

  constructor(private readonly o: SnapshotBuilderOptions) {
    this.now = o.now ?? (() => new Date());
    if (o.registry !== undefined) {
      this.built = new Counter({ name: "fabric_snapshots_built_total", help: "Node snapshots by build outcome (signed, unchanged, deleted).", labelNames: ["outcome"], registers: [o.registry] });
      this.batchSeconds = new Histogram({ name: "fabric_snapshot_batch_seconds", help: "Time to build, sign and store one batch of node snapshots.", buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5], registers: [o.registry] });
      // The backlog, read at scrape time: the lag an operator sees is the age of the oldest mark not yet built.
      const backlog = (): Promise<{ marks: number; oldestAgeSeconds: number }> => dirtyBacklog(o.pool).catch(() => ({ marks: Number.NaN, oldestAgeSeconds: Number.NaN }));
      new Gauge({ name: "fabric_snapshot_dirty_nodes", help: "Dirty marks waiting for the snapshot builder (a mark of node '*' stands for a whole cluster).", registers: [o.registry], async collect() {
        this.set((await backlog()).marks);
      } });
      new Gauge({ name: "fabric_snapshot_oldest_dirty_age_seconds", help: "Age of the oldest dirty mark waiting for the snapshot builder (0 when none): the builder's lag.", registers: [o.registry], async collect() {
        this.set((await backlog()).oldestAgeSeconds);
      } });
    }
  }

  /** The cluster's snapshot signing key (opened once, cached by key id). */
  private async signingKey(cluster: string, keyId: string): Promise<SigningKey> {
    const cacheKey = `${cluster}|${keyId}`;
    let p = this.keys.get(cacheKey);
    if (p === undefined) {
      p = (async () => {
        const rows = await this.o.clusters.keys(cluster);
        const row = rows.filter((k) => k.kind === "snapshot").sort((a, b) => b.keyVersion - a.keyVersion)[0];
        if (row === undefined) throw new Error(`cluster ${cluster} has no snapshot key`);
        const der = openSealed(this.o.kek, row.sealed, clusterKeyAad(cluster, "snapshot", row.keyVersion));
        const key = createPrivateKey({ key: der, format: "der", type: "pkcs8" });
        der.fill(0);
        const id = keyIdOf(key);
        if (id !== keyId) throw new Error(`cluster ${cluster}: sealed snapshot key ${id} is not the published key ${keyId}`);
        return { key, keyId: id };
      })();
      p.catch(() => this.keys.delete(cacheKey));
      this.keys.set(cacheKey, p);
    }
    return p;
  }

  /**
   * Builds one batch of dirty marks; resolves with what it did (marks 0:
   * nothing was dirty). One fenced transaction: assembly pass
   * (assemble.ts), then sign/store pass (store.ts), then the gone nodes'
   * snapshots are deleted and the marks cleared.
   */
  async drainOnce(): Promise<BatchResult> {
    const result: BatchResult = { marks: 0, nodes: 0, signed: 0, unchanged: 0, deleted: 0 };
    const size = this.o.batchSize ?? 1000;
    const started = process.hrtime.bigint();
    let marks: DirtyMark[];
    let batch: DirtyBatch;
    for (;;) {
      marks = await readDirty(this.o.pool, size);
      if (marks.length === 0) return result;
      batch = await loadBatch(this.o.pool, marks, this.o.clusters, (c, keyId) => this.signingKey(c, keyId));
      if (batch.names.length <= size || !marks.some((m) => m.node === "*")) break;
      // A cluster-wide mark over more nodes than a batch holds: drained as one mark per node, batch by batch.
      await expandClusterMarks(this.o.pool, marks);
    }
    result.marks = marks.length;
    result.nodes = batch.names.length;
    const contributors = this.o.contributors;
    const done = await this.o.fence.runFenced(async (c) => {
      const term = this.o.fence.heldTerm();
      if (term === undefined) throw new Error("building snapshots without an authority term");
      const assembly = await assemblePayloads(c, batch, contributors, this.o.log);
      const stored = await signAndStore(c, assembly, term, this.now());
      const deleted = await deleteSnapshots(c, assembly.gone);
      await clearDirty(c, marks);
      return { ...stored, deleted };
    });
    result.signed = done.signed;
    result.unchanged = done.unchanged;
    result.deleted = done.deleted;
    // Committed: the next sweep is due no later than when the first of these reaches half its lifetime.
    this.nextRefreshMs = Math.min(this.nextRefreshMs, done.earliestRefresh);
    this.built?.inc({ outcome: "signed" }, result.signed);
    this.built?.inc({ outcome: "unchanged" }, result.unchanged);
    this.built?.inc({ outcome: "deleted" }, result.deleted);
    this.batchSeconds?.observe(Number(process.hrtime.bigint() - started) / 1e9);
    if (result.signed > 0 || result.deleted > 0) this.o.log.info("snapshots built", { ...result });
    return result;
  }

  /** Drains until nothing is dirty; resolves with the totals. */
  async drainAll(): Promise<BatchResult> {
    const total: BatchResult = { marks: 0, nodes: 0, signed: 0, unchanged: 0, deleted: 0 };
    for (;;) {
      const r = await this.drainOnce();
      if (r.marks === 0) return total;
      total.marks += r.marks;
      total.nodes += r.nodes;
      total.signed += r.signed;
      total.unchanged += r.unchanged;
      total.deleted += r.deleted;
    }
  }

  /**
   * Marks nodes without a snapshot and snapshots past half their lifetime;
   * then learns when the next stored snapshot reaches half its lifetime (a
   * snapshot already past it and still not re-issued, e.g. its cluster has
   * no key, is left to the periodic sweep).
   */
  async sweep(): Promise<number> {
    // One transaction: both statements see the same now(), so no snapshot
    // falls between "past half its lifetime" and "the next one due".
    const { marked, next } = await withTransaction(this.o.pool, async (c) => ({ marked: await markMissingAndAging(c), next: await nextRefreshAt(c) }));
    this.nextRefreshMs = next?.getTime() ?? Number.POSITIVE_INFINITY;
    return marked;
  }

  /** Runs until signal aborts: drains while leading, on notification or poll. */
  async run(signal: AbortSignal): Promise<void> {
    // A notification that arrives while a batch is being built must not wait
    // for the poll: the batch may have read the tables before that commit.
    // A (re)connection counts as one: commits while nobody listened were not announced.
    let notified = false;
    const onNotify = (): void => {
      notified = true;
      this.wake?.();
    };
    const listener = new PgListener({ connection: this.o.pool, channels: [SNAPSHOT_DIRTY_CHANNEL], onNotification: onNotify, onConnect: onNotify, meanwhile: "polling", log: this.o.log });
    const stopListening = new AbortController();
    const listening = listener.run(AbortSignal.any([signal, stopListening.signal]));
    await listener.firstAttempt;
    let failures = 0;
    try {
      while (!signal.aborted) {
        let more = false;
        let drained = false;
        notified = false;
        if (this.o.isLeader() && this.o.fence.heldTerm() !== undefined) {
          try {
            if (Date.now() - this.lastSweep >= (this.o.sweepMs ?? 30_000) || Date.now() >= this.nextRefreshMs) {
              this.lastSweep = Date.now();
              await this.sweep();
            }
            const r = await this.drainOnce();
            more = r.marks >= (this.o.batchSize ?? 1000);
            drained = true;
            failures = 0;
          } catch (err) {
            failures++;
            if ((err as Error).name !== "FencedError") this.o.log.error("snapshot build failed", { error: err, failures });
          }
        }
        if (more || (drained && notified)) continue;
        // Wake no later than the next refresh (a refresh already due waits the poll: no busy loop).
        const untilRefresh = this.nextRefreshMs - Date.now();
        const pollMs = untilRefresh > 0 ? Math.min(this.o.pollMs ?? 1000, untilRefresh) : (this.o.pollMs ?? 1000);
        const waitMs = failures > 0 ? Math.min(30_000, 250 * 2 ** Math.min(failures, 7)) * Math.random() : pollMs;
        await new Promise<void>((resolve) => {
          const t = setTimeout(done, waitMs);
          function done(): void {
            clearTimeout(t);
            signal.removeEventListener("abort", done);
            resolve();
          }
          this.wake = done;
          signal.addEventListener("abort", done, { once: true });
        });
        this.wake = undefined;
      }
    } finally {
      stopListening.abort();
      await listening;
    }
  }
}
