/**
 * The sign/store pass of a snapshot batch: hash each assembled payload,
 * keep an unchanged one (same bytes, same serial, no signature), sign the
 * others under the held term, store them, and notify the agent API at
 * commit. Signing and storing are pipelined: signatures are computed on the
 * thread pool (SIGN_CHUNK per chunk, at most SIGN_CHUNKS_IN_FLIGHT chunks
 * queued, since file system, DNS and zlib share that pool) while this thread
 * canonicalises the next chunk, and each signed chunk is written while later
 * ones are signed. The writes go through the transaction's client one after
 * the other (docs/benchmarks.md).
 */
import { createHash } from "node:crypto";
import type pg from "pg";
import { canonicalize } from "../../lib/snapshot/canonical-json.js";
import { signAndEncodeCanonicalAsync, type SnapshotHeader } from "../../lib/snapshot/format.js";
import { notifySnapshotsChanged, writeSnapshots, type SnapshotWrite } from "../../lib/state/snapshots.js";
import type { Assembly } from "./assemble.js";
import { decide, nextSerial } from "./plan.js";

/** Snapshots per group of signatures handed to the thread pool at once. */
const SIGN_CHUNK = 256;
/** Groups of signatures queued at most (bounds what other thread-pool users wait behind). */
const SIGN_CHUNKS_IN_FLIGHT = 2;

/** What the sign/store pass did. */
export interface StoreResult {
  signed: number;
  unchanged: number;
  /** Epoch ms at which the first snapshot written reaches half its lifetime (Infinity: none written). */
  earliestRefresh: number;
}

function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/**
 * Signs and stores the changed snapshots of `assembly` in the fenced
 * transaction `c`, with `term` in every header and `now` as the issue time.
 * Sends one change notification (delivered at commit) when anything was
 * signed. On failure, waits for queued signatures and the write in progress
 * to settle before rethrowing (the transaction is then rolled back).
 */
export async function signAndStore(c: pg.PoolClient, assembly: Assembly, term: number, now: Date): Promise<StoreResult> {
  const { snapshots, meta, highest } = assembly;
  const result: StoreResult = { signed: 0, unchanged: 0, earliestRefresh: Number.POSITIVE_INFINITY };
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
    for (let at = 0; at < snapshots.length && !writeFailed; at += SIGN_CHUNK) {
      jobs = [];
      for (const { node, ref, signing, payload } of snapshots.slice(at, at + SIGN_CHUNK)) {
        // Encoded once: hashed, then spliced into the signed message and the envelope.
        const canonicalPayload = Buffer.from(canonicalize(payload), "utf8");
        const payloadHash = sha256(canonicalPayload);
        const stored = meta.get(node);
        if (decide(stored, payloadHash, now) === "unchanged") {
          result.unchanged++;
          continue;
        }
        const expiresAt = new Date(now.getTime() + signing.lifetimeMs);
        result.earliestRefresh = Math.min(result.earliestRefresh, now.getTime() + signing.lifetimeMs / 2);
        const header: SnapshotHeader = {
          formatVersion: 1,
          cluster: ref.cluster,
          node,
          serial: nextSerial(stored, highest.get(node)),
          authorityTerm: term,
          issuedAt: now.toISOString(),
          expiresAt: expiresAt.toISOString(),
          keyId: signing.key.keyId,
        };
        jobs.push(
          signAndEncodeCanonicalAsync(header, payload, signing.key.key, canonicalPayload).then((bytes) => ({
            cluster: ref.cluster,
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
  return result;
}
