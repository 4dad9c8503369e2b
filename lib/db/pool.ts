/**
 * Connection pool and transaction helper shared by every subsystem that
 * touches PostgreSQL.
 */
import pg from "pg";
import { logger } from "../log.js";

const log = logger("db.pool");

/** Transaction isolation levels accepted by {@link withTransaction}. */
export type IsolationLevel = "read committed" | "repeatable read" | "serializable";

/** Options for {@link createPool}. */
export interface PoolOptions {
  /** Maximum number of connections. Default 10. */
  max?: number;
}

/**
 * Creates a pool for `url`. Errors on idle clients (server restart, network
 * drop) are logged and the client is discarded, instead of crashing the
 * process with an unhandled 'error' event. A checked-out client has no such
 * listener in pg-pool (it removes its idle listener on checkout), and pg
 * emits 'error' when the server ends the connection between queries (a
 * PostgreSQL restart: 57P01 while a transaction awaits other work): every
 * client gets a listener of its own, so the holder's next query fails and
 * its release discards the client, and the process lives on.
 */
export function createPool(url: string, opts: PoolOptions = {}): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.max ?? 10,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: 10_000,
    application_name: "access-fabric",
  });
  pool.on("connect", (client) => {
    client.on("error", (err) => {
      if ((err as { code?: string }).code === "57P01") log.debug("postgres closed a connection in use: server shutting down");
      else log.warn("postgres client in use failed", { err });
    });
  });
  pool.on("error", (err) => {
    // 57P01: the server is shutting down (our own stop, or an operator's);
    // the pool reconnects on next use if it comes back.
    if ((err as { code?: string }).code === "57P01") log.debug("postgres closed an idle connection: server shutting down");
    else log.warn("idle postgres client failed", { err });
  });
  return pool;
}

const ISOLATION_SQL: Record<IsolationLevel, string> = {
  "read committed": "READ COMMITTED",
  "repeatable read": "REPEATABLE READ",
  serializable: "SERIALIZABLE",
};

/**
 * Runs `fn` inside BEGIN/COMMIT on one pooled client; rolls back and rethrows
 * when `fn` (or COMMIT) throws. The client is always released; a client whose
 * ROLLBACK failed is destroyed rather than returned to the pool. Does not
 * retry serialization failures (SQLSTATE 40001): callers that use
 * "serializable" decide whether to retry. `beginWith` (a statement without
 * parameters) is sent in the same round trip as BEGIN; its result is passed
 * to `fn` as `begun`.
 */
export async function withTransaction<T>(
  pool: pg.Pool,
  fn: (client: pg.PoolClient, begun?: pg.QueryResult) => Promise<T>,
  opts: { isolation?: IsolationLevel; beginWith?: string } = {},
): Promise<T> {
  const client = await pool.connect();
  // Set when the connection can no longer be trusted: release(err) destroys it.
  let broken: Error | undefined;
  let begun: pg.QueryResult | undefined;
  try {
    const begin = opts.isolation ? `BEGIN ISOLATION LEVEL ${ISOLATION_SQL[opts.isolation]}` : "BEGIN";
    if (opts.beginWith === undefined) await client.query(begin);
    else {
      // One round trip (simple protocol, no parameters): BEGIN and the first statement.
      const results = (await client.query(`${begin}; ${opts.beginWith}`)) as unknown as pg.QueryResult[];
      begun = results[1];
    }
  } catch (err) {
    if (opts.beginWith !== undefined) await client.query("ROLLBACK").catch(() => undefined);
    client.release(asError(err));
    throw err;
  }
  try {
    const result = await fn(client, begun);
    await client.query("COMMIT");
    return result;
  } catch (err) {
    try {
      await client.query("ROLLBACK");
    } catch (rollbackErr) {
      broken = asError(rollbackErr);
    }
    throw err;
  } finally {
    client.release(broken ?? false);
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
