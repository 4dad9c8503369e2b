/**
 * The audit chain: an append-only table (migrations/003_controllers.sql) in
 * which every row carries the hash of the previous one, so changing,
 * inserting or removing a row breaks the chain from that row on.
 *
 * hash = sha256 hex of the canonical JSON of
 *   { id, at, actor, term, action, objectKind, objectName, cluster, details, prevHash }
 * The first row's prevHash is GENESIS_HASH. Appends happen inside the
 * caller's transaction (the same one as the change they record) under an
 * advisory transaction lock, so the chain stays linear across processes: the
 * lock is held until commit, and the next appender reads the committed tail.
 */
import { createHash } from "node:crypto";
import type pg from "pg";
import { canonicalJson } from "../canonical-json.js";

/** prev_hash of the first row. */
export const GENESIS_HASH = "0".repeat(64);

/** Advisory lock key serialising appends (an arbitrary constant: "fabric-audit"). */
const AUDIT_LOCK_KEY = 7_135_520_417_226_318n;

/** What a caller records. */
export interface AuditInput {
  /** Identity of the acting controller instance. */
  actor: string;
  /** Authority term the change was made under. */
  term: number;
  /** e.g. "cluster.created". */
  action: string;
  objectKind: string;
  objectName: string;
  cluster?: string;
  /** JSON details; values must survive a jsonb round trip (strings, integers, booleans, nesting). */
  details: Record<string, unknown>;
}

/** A stored audit row. */
export interface AuditEvent extends AuditInput {
  id: number;
  /** RFC 3339 with milliseconds. */
  at: string;
  prevHash: string;
  hash: string;
}

/** The hash of a row from its fields (see the module comment). */
export function auditHash(e: Omit<AuditEvent, "hash">): string {
  const body = canonicalJson({
    id: e.id,
    at: e.at,
    actor: e.actor,
    term: e.term,
    action: e.action,
    objectKind: e.objectKind,
    objectName: e.objectName,
    cluster: e.cluster ?? null,
    details: e.details,
    prevHash: e.prevHash,
  });
  return createHash("sha256").update(body).digest("hex");
}

/**
 * Appends events in order inside client's open transaction. Call it last in
 * the transaction: the chain lock is held from here until commit.
 */
export async function appendAudit(client: pg.ClientBase, events: AuditInput[]): Promise<AuditEvent[]> {
  if (events.length === 0) return [];
  // Lock, committed tail and ids in one round trip (migrations/012), then
  // every row in one INSERT: three round trips became two for one event.
  const head = await client.query<{ tail_hash: string | null; ids: string[] }>({
    name: "audit_append_head",
    text: "SELECT tail_hash, ids::text[] AS ids FROM audit_append_head($1, $2)",
    values: [AUDIT_LOCK_KEY.toString(), events.length],
  });
  let prevHash = head.rows[0]?.tail_hash ?? GENESIS_HASH;
  const ids = head.rows[0]?.ids ?? [];
  const at = new Date().toISOString();
  const out: AuditEvent[] = [];
  events.forEach((e, i) => {
    const row: Omit<AuditEvent, "hash"> = { ...e, id: Number(ids[i]), at, prevHash };
    const hash = auditHash(row);
    out.push({ ...row, hash });
    prevHash = hash;
  });
  const col = <K extends keyof AuditEvent>(k: K) => out.map((r) => r[k]);
  await client.query({
    name: "audit_append_rows",
    text: `INSERT INTO audit_events (id, at, actor, term, action, object_kind, object_name, cluster, details, prev_hash, hash)
           SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[],
                                $8::text[], $9::jsonb[], $10::text[], $11::text[])`,
    values: [
      col("id"), col("at"), col("actor"), col("term"), col("action"), col("objectKind"), col("objectName"),
      out.map((r) => r.cluster ?? null), out.map((r) => JSON.stringify(r.details)), col("prevHash"), col("hash"),
    ],
  });
  return out;
}

/** Result of verifyChain. */
export type ChainVerdict =
  | { ok: true; events: number; lastHash: string }
  | { ok: false; events: number; brokenAt: number; problem: string };

interface Row {
  id: string;
  at: Date;
  actor: string;
  term: string;
  action: string;
  object_kind: string;
  object_name: string;
  cluster: string | null;
  details: Record<string, unknown>;
  prev_hash: string;
  hash: string;
}

/** Reads the whole chain in id order (in pages) and returns the first broken row, if any. */
export async function verifyChain(pool: pg.Pool, pageSize = 5000): Promise<ChainVerdict> {
  let prev = GENESIS_HASH;
  let lastId = -1;
  let count = 0;
  for (;;) {
    const res = await pool.query<Row>(
      `SELECT id, at, actor, term, action, object_kind, object_name, cluster, details, prev_hash, hash
         FROM audit_events WHERE id > $1 ORDER BY id LIMIT $2`,
      [lastId, pageSize],
    );
    for (const r of res.rows) {
      const id = Number(r.id);
      if (r.prev_hash !== prev) {
        return { ok: false, events: count, brokenAt: id, problem: "prev_hash does not match the previous row's hash (a row was removed, inserted or changed)" };
      }
      const expected = auditHash({
        id,
        at: r.at.toISOString(),
        actor: r.actor,
        term: Number(r.term),
        action: r.action,
        objectKind: r.object_kind,
        objectName: r.object_name,
        cluster: r.cluster ?? undefined,
        details: r.details,
        prevHash: r.prev_hash,
      });
      if (expected !== r.hash) return { ok: false, events: count, brokenAt: id, problem: "hash does not match the row's contents (the row was changed)" };
      prev = r.hash;
      lastId = id;
      count++;
    }
    if (res.rows.length < pageSize) return { ok: true, events: count, lastHash: prev };
  }
}
