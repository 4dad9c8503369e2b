/**
 * Schema migrations: versioned SQL files `NNN_name.sql`, applied in order,
 * each in its own transaction, recorded in `schema_migrations`.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import type pg from "pg";
import { logger } from "../log.js";

const log = logger("db.migrate");

/** The repository's migrations folder, independent of process.cwd(). */
export const DEFAULT_MIGRATIONS_DIR = fileURLToPath(new URL("../../migrations/", import.meta.url));

/**
 * Session advisory lock key serialising migrate() across processes
 * (an arbitrary constant: "fabric-migrate").
 */
const MIGRATION_LOCK_KEY = 7_135_520_417_226_317n;

const FILE_PATTERN = /^(\d+)_([A-Za-z0-9_-]+)\.sql$/;

/** A migration file on disk. */
export interface MigrationFile {
  version: number;
  name: string;
  file: string;
  sql: string;
  checksum: string;
}

/** Reads and orders the migration files of `dir`; rejects duplicate versions. Other files are ignored. */
export async function readMigrations(dir: string): Promise<MigrationFile[]> {
  const entries = await fs.readdir(dir);
  const out: MigrationFile[] = [];
  for (const file of entries) {
    const m = FILE_PATTERN.exec(file);
    if (!m) continue;
    const sql = await fs.readFile(path.join(dir, file), "utf8");
    out.push({
      version: Number.parseInt(m[1] ?? "", 10),
      name: m[2] ?? "",
      file,
      sql,
      checksum: createHash("sha256").update(sql).digest("hex"),
    });
  }
  out.sort((a, b) => a.version - b.version);
  for (let i = 1; i < out.length; i++) {
    const prev = out[i - 1];
    const cur = out[i];
    if (prev && cur && prev.version === cur.version) {
      throw new Error(`duplicate migration version ${cur.version}: ${prev.file} and ${cur.file}`);
    }
  }
  return out;
}

/**
 * Applies pending migrations from `dir` (default: the repository's
 * `migrations/`), returning the file names applied by this call. Holds a
 * session advisory lock for the whole run, so concurrent callers (several
 * control-plane replicas starting together) apply each file exactly once.
 * Refuses, before applying anything, when an applied file was edited
 * (checksum or name differs). Versions recorded in the database but absent
 * from `dir` (a newer build ran here) only produce a warning.
 * Each file runs in one transaction, so statements that cannot run inside a
 * transaction (CREATE INDEX CONCURRENTLY, ...) are not supported.
 */
export async function migrate(pool: pg.Pool, dir: string = DEFAULT_MIGRATIONS_DIR): Promise<{ applied: string[] }> {
  const files = await readMigrations(dir);
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    const got = await client.query<{ ok: boolean }>("SELECT pg_try_advisory_lock($1) AS ok", [MIGRATION_LOCK_KEY.toString()]);
    if (!got.rows[0]?.ok) {
      log.info("waiting for migration lock held by another process");
      await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_KEY.toString()]);
    }
    try {
      return await applyPending(client, files, dir);
    } finally {
      try {
        await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY.toString()]);
      } catch (err) {
        // The lock is released with the session: make sure the session ends.
        broken = err instanceof Error ? err : new Error(String(err));
      }
    }
  } finally {
    client.release(broken ?? false);
  }
}

async function applyPending(client: pg.PoolClient, files: MigrationFile[], dir: string): Promise<{ applied: string[] }> {
  await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version    bigint PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  )`);
  const rows = await client.query<{ version: string; name: string; checksum: string }>(
    "SELECT version::text, name, checksum FROM schema_migrations ORDER BY version",
  );
  const applied = new Map(rows.rows.map((r) => [Number.parseInt(r.version, 10), r]));

  for (const f of files) {
    const rec = applied.get(f.version);
    if (!rec) continue;
    if (rec.checksum !== f.checksum || rec.name !== f.name) {
      throw new Error(
        `migration ${f.file} differs from the version applied to this database ` +
          `(recorded ${rec.version}_${rec.name} checksum ${rec.checksum.slice(0, 12)}, file checksum ${f.checksum.slice(0, 12)}); ` +
          `applied migrations must not be edited: restore the file and add a new migration instead`,
      );
    }
  }
  const known = new Set(files.map((f) => f.version));
  const unknown = [...applied.keys()].filter((v) => !known.has(v));
  if (unknown.length > 0) {
    log.warn("database has migrations this build does not know", { versions: unknown, dir });
  }

  const done: string[] = [];
  for (const f of files) {
    if (applied.has(f.version)) continue;
    const t0 = performance.now();
    await client.query("BEGIN");
    try {
      await client.query(f.sql);
      await client.query("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", [
        f.version, f.name, f.checksum,
      ]);
      await client.query("COMMIT");
    } catch (err) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw new Error(`applying migration ${f.file}`, { cause: err });
    }
    log.info("applied migration", { file: f.file, ms: Math.round(performance.now() - t0) });
    done.push(f.file);
  }
  return { applied: done };
}
