/**
 * Downloads one artifact of a verified release from the agent API
 * (`GET /v1/artifacts/<sha256>`, mTLS) into `<dir>/<sha256>`:
 *
 * - bytes go to `<dir>/<sha256>.partial`; a partial left by a cut download
 *   is hashed again and the download resumes after it with a Range request
 *   (a server answering 200 instead of 206 restarts it from zero);
 * - the signed length is a hard cap: one byte more and the download stops,
 *   the partial is deleted and ReleaseError(TooLong) is thrown (endless data);
 * - at the end length and sha256 must match the signed manifest
 *   (LengthMismatch / HashMismatch: partial deleted);
 * - the verified file is fsynced and renamed to `<dir>/<sha256>` (directory
 *   fsynced), so the final name only ever holds a complete, verified file.
 *   A final file already there is checked again and reused.
 *
 * Transport failures (cut connection, timeout, 5xx) are thrown as they come
 * and keep the partial for the next attempt; refusals by the server
 * (403 not assigned, 404) are AgentApiRequestError.
 *
 * With `caches` (update-cache nodes, cache-client.ts), each is tried first,
 * in order; any failure of a cache (refused, unreachable, cut, a body that
 * breaks the length cap or the hash) moves on to the next source, resuming
 * the same `.partial` (a refused body has deleted it). The control plane is
 * the last source; when its resume of a partial a cache filled ends in a
 * hash mismatch, it is asked once more from zero.
 */
import { createReadStream } from "node:fs";
import { mkdir, open, rename, rm, stat, truncate } from "node:fs/promises";
import type { IncomingMessage } from "node:http";
import { join } from "node:path";
import { ArtifactHasher, ReleaseError, type ExpectedArtifact } from "../../lib/release/index.js";
import type { AgentApiClient } from "../http/client.js";

export interface FetchOptions {
  /** Bytes held so far and the total, after each chunk. */
  onProgress?: (received: number, total: number) => void;
  signal?: AbortSignal;
  /** Idle timeout of the download (default 30 s). */
  timeoutMs?: number;
  /** Sources to try before `client` (update caches), in order. */
  caches?: readonly ArtifactClient[];
  /** A cache failed (the next source is tried). */
  onCacheFailure?: (index: number, err: unknown) => void;
}

/** The client calls fetchArtifact needs (AgentApiClient has them). */
export type ArtifactClient = Pick<AgentApiClient, "stream">;

const SHA256 = /^[a-f0-9]{64}$/;

/** See the module comment. Resolves with the path of the verified artifact. */
export async function fetchArtifact(client: ArtifactClient, artifact: ExpectedArtifact, dir: string, o: FetchOptions = {}): Promise<string> {
  if (!SHA256.test(artifact.sha256)) throw new ReleaseError("HashMismatch", "artifact sha256 is not 64 lowercase hex digits");
  const caches = o.caches ?? [];
  for (const [i, cache] of caches.entries()) {
    try {
      return await fetchFrom(cache, artifact, dir, o);
    } catch (err) {
      if (o.signal?.aborted === true) throw err;
      o.onCacheFailure?.(i, err);
    }
  }
  try {
    return await fetchFrom(client, artifact, dir, o);
  } catch (err) {
    // A partial a cache filled with wrong bytes fails only at the end: start over once, from the control plane alone.
    if (caches.length > 0 && err instanceof ReleaseError && err.code === "HashMismatch") return fetchFrom(client, artifact, dir, o);
    throw err;
  }
}

/** One source's attempt (the module comment without caches). */
async function fetchFrom(client: ArtifactClient, artifact: ExpectedArtifact, dir: string, o: FetchOptions): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const final = join(dir, artifact.sha256);
  const partial = `${final}.partial`;
  if (await exists(final)) {
    try {
      await hashFile(final, new ArtifactHasher(artifact));
      return final;
    } catch (err) {
      if (!(err instanceof ReleaseError)) throw err;
      await rm(final, { force: true });
    }
  }
  const hasher = new ArtifactHasher(artifact);
  let offset = 0;
  if (await exists(partial)) {
    try {
      await hashFile(partial, hasher, false);
      offset = hasher.bytes;
    } catch (err) {
      if (!(err instanceof ReleaseError)) throw err;
      await rm(partial, { force: true });
      return fetchFrom(client, artifact, dir, o);
    }
  }
  o.onProgress?.(offset, artifact.length);
  if (offset < artifact.length) {
    const res = await client.stream(`/v1/artifacts/${artifact.sha256}`, offset > 0 ? { Range: `bytes=${offset}-` } : {}, {
      signal: o.signal,
      timeoutMs: o.timeoutMs,
      what: "artifact download",
    });
    let h = hasher;
    if (offset > 0 && res.statusCode !== 206) {
      // The server sent the whole artifact: start over.
      await truncate(partial, 0);
      h = new ArtifactHasher(artifact);
      offset = 0;
    } else if (offset > 0 && !(res.headers["content-range"] ?? "").startsWith(`bytes ${offset}-`)) {
      res.destroy();
      throw new ReleaseError("LengthMismatch", `server resumed at the wrong offset (${String(res.headers["content-range"])})`);
    }
    await appendBody(res, partial, h, offset === 0, o.onProgress, artifact.length);
    if (h.bytes < artifact.length) throw new Error(`artifact download cut after ${h.bytes} of ${artifact.length} bytes; the partial is kept for a resume`);
    await finishOrDelete(h, partial);
  } else {
    await finishOrDelete(hasher, partial);
  }
  await fsync(partial);
  await rename(partial, final);
  await fsync(dir);
  return final;
}

async function appendBody(res: IncomingMessage, path: string, hasher: ArtifactHasher, fresh: boolean, onProgress: FetchOptions["onProgress"], total: number): Promise<void> {
  const fh = await open(path, fresh ? "w" : "a", 0o600);
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      try {
        hasher.update(chunk);
      } catch (err) {
        res.destroy();
        await fh.close().catch(() => undefined);
        await rm(path, { force: true });
        throw err;
      }
      await fh.write(chunk);
      onProgress?.(hasher.bytes, total);
    }
  } finally {
    await fh.close().catch(() => undefined);
  }
}

async function finishOrDelete(hasher: ArtifactHasher, partial: string): Promise<void> {
  try {
    hasher.finish();
  } catch (err) {
    await rm(partial, { force: true });
    throw err;
  }
}

/** Feeds a file through a hasher; with `finish`, checks length and digest too. */
async function hashFile(path: string, hasher: ArtifactHasher, finish = true): Promise<void> {
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) hasher.update(chunk);
  if (finish) hasher.finish();
}

async function exists(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined)) !== undefined;
}

async function fsync(path: string): Promise<void> {
  const fh = await open(path, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
