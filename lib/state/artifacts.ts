/**
 * The version store: immutable, content-addressed artifacts. The bytes live
 * in files under `<state dir>/artifacts/sha256/<2 hex>/<sha256>`, the index
 * (sha256, length, uploaded_at, uploaded_by) in PostgreSQL's `artifacts`
 * table; an artifact exists only once its index row does (docs/releases.md,
 * docs/decisions.md for why files and not large objects).
 *
 * An upload streams into `<dir>/tmp/<random>` while the sha256 is computed;
 * more bytes than announced are refused as they arrive, and only a body
 * whose length and digest match the name is fsynced, renamed into place
 * (the directory fsynced too) and indexed. A partial or refused upload is
 * deleted and never visible. Storing what is already there is a no-op
 * (idempotent), and two uploads of the same artifact at once both end in
 * the same file and one row.
 */
import { randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { open, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Readable } from "node:stream";
import type pg from "pg";
import { appendAudit } from "../audit/chain.js";
import { ArtifactHasher, ReleaseError } from "../release/index.js";
import type { Queryable } from "./table.js";

export const SHA256_HEX = /^[a-f0-9]{64}$/;

/** An index row. */
export interface ArtifactRow {
  sha256: string;
  length: number;
  uploadedAt: Date;
  uploadedBy: string;
}

/** Outcome of a store call. */
export interface StoreOutcome {
  stored: boolean;
  /** The artifact was there already (nothing was written). */
  alreadyPresent: boolean;
  length: number;
}

/** Why an upload was refused (the caller maps codes to 4xx). */
export class ArtifactRefused extends Error {
  override readonly name = "ArtifactRefused";
  constructor(
    readonly code: "BadName" | "TooLong" | "LengthMismatch" | "HashMismatch" | "TooLarge" | "Aborted",
    message: string,
  ) {
    super(message);
  }
}

/** See the module comment. */
export class ArtifactStore {
  readonly dir: string;

  constructor(
    private readonly pool: pg.Pool,
    stateDir: string,
    /** Largest artifact accepted (bytes). */
    readonly maxLength: number = 4 * 1024 ** 3,
  ) {
    this.dir = join(stateDir, "artifacts");
    mkdirSync(join(this.dir, "sha256"), { recursive: true, mode: 0o700 });
    mkdirSync(join(this.dir, "tmp"), { recursive: true, mode: 0o700 });
  }

  /** Removes uploads a crashed process left behind (call before serving). */
  sweepTemporary(): void {
    const tmp = join(this.dir, "tmp");
    if (!existsSync(tmp)) return;
    for (const f of readdirSync(tmp)) rmSync(join(tmp, f), { force: true });
  }

  /** Path of an artifact's file (present or not). */
  pathOf(sha256: string): string {
    if (!SHA256_HEX.test(sha256)) throw new ArtifactRefused("BadName", "artifact name is not 64 lowercase hex digits");
    return join(this.dir, "sha256", sha256.slice(0, 2), sha256);
  }

  /** The index row, if the artifact is stored. */
  async get(sha256: string): Promise<ArtifactRow | undefined> {
    if (!SHA256_HEX.test(sha256)) return undefined;
    const r = await this.pool.query<{ sha256: string; length: string; uploaded_at: Date; uploaded_by: string }>(
      "SELECT sha256, length, uploaded_at, uploaded_by FROM artifacts WHERE sha256 = $1",
      [sha256],
    );
    const row = r.rows[0];
    return row && { sha256: row.sha256, length: Number(row.length), uploadedAt: row.uploaded_at, uploadedBy: row.uploaded_by };
  }

  /**
   * Stores `length` bytes from `body` under `sha256` (see the module
   * comment). Throws ArtifactRefused; nothing is kept after a refusal.
   */
  async put(sha256: string, length: number, body: Readable, uploadedBy: string): Promise<StoreOutcome> {
    if (!SHA256_HEX.test(sha256)) throw new ArtifactRefused("BadName", "artifact name is not 64 lowercase hex digits");
    if (!Number.isSafeInteger(length) || length < 0) throw new ArtifactRefused("LengthMismatch", "length must be a non-negative integer");
    if (length > this.maxLength) throw new ArtifactRefused("TooLarge", `artifact of ${length} bytes is larger than the store's limit of ${this.maxLength}`);
    const existing = await this.get(sha256);
    if (existing !== undefined && existsSync(this.pathOf(sha256))) {
      body.resume();
      return { stored: false, alreadyPresent: true, length: existing.length };
    }
    const tmp = join(this.dir, "tmp", `${sha256}.${randomBytes(8).toString("hex")}`);
    const hasher = new ArtifactHasher({ length, sha256 });
    const out = createWriteStream(tmp, { flags: "wx", mode: 0o600 });
    try {
      await new Promise<void>((resolve, reject) => {
        let done = false;
        const fail = (err: unknown) => {
          if (done) return;
          done = true;
          body.unpipe(out);
          body.resume();
          out.destroy();
          reject(err);
        };
        body.on("data", (chunk: Buffer) => {
          try {
            hasher.update(chunk);
          } catch (err) {
            fail(err);
          }
        });
        body.on("aborted", () => fail(new ArtifactRefused("Aborted", "the upload was cut")));
        body.on("error", (err) => fail(err));
        out.on("error", (err) => fail(err));
        out.on("finish", () => {
          if (!done) {
            done = true;
            resolve();
          }
        });
        body.pipe(out);
      });
      try {
        hasher.finish();
      } catch (err) {
        throw err instanceof ReleaseError ? new ArtifactRefused(err.code as "LengthMismatch" | "HashMismatch", err.message) : err;
      }
      await fsyncFile(tmp);
      const final = this.pathOf(sha256);
      mkdirSync(dirname(final), { recursive: true, mode: 0o700 });
      await rename(tmp, final);
      await fsyncFile(dirname(final));
    } catch (err) {
      await rm(tmp, { force: true });
      if (err instanceof ReleaseError) throw new ArtifactRefused(err.code === "TooLong" ? "TooLong" : "LengthMismatch", err.message);
      throw err;
    }
    const c = await this.pool.connect();
    try {
      await c.query("BEGIN");
      const ins = await c.query(
        "INSERT INTO artifacts (sha256, length, uploaded_by) VALUES ($1, $2, $3) ON CONFLICT (sha256) DO NOTHING RETURNING sha256",
        [sha256, length, uploadedBy],
      );
      if (ins.rowCount === 1) {
        const term = Number((await c.query<{ term: string }>("SELECT term FROM authority WHERE id = 1")).rows[0]?.term ?? 0);
        await appendAudit(c, [{ actor: uploadedBy, term, action: "artifact.stored", objectKind: "Artifact", objectName: sha256, details: { length } }]);
      }
      await c.query("COMMIT");
      return { stored: ins.rowCount === 1, alreadyPresent: ins.rowCount !== 1, length };
    } catch (err) {
      await c.query("ROLLBACK").catch(() => undefined);
      throw err;
    } finally {
      c.release();
    }
  }

  /** Opens a stored artifact for reading (an inclusive byte range, optional); undefined when not stored. */
  async open(sha256: string, range?: { start: number; end: number }): Promise<{ row: ArtifactRow; stream: Readable } | undefined> {
    const row = await this.get(sha256);
    if (row === undefined) return undefined;
    const path = this.pathOf(sha256);
    const st = await stat(path).catch(() => undefined);
    if (st === undefined || st.size !== row.length) return undefined;
    return { row, stream: createReadStream(path, range && { start: range.start, end: range.end, highWaterMark: 256 * 1024 }) };
  }
}

/** Which of these digests the version store holds (by its index). */
export async function presentArtifacts(db: Queryable, digests: readonly string[]): Promise<Set<string>> {
  if (digests.length === 0) return new Set();
  const r = await db.query<{ sha256: string }>("SELECT sha256 FROM artifacts WHERE sha256 = ANY($1::text[])", [digests]);
  return new Set(r.rows.map((x) => x.sha256));
}

async function fsyncFile(path: string): Promise<void> {
  const h = await open(path, "r");
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}
