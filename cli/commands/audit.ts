/**
 * `fabricctl audit verify` and `fabricctl audit log`: the audit chain
 * (lib/audit/chain.ts, table audit_events) read straight from the control
 * plane's database; the kube API does not serve it.
 */
import { verifyChain, type ChainVerdict } from "../../lib/audit/chain.js";
import { RESOURCES, type FabricKind } from "../../lib/api/types.generated.js";
import { openDatabase, type DatabaseFlags } from "../database.js";
import { UsageError } from "../errors.js";
import { formatTable, structured, type OutputFormat } from "../output.js";

/** `audit verify`: 0 intact, 1 broken (the first bad row named on stdout). */
export async function auditVerify(flags: DatabaseFlags, out: (s: string) => void): Promise<number> {
  const db = await openDatabase(flags, { startStopped: true });
  try {
    const v = await verifyChain(db.pool);
    out(verdictLine(v) + "\n");
    return v.ok ? 0 : 1;
  } finally {
    await db.close();
  }
}

/** One line about a verdict (also used by `status`). */
export function verdictLine(v: ChainVerdict): string {
  return v.ok
    ? `audit chain intact: ${v.events} events (head ${v.lastHash})`
    : `audit chain BROKEN at event id ${v.brokenAt}: ${v.problem} (${v.events} events verified before it)`;
}

/** One row of `audit log -o json`. */
export interface AuditLogEntry {
  id: number;
  at: string;
  actor: string;
  term: number;
  action: string;
  objectKind: string;
  objectName: string;
  cluster: string | null;
  details: Record<string, unknown>;
  hash: string;
}

/** Filters of `audit log`. */
export interface AuditLogFilter {
  since?: Date;
  /** KIND or KIND/NAME; KIND as kind, plural, singular or short name. */
  object?: string;
  action?: string;
  cluster?: string;
  limit: number;
}

/** The kind named by `text` (FabricNode, fabricnodes, fabricnode, fn), or a usage error listing the kinds. */
export function resolveKind(text: string): FabricKind {
  const t = text.toLowerCase();
  for (const r of Object.values(RESOURCES)) {
    if (r.kind.toLowerCase() === t || r.plural === t || r.singular === t || (r.shortNames as readonly string[]).includes(t)) return r.kind;
  }
  throw new UsageError(`--object: unknown kind "${text}" (one of ${Object.keys(RESOURCES).join(", ")})`);
}

/** `audit log`: matching events in chain order, the latest `limit` of them. */
export async function auditLog(flags: DatabaseFlags, filter: AuditLogFilter, format: OutputFormat, out: (s: string) => void, err: (s: string) => void): Promise<number> {
  const where: string[] = [];
  const values: unknown[] = [];
  if (filter.since !== undefined) {
    values.push(filter.since.toISOString());
    where.push(`at >= $${values.length}`);
  }
  if (filter.object !== undefined) {
    const [kindText = "", ...rest] = filter.object.split("/");
    const name = rest.join("/");
    values.push(resolveKind(kindText));
    where.push(`object_kind = $${values.length}`);
    if (name !== "") {
      values.push(name);
      where.push(`object_name = $${values.length}`);
    }
  }
  if (filter.action !== undefined) {
    values.push(filter.action);
    where.push(`action = $${values.length}`);
  }
  if (filter.cluster !== undefined) {
    values.push(filter.cluster);
    where.push(`cluster = $${values.length}`);
  }
  values.push(filter.limit + 1);
  const sql = `SELECT id::text, at, actor, term::text, action, object_kind, object_name, cluster, details, hash FROM audit_events
               ${where.length > 0 ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY audit_events.id DESC LIMIT $${values.length}`;
  const db = await openDatabase(flags, { startStopped: true });
  let rows: AuditLogEntry[];
  try {
    const r = await db.pool.query<{ id: string; at: Date; actor: string; term: string; action: string; object_kind: string; object_name: string; cluster: string | null; details: Record<string, unknown>; hash: string }>(sql, values);
    rows = r.rows.map((x) => ({ id: Number(x.id), at: x.at.toISOString(), actor: x.actor, term: Number(x.term), action: x.action, objectKind: x.object_kind, objectName: x.object_name, cluster: x.cluster, details: x.details, hash: x.hash }));
  } finally {
    await db.close();
  }
  const truncated = rows.length > filter.limit;
  rows = rows.slice(0, filter.limit).reverse();
  if (truncated) err(`fabricctl: showing the latest ${filter.limit} matching events; narrow with --since/--object or raise --limit\n`);
  if (format !== "table") {
    out(await structured({ events: rows, truncated }, format));
    return 0;
  }
  if (rows.length === 0) {
    err("No audit events match.\n");
    return 0;
  }
  out(
    formatTable(
      ["ID", "TIME", "ACTION", "OBJECT", "CLUSTER", "TERM", "ACTOR", "DETAILS"],
      rows.map((e) => [String(e.id), e.at, e.action, `${e.objectKind.toLowerCase()}/${e.objectName}`, e.cluster ?? "", String(e.term), e.actor, JSON.stringify(e.details)]),
    ),
  );
  return 0;
}
