/**
 * Repository of the signed node snapshots (migrations/007_snapshots_heartbeats.sql):
 * the dirty index the builder drains, the identity part of each payload,
 * the stored bytes with serial and hashes, and the change feed the agent API
 * long polls on. All snapshot SQL lives here.
 */
import type pg from "pg";
import type { NodeIdentitySummary } from "../snapshot/format.js";
import { firstRow } from "./table.js";

/** A (cluster, node) the builder must rebuild, with when it was marked (so a later re-mark is not lost). */
export interface DirtyMark {
  cluster: string;
  /** FabricNode name, or "*" for every node of the cluster. */
  node: string;
  /** PostgreSQL's text form (microseconds kept: a JS Date would truncate them and never match). */
  markedAt: string;
}

/** What the builder needs to know about one node to build its identity part. */
export interface SnapshotNodeSource {
  cluster: string;
  node: string;
  membership: "Active" | "Disabled" | "Revoked";
  identity: NodeIdentitySummary;
}

/** The stored snapshot of one node (without its bytes). */
export interface StoredSnapshotMeta {
  cluster: string;
  node: string;
  serial: number;
  term: number;
  payloadHash: string;
  hash: string;
  issuedAt: Date;
  expiresAt: Date;
}

/** A snapshot to write: its metadata and its bytes. */
export interface SnapshotWrite extends StoredSnapshotMeta {
  bytes: Buffer;
}

/** One entry of the change feed. */
export interface SnapshotChange {
  node: string;
  serial: number;
  changeSeq: number;
}

/** The snapshot channel name the agent API listens on. */
export const SNAPSHOT_CHANGED_CHANNEL = "node_snapshot_changed";
/** The channel the builder listens on (fired by a trigger on snapshot_dirty). */
export const SNAPSHOT_DIRTY_CHANNEL = "snapshot_dirty";

/** Reads the dirty index (at most `limit` marks, oldest first). */
export async function readDirty(db: pg.ClientBase | pg.Pool, limit: number): Promise<DirtyMark[]> {
  const r = await db.query<{ cluster: string; node: string; marked_at: string }>(
    // Ordered by the column (d.marked_at), not by the text output column of the same name: the index (migration 029) then serves it.
    "SELECT cluster, node, marked_at::text AS marked_at FROM snapshot_dirty d ORDER BY d.marked_at LIMIT $1",
    [limit],
  );
  return r.rows.map((x) => ({ cluster: x.cluster, node: x.node, markedAt: x.marked_at }));
}

/** How many dirty marks wait, and the age in seconds of the oldest (0 when none): the snapshot builder's backlog. */
export async function dirtyBacklog(db: pg.ClientBase | pg.Pool): Promise<{ marks: number; oldestAgeSeconds: number }> {
  const r = await db.query<{ n: number; age: number | null }>("SELECT count(*)::int AS n, extract(epoch FROM now() - min(marked_at))::float8 AS age FROM snapshot_dirty");
  const row = r.rows[0];
  return { marks: row?.n ?? 0, oldestAgeSeconds: Math.max(0, row?.age ?? 0) };
}

/** Removes marks that were not re-marked since they were read. */
export async function clearDirty(db: pg.ClientBase, marks: readonly DirtyMark[]): Promise<void> {
  if (marks.length === 0) return;
  await db.query(
    `DELETE FROM snapshot_dirty d USING unnest($1::text[], $2::text[], $3::timestamptz[]) AS m(cluster, node, marked_at)
      WHERE d.cluster = m.cluster AND d.node = m.node AND d.marked_at <= m.marked_at`,
    [marks.map((m) => m.cluster), marks.map((m) => m.node), marks.map((m) => m.markedAt)],
  );
}

/**
 * Replaces the cluster-wide marks among `marks` by one mark per node of
 * their clusters, in one statement: a node already marked keeps its mark,
 * and a "*" mark re-marked since it was read stays (it covers a later
 * change). The builder then drains the nodes in bounded batches, each
 * committed on its own; a node stays marked until its batch commits.
 */
export async function expandClusterMarks(db: pg.ClientBase | pg.Pool, marks: readonly DirtyMark[]): Promise<void> {
  const all = marks.filter((m) => m.node === "*");
  if (all.length === 0) return;
  await db.query(
    `WITH m AS (SELECT * FROM unnest($1::text[], $2::timestamptz[]) AS m(cluster, marked_at)),
     added AS (
       INSERT INTO snapshot_dirty (cluster, node) SELECT n.cluster, n.name FROM nodes n JOIN m ON n.cluster = m.cluster
       ON CONFLICT (cluster, node) DO NOTHING
     )
     DELETE FROM snapshot_dirty d USING m WHERE d.cluster = m.cluster AND d.node = '*' AND d.marked_at <= m.marked_at`,
    [all.map((m) => m.cluster), all.map((m) => m.markedAt)],
  );
}

/** Names of every node of a cluster that has a row (for a "*" mark). */
export async function clusterNodeNames(db: pg.ClientBase | pg.Pool, cluster: string): Promise<string[]> {
  const r = await db.query<{ name: string }>("SELECT name FROM nodes WHERE cluster = $1 ORDER BY name", [cluster]);
  return r.rows.map((x) => x.name);
}

function iso(d: Date): string {
  return d.toISOString();
}

/**
 * The identity sources of the given nodes: node row plus its active
 * certificate. Nodes without a row or without an active certificate (never
 * approved, revoked, deleted) are absent: they get no snapshot.
 */
export async function nodeSources(db: pg.ClientBase, nodes: readonly string[]): Promise<Map<string, SnapshotNodeSource>> {
  const out = new Map<string, SnapshotNodeSource>();
  if (nodes.length === 0) return out;
  const r = await db.query<{
    name: string;
    cluster: string;
    host_fingerprint: string;
    membership: SnapshotNodeSource["membership"];
    node_group: string | null;
    serial: string;
    not_after: Date;
  }>(
    // Joined with unnest, not `n.name = ANY($1)`: see storedMeta.
    `SELECT n.name, n.cluster, n.host_fingerprint, n.membership, n.node_group, i.serial, i.not_after
       FROM unnest($1::text[]) AS w(name)
       JOIN nodes n ON n.name = w.name
       JOIN node_identities i ON i.node = n.name AND i.status = 'active'
      WHERE n.membership <> 'Revoked'`,
    [nodes],
  );
  for (const x of r.rows) {
    const identity: NodeIdentitySummary = {
      name: x.name,
      hostFingerprint: x.host_fingerprint,
      certificateSerial: x.serial,
      certificateNotAfter: iso(x.not_after),
      membership: x.membership,
    };
    if (x.node_group !== null) identity.group = x.node_group;
    out.set(x.name, { cluster: x.cluster, node: x.name, membership: x.membership, identity });
  }
  return out;
}

/**
 * Stored snapshot metadata of the given nodes, plus the highest serial ever
 * issued to each (one query). The node list is joined as a set (unnest),
 * never filtered with `= ANY(array)`: with stale statistics the planner may
 * probe an index once per row with the whole array as its condition, which is
 * quadratic in the batch size (3 s instead of 20 ms for 10,000 nodes).
 */
export async function storedMeta(db: pg.ClientBase, nodes: readonly string[]): Promise<{ meta: Map<string, StoredSnapshotMeta>; highest: Map<string, number> }> {
  const meta = new Map<string, StoredSnapshotMeta>();
  const highest = new Map<string, number>();
  if (nodes.length === 0) return { meta, highest };
  // Times as epoch milliseconds: parsing 20,000 timestamp strings costs more than the query.
  const r = await db.query<{ node: string; cluster: string | null; serial: string | null; term: string | null; payload_hash: string | null; hash: string | null; issued_ms: number | null; expires_ms: number | null; highest: string | null }>(
    `SELECT w.node, s.cluster, s.serial, s.term, s.payload_hash, s.hash,
            (extract(epoch FROM s.issued_at) * 1000)::float8 AS issued_ms, (extract(epoch FROM s.expires_at) * 1000)::float8 AS expires_ms,
            h.serial AS highest
       FROM unnest($1::text[]) AS w(node)
       LEFT JOIN node_snapshots s ON s.node = w.node
       LEFT JOIN node_snapshot_serials h ON h.node = w.node
      WHERE s.node IS NOT NULL OR h.node IS NOT NULL`,
    [nodes],
  );
  for (const x of r.rows) {
    if (x.serial !== null) {
      meta.set(x.node, {
        cluster: x.cluster as string,
        node: x.node,
        serial: Number(x.serial),
        term: Number(x.term),
        payloadHash: x.payload_hash as string,
        hash: x.hash as string,
        issuedAt: new Date(Math.round(x.issued_ms as number)),
        expiresAt: new Date(Math.round(x.expires_ms as number)),
      });
    }
    if (x.highest !== null) highest.set(x.node, Number(x.highest));
  }
  return { meta, highest };
}

/**
 * Writes snapshots and records the highest serials (one statement for the
 * batch; every written row draws a new change_seq), then notifies the agent
 * API (delivered at commit) unless `notify` is false — a caller writing a
 * batch in several parts calls {@link notifySnapshotsChanged} once at the end.
 *
 * Parameter shapes are chosen for 10,000-row batches: the snapshot bytes go
 * as ONE binary bytea parameter (node-postgres sends a Buffer in binary)
 * sliced by offset and length in SQL, instead of a bytea[] literal that is
 * hex-encoded here and parsed element by element by PostgreSQL (that alone
 * was ~40% of the statement); times go as epoch milliseconds, not as
 * timestamp text. The rows are read from the parameters once and the serials
 * from their own unnest: a CTE read twice is materialised, and with ~5 KB
 * snapshots that spilled every batch's bytes to a temporary file.
 */
export async function writeSnapshots(db: pg.ClientBase, rows: readonly SnapshotWrite[], opts: { notify?: boolean } = {}): Promise<void> {
  if (rows.length === 0) return;
  const offsets: number[] = [];
  const lengths: number[] = [];
  let at = 0;
  for (const r of rows) {
    offsets.push(at);
    lengths.push(r.bytes.length);
    at += r.bytes.length;
  }
  await db.query(
    `WITH serials AS (
       INSERT INTO node_snapshot_serials (node, serial) SELECT n, s FROM unnest($2::text[], $3::bigint[]) AS v(n, s)
       ON CONFLICT (node) DO UPDATE SET serial = greatest(node_snapshot_serials.serial, EXCLUDED.serial)
     )
     INSERT INTO node_snapshots (cluster, node, serial, term, payload_hash, hash, bytes, issued_at, expires_at, refresh_at)
     SELECT c, n, s, t, ph, h, substring($7::bytea FROM o + 1 FOR l), i, e, i + (e - i) / 2
       FROM (SELECT c, n, s, t, ph, h, o, l, timestamptz 'epoch' + i * interval '1 millisecond' AS i, timestamptz 'epoch' + e * interval '1 millisecond' AS e
               FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $8::int[], $9::int[], $10::bigint[], $11::bigint[])
                 AS u(c, n, s, t, ph, h, o, l, i, e)) AS u
     ON CONFLICT (node) DO UPDATE SET cluster = EXCLUDED.cluster, serial = EXCLUDED.serial, term = EXCLUDED.term,
       payload_hash = EXCLUDED.payload_hash, hash = EXCLUDED.hash, bytes = EXCLUDED.bytes,
       issued_at = EXCLUDED.issued_at, expires_at = EXCLUDED.expires_at, refresh_at = EXCLUDED.refresh_at, change_seq = nextval('node_snapshots_change_seq')`,
    [
      rows.map((r) => r.cluster),
      rows.map((r) => r.node),
      rows.map((r) => r.serial),
      rows.map((r) => r.term),
      rows.map((r) => r.payloadHash),
      rows.map((r) => r.hash),
      Buffer.concat(rows.map((r) => r.bytes), at),
      offsets,
      lengths,
      rows.map((r) => r.issuedAt.getTime()),
      rows.map((r) => r.expiresAt.getTime()),
    ],
  );
  if (opts.notify !== false) await notifySnapshotsChanged(db);
}

/** Tells the agent API that snapshots changed (delivered at commit; one per transaction is enough). */
export async function notifySnapshotsChanged(db: pg.ClientBase): Promise<void> {
  await db.query("SELECT pg_notify($1, '')", [SNAPSHOT_CHANGED_CHANNEL]);
}

/** Deletes the snapshots of nodes that may no longer have one (revoked, deleted); returns how many went. */
export async function deleteSnapshots(db: pg.ClientBase, nodes: readonly string[]): Promise<number> {
  if (nodes.length === 0) return 0;
  const r = await db.query("DELETE FROM node_snapshots WHERE node = ANY($1::text[])", [nodes]);
  return r.rowCount ?? 0;
}

/**
 * Marks for rebuild every node that should have a snapshot and has none,
 * and every snapshot past half its lifetime (re-issued before it expires).
 * Returns how many marks were added.
 */
export async function markMissingAndAging(db: pg.ClientBase | pg.Pool): Promise<number> {
  const r = await db.query(
    `INSERT INTO snapshot_dirty (cluster, node)
     SELECT n.cluster, n.name FROM nodes n
       JOIN node_identities i ON i.node = n.name AND i.status = 'active'
       LEFT JOIN node_snapshots s ON s.node = n.name
      WHERE n.membership <> 'Revoked'
        AND (s.node IS NULL OR s.refresh_at <= now())
     ON CONFLICT (cluster, node) DO NOTHING`,
  );
  return r.rowCount ?? 0;
}

/** When the next stored snapshot reaches half its lifetime (the earliest refresh_at still ahead), if any. */
export async function nextRefreshAt(db: pg.ClientBase | pg.Pool): Promise<Date | undefined> {
  const r = await db.query<{ at: Date | null }>("SELECT min(refresh_at) AS at FROM node_snapshots WHERE refresh_at > now()");
  return r.rows[0]?.at ?? undefined;
}

/** The stored bytes and serial of one node's snapshot. */
export async function snapshotOf(db: pg.Pool | pg.ClientBase, node: string): Promise<{ cluster: string; serial: number; bytes: Buffer } | undefined> {
  return firstRow(db, "SELECT cluster, serial, bytes FROM node_snapshots WHERE node = $1", [node], (x: { cluster: string; serial: string; bytes: Buffer }) => ({
    cluster: x.cluster,
    serial: Number(x.serial),
    bytes: x.bytes,
  }));
}

/** The serial of one node's snapshot (no bytes). */
export async function serialOf(db: pg.Pool | pg.ClientBase, node: string): Promise<number | undefined> {
  return firstRow(db, "SELECT serial FROM node_snapshots WHERE node = $1", [node], (x: { serial: string }) => Number(x.serial));
}

/** Snapshots written after change_seq `after` (the long-poll feed). */
export async function changesSince(db: pg.Pool | pg.ClientBase, after: number, limit = 10_000): Promise<SnapshotChange[]> {
  const r = await db.query<{ node: string; serial: string; change_seq: string }>(
    "SELECT node, serial, change_seq FROM node_snapshots WHERE change_seq > $1 ORDER BY change_seq LIMIT $2",
    [after, limit],
  );
  return r.rows.map((x) => ({ node: x.node, serial: Number(x.serial), changeSeq: Number(x.change_seq) }));
}

/** The current top of the change feed. */
export async function currentChangeSeq(db: pg.Pool | pg.ClientBase): Promise<number> {
  const r = await db.query<{ seq: string | null }>("SELECT max(change_seq)::text AS seq FROM node_snapshots");
  return Number(r.rows[0]?.seq ?? 0);
}

/** Serial per node for a cluster (tests and operators: which serials moved). */
export async function clusterSerials(db: pg.Pool | pg.ClientBase, cluster: string): Promise<Map<string, number>> {
  const r = await db.query<{ node: string; serial: string }>("SELECT node, serial FROM node_snapshots WHERE cluster = $1", [cluster]);
  return new Map(r.rows.map((x) => [x.node, Number(x.serial)]));
}
