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
 * Within the transaction, signing and storing are pipelined (signatures on
 * the thread pool, a chunk upserted while the next ones are signed), which
 * keeps a cluster-wide re-sign of 10,000 nodes well under a second
 * (docs/snapshots.md, docs/benchmarks.md).
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
import { createHash, createPrivateKey, type KeyObject } from "node:crypto";
import type pg from "pg";
import { Counter, Histogram, Registry } from "prom-client";
import { open as openSealed, type Kek } from "../../lib/crypto/kek.js";
import { withTransaction } from "../../lib/db/pool.js";
import type { Logger } from "../../lib/log.js";
import { canonicalize } from "../../lib/snapshot/canonical-json.js";
import type { SnapshotContributor, SnapshotNodeRef } from "../../lib/snapshot/contributors.js";
import { keyIdOf, signAndEncodeSnapshotAsync, type SnapshotHeader, type SnapshotPayload } from "../../lib/snapshot/format.js";
import { clusterKeyAad, type ClusterStore, type Fence } from "../../lib/state/index.js";
import {
  clearDirty,
  clusterNodeNames,
  deleteSnapshots,
  markMissingAndAging,
  nextRefreshAt,
  nodeSources,
  notifySnapshotsChanged,
  readDirty,
  SNAPSHOT_DIRTY_CHANNEL,
  storedMeta,
  writeSnapshots,
  type SnapshotWrite,
} from "../../lib/state/snapshots.js";
import { decide, lifetimeOf, nextSerial } from "./plan.js";

/** Snapshots per group of signatures handed to the thread pool at once. */
const SIGN_CHUNK = 256;
/** Groups of signatures queued at most (bounds what other thread-pool users wait behind). */
const SIGN_CHUNKS_IN_FLIGHT = 2;

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
  /** Dirty marks per batch (default 1000). */
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

interface SigningKey {
  key: KeyObject;
  keyId: string;
}

function sha256(data: string | Buffer): string {
  return createHash("sha256").update(data).digest("hex");
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

  /** Builds one batch of dirty marks; resolves with what it did (marks 0: nothing was dirty). */
  async drainOnce(): Promise<BatchResult> {
    const result: BatchResult = { marks: 0, nodes: 0, signed: 0, unchanged: 0, deleted: 0 };
    const marks = await readDirty(this.o.pool, this.o.batchSize ?? 1000);
    if (marks.length === 0) return result;
    const started = process.hrtime.bigint();
    result.marks = marks.length;
    const nodes = new Set<string>();
    for (const m of marks) {
      if (m.node === "*") for (const n of await clusterNodeNames(this.o.pool, m.cluster)) nodes.add(n);
      else nodes.add(m.node);
    }
    const names = [...nodes].sort();
    result.nodes = names.length;
    // Cluster rows and keys are read before the transaction (the key is cached).
    const clusterNames = [...new Set(marks.map((m) => m.cluster))];
    const clusterInfo = new Map<string, { lifetimeMs: number; key: SigningKey } | Error>();
    for (const c of clusterNames) {
      const row = await this.o.clusters.get(c);
      if (row === undefined) {
        clusterInfo.set(c, new Error(`cluster ${c} has no row`));
        continue;
      }
      try {
        clusterInfo.set(c, { lifetimeMs: lifetimeOf(row.spec), key: await this.signingKey(c, row.snapshotKeyId) });
      } catch (err) {
        clusterInfo.set(c, err as Error);
      }
    }
    let earliestRefresh = Number.POSITIVE_INFINITY;
    await this.o.fence.runFenced(async (c) => {
      earliestRefresh = Number.POSITIVE_INFINITY;
      const term = this.o.fence.heldTerm();
      if (term === undefined) throw new Error("building snapshots without an authority term");
      const sources = await nodeSources(c, names);
      const { meta, highest } = await storedMeta(c, names);
      const gone: string[] = [];
      const now = this.now();
      // Pass 1: identity, then every contributor — in batches per cluster where it can.
      const pending: Array<{ node: string; src: NonNullable<ReturnType<typeof sources.get>>; info: { lifetimeMs: number; key: SigningKey }; payload: SnapshotPayload; ref: SnapshotNodeRef }> = [];
      for (const node of names) {
        const src = sources.get(node);
        if (src === undefined) {
          if (meta.has(node)) gone.push(node);
          continue;
        }
        const info = clusterInfo.get(src.cluster);
        if (info === undefined || info instanceof Error) {
          this.o.log.warn("snapshot not built: cluster not ready", { cluster: src.cluster, node, error: info?.message ?? "not in this batch" });
          continue;
        }
        const payload: SnapshotPayload = { identity: src.identity, roles: [], workloads: [], meshPeers: [], vpnAssignments: [], updates: [] };
        pending.push({ node, src, info, payload, ref: { cluster: src.cluster, node, membership: src.membership } });
      }
      const byCluster = new Map<string, typeof pending>();
      for (const p of pending) {
        let list = byCluster.get(p.ref.cluster);
        if (!list) byCluster.set(p.ref.cluster, (list = []));
        list.push(p);
      }
      for (const contributor of this.o.contributors) {
        for (const [cluster, list] of byCluster) {
          try {
            if (contributor.contributeMany) {
              await contributor.contributeMany(c, cluster, list.map((p) => p.ref), new Map(list.map((p) => [p.node, p.payload])));
            } else {
              for (const p of list) await contributor.contribute(c, p.ref, p.payload);
            }
          } catch (cause) {
            throw new Error(`snapshot contributor ${contributor.name} failed for cluster ${cluster}`, { cause });
          }
        }
      }
      // Pass 2: hash, decide, sign, store — pipelined: signatures are computed
      // on the thread pool (SIGN_CHUNK per chunk, at most SIGN_CHUNKS_IN_FLIGHT
      // chunks queued) while this thread canonicalises the next chunk, and each
      // signed chunk is written while later ones are signed. The writes go
      // through this transaction's client one after the other.
      let writing: Promise<void> = Promise.resolve();
      let writeFailed = false;
      const store = (rows: SnapshotWrite[]): void => {
        if (rows.length === 0) return;
        result.signed += rows.length;
        writing = writing.then(() => writeSnapshots(c, rows, { notify: false }));
        // Awaited below; meanwhile a failed write stops the signing (the transaction is lost anyway).
        writing.catch(() => {
          writeFailed = true;
        });
      };
      const inFlight: Array<Promise<SnapshotWrite[]>> = [];
      let jobs: Array<Promise<SnapshotWrite>> = [];
      try {
        for (let at = 0; at < pending.length && !writeFailed; at += SIGN_CHUNK) {
          jobs = [];
          for (const { node, src, info, payload } of pending.slice(at, at + SIGN_CHUNK)) {
            const canonicalPayload = canonicalize(payload);
            const payloadHash = sha256(canonicalPayload);
            const stored = meta.get(node);
            const decision = decide(stored, payloadHash, now);
            if (decision === "unchanged") {
              result.unchanged++;
              continue;
            }
            const expiresAt = new Date(now.getTime() + info.lifetimeMs);
            earliestRefresh = Math.min(earliestRefresh, now.getTime() + info.lifetimeMs / 2);
            const header: SnapshotHeader = {
              formatVersion: 1,
              cluster: src.cluster,
              node,
              serial: nextSerial(stored, highest.get(node)),
              authorityTerm: term,
              issuedAt: now.toISOString(),
              expiresAt: expiresAt.toISOString(),
              keyId: info.key.keyId,
            };
            jobs.push(
              signAndEncodeSnapshotAsync(header, payload, info.key.key, canonicalPayload).then(({ bytes }) => ({
                cluster: src.cluster,
                node,
                serial: header.serial,
                term,
                payloadHash,
                hash: sha256(bytes),
                bytes,
                issuedAt: now,
                expiresAt,
              })),
            );
          }
          const chunk = Promise.all(jobs);
          chunk.catch(() => undefined); // awaited below
          inFlight.push(chunk);
          jobs = [];
          if (inFlight.length >= SIGN_CHUNKS_IN_FLIGHT) store(await (inFlight.shift() as Promise<SnapshotWrite[]>));
        }
        while (inFlight.length > 0) store(await (inFlight.shift() as Promise<SnapshotWrite[]>));
      } catch (err) {
        // Let queued signatures and the write in progress settle before the transaction is rolled back.
        await Promise.allSettled([...inFlight, ...jobs, writing]);
        throw err;
      }
      await writing;
      if (result.signed > 0) await notifySnapshotsChanged(c);
      result.deleted = await deleteSnapshots(c, gone);
      await clearDirty(c, marks);
    });
    // Committed: the next sweep is due no later than when the first of these reaches half its lifetime.
    this.nextRefreshMs = Math.min(this.nextRefreshMs, earliestRefresh);
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
    let listener: pg.PoolClient | undefined;
    // A notification that arrives while a batch is being built must not wait
    // for the poll: the batch may have read the tables before that commit.
    let notified = false;
    const onNotify = (): void => {
      notified = true;
      this.wake?.();
    };
    const listen = async (): Promise<void> => {
      try {
        const c = await this.o.pool.connect();
        listener = c;
        c.on("notification", onNotify);
        // Released once only: by this handler while current, else by whoever took it (finally below).
        c.on("error", () => {
          if (listener !== c) return;
          listener = undefined;
          c.release(true);
        });
        await c.query(`LISTEN ${SNAPSHOT_DIRTY_CHANNEL}`);
      } catch (err) {
        this.o.log.warn("snapshot builder cannot listen; polling only", { error: (err as Error).message });
        listener?.release(true);
        listener = undefined;
      }
    };
    let failures = 0;
    try {
      while (!signal.aborted) {
        if (listener === undefined) await listen();
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
      const c = listener;
      if (c !== undefined) {
        listener = undefined;
        c.off("notification", onNotify);
        const ok = await c.query(`UNLISTEN ${SNAPSHOT_DIRTY_CHANNEL}`).then(
          () => true,
          () => false,
        );
        c.release(!ok);
      }
    }
  }
}
