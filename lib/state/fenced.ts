/**
 * What the repositories need from the authority: a fenced transaction and the
 * term it runs under (implemented by controllers/runtime PgAuthority).
 */
import type pg from "pg";
import { appendAudit, type AuditInput } from "../audit/chain.js";

/** A source of fenced transactions. */
export interface Fence {
  /** Runs fn in a transaction that commits only while the held term is current; throws FencedError otherwise. */
  runFenced<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T>;
  /** The held term, if any. */
  heldTerm(): number | undefined;
}

/** One audited change, minus the fields the writer fills in. */
export type AuditEntry = Omit<AuditInput, "actor" | "term">;

/**
 * Runs a decision: fn's writes and the audit rows it returns commit together,
 * under the fence, or not at all. Audit rows are appended last so the chain
 * lock is held only until commit.
 */
export async function decide<T>(
  fence: Fence,
  actor: string,
  fn: (client: pg.PoolClient) => Promise<{ result: T; audit: AuditEntry[] }>,
): Promise<T> {
  return fence.runFenced(async (client) => {
    const term = fence.heldTerm();
    if (term === undefined) throw new Error("deciding without an authority term");
    const { result, audit } = await fn(client);
    await appendAudit(
      client,
      audit.map((a) => ({ ...a, actor, term })),
    );
    return result;
  });
}

/**
 * A decision of one statement on at most one row (a delete or an update
 * with RETURNING): when the statement returns a row, the audit entry made
 * from it commits with the write and the result is true; when it returns
 * none, nothing is audited and the result is false.
 */
export async function decideRow<R extends pg.QueryResultRow>(
  fence: Fence,
  actor: string,
  sql: string,
  params: unknown[],
  audit: (row: R) => AuditEntry,
): Promise<boolean> {
  return decide(fence, actor, async (c) => {
    const row = (await c.query<R>(sql, params)).rows[0];
    return row === undefined ? { result: false, audit: [] } : { result: true, audit: [audit(row)] };
  });
}
