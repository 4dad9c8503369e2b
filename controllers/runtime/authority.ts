/**
 * The authority term in PostgreSQL: fencing for the leader's decisions.
 *
 * The Kubernetes Lease elects a leader but cannot stop a deposed leader that
 * has not noticed yet (paused process, partition) from writing. So every
 * leadership acquisition increments authority.term, and every decision write
 * runs in a transaction that first checks, under a share lock, that the term
 * is still the one this instance acquired. The share lock makes a new
 * leader's increment wait for decisions already in flight, and makes every
 * later decision of the old leader see the new term and fail with FencedError.
 * Table: migrations/002_authority.sql.
 */
import type pg from "pg";
import { Registry } from "prom-client";
import { withTransaction } from "../../lib/db/pool.js";
import { logger, type Logger } from "../../lib/log.js";
import { FencedError } from "./errors.js";
import type { AuthorityTerm } from "./leader-election.js";
import { runtimeMetrics, type RuntimeMetrics } from "./metrics.js";

/** Options of PgAuthority. */
export interface PgAuthorityOptions {
  registry?: Registry;
  log?: Logger;
}

function toTerm(v: unknown): number {
  // bigint columns arrive as strings from node-postgres.
  const n = typeof v === "number" ? v : typeof v === "string" ? Number(v) : NaN;
  if (!Number.isSafeInteger(n)) throw new Error(`authority term is not an integer: ${String(v)}`);
  return n;
}

/** AuthorityTerm backed by the authority table. */
export class PgAuthority implements AuthorityTerm {
  private term: number | undefined;
  private identity: string | undefined;
  private readonly log: Logger;
  private readonly metrics: RuntimeMetrics | undefined;

  constructor(
    private readonly pool: pg.Pool,
    opts: PgAuthorityOptions = {},
  ) {
    this.log = opts.log ?? logger("authority");
    this.metrics = opts.registry ? runtimeMetrics(opts.registry) : undefined;
  }

  /** Increments the term for identity and remembers it; returns the new term. */
  async acquire(identity: string): Promise<number> {
    const res = await this.pool.query<{ term: string }>(
      `INSERT INTO authority (id, term, holder, updated_at) VALUES (1, 1, $1, now())
       ON CONFLICT (id) DO UPDATE SET term = authority.term + 1, holder = EXCLUDED.holder, updated_at = now()
       RETURNING term`,
      [identity],
    );
    const row = res.rows[0];
    if (row === undefined) throw new Error("acquiring authority term: no row returned");
    const term = toTerm(row.term);
    this.term = term;
    this.identity = identity;
    this.metrics?.authorityTerm.set({ identity }, term);
    this.log.info("authority term acquired", { identity, term });
    return term;
  }

  /** Forgets the held term: later runFenced calls fail until the next acquire. */
  relinquish(): void {
    if (this.identity !== undefined) this.metrics?.authorityTerm.set({ identity: this.identity }, 0);
    this.term = undefined;
  }

  /** The term this instance holds, if any. */
  heldTerm(): number | undefined {
    return this.term;
  }

  /**
   * Runs fn in one transaction that holds a share lock on the authority row
   * and commits only if the term is still the held one. Throws FencedError
   * (nothing written) when this instance holds no term or was superseded.
   */
  async runFenced<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const held = this.term;
    if (held === undefined) {
      this.metrics?.fencedRejections.inc();
      throw new FencedError("fenced: this instance holds no authority term", undefined, undefined);
    }
    return withTransaction(this.pool, async (client, begun) => {
      const row = begun?.rows[0] as { term: string } | undefined;
      const current = row === undefined ? undefined : toTerm(row.term);
      if (current !== held) {
        this.metrics?.fencedRejections.inc();
        this.log.warn("fenced write refused", { heldTerm: held, currentTerm: current });
        throw new FencedError(`fenced: authority term is ${String(current)}, this instance holds ${held}`, held, current);
      }
      return fn(client);
    }, { beginWith: "SELECT term FROM authority WHERE id = 1 FOR SHARE" });
  }
}
