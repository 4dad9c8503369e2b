/**
 * The control plane's database: an external PostgreSQL (DATABASE_URL) or the
 * embedded server under the state directory, migrated and pooled.
 */
import * as path from "node:path";
import type pg from "pg";
import { logger, type Logger } from "../log.js";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "./embedded-postgres.js";
import { migrate } from "./migrate.js";
import { createPool } from "./pool.js";

/** An open, migrated database. */
export interface Database {
  pool: pg.Pool;
  /** Connection URL (may contain a password: never log it). */
  url: string;
  /** true when this process runs the embedded server. */
  embedded: boolean;
  /** Ends the pool, then stops the embedded server if any. Idempotent. */
  close(): Promise<void>;
}

/** Options for {@link openDatabase}. */
export interface OpenDatabaseOptions {
  /** Control-plane state directory; the embedded cluster lives in `<stateDir>/postgres`. */
  stateDir: string;
  /** External database; default process.env.DATABASE_URL. When set, nothing is embedded. */
  databaseUrl?: string;
  /** Embedded server only: false trades durability for speed (tests). Default true. */
  fsync?: boolean;
  /** Default: the repository's migrations/ folder. */
  migrationsDir?: string;
  /** Pool size, default 10. */
  maxConnections?: number;
  log?: Logger;
}

/**
 * Opens the database and applies pending migrations. On any failure, what
 * was started is torn down before the error propagates.
 */
export async function openDatabase(opts: OpenDatabaseOptions): Promise<Database> {
  const log = opts.log ?? logger("db");
  const external = opts.databaseUrl || process.env.DATABASE_URL || undefined;
  let server: EmbeddedDatabase | undefined;
  let url: string;
  if (external) {
    url = external;
    log.info("using external postgres");
  } else {
    server = await startEmbeddedPostgres({
      dataDir: path.join(opts.stateDir, "postgres"),
      fsync: opts.fsync,
      log: log.with({ embedded: true }),
    });
    url = server.url;
  }

  const pool = createPool(url, { max: opts.maxConnections });
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      try {
        // pool.end() waits for every checked-out client; a component that
        // still holds one (a LISTEN connection, a query in flight) must not
        // keep the process from shutting down: stopping the server ends them.
        const ended = pool.end().then(() => true);
        const timedOut = new Promise<false>((resolve) => setTimeout(() => resolve(false), 5_000).unref());
        if (!(await Promise.race([ended, timedOut]))) {
          log.warn("database pool did not drain in 5 s; stopping anyway", {
            checkedOut: pool.totalCount - pool.idleCount,
            waiting: pool.waitingCount,
          });
        }
      } finally {
        await server?.stop();
      }
    })();
    return closing;
  };

  try {
    await migrate(pool, opts.migrationsDir);
  } catch (err) {
    await close().catch((closeErr: unknown) => log.warn("closing database after failed migration", { err: closeErr }));
    throw new Error("migrating database", { cause: err });
  }
  return { pool, url, embedded: server !== undefined, close };
}
