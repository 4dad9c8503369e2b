/**
 * Repository of the mesh peer directory (migrations/014_mesh.sql,
 * docs/mesh.md): what agents report about their mesh reachability, the
 * FabricNode facts the candidate selection needs (class, region, zone), and
 * the candidate set last put in each node's snapshot.
 *
 * Reports are runtime facts written in batches by the agent API (not fenced:
 * they decide nothing). A change of endpoints, direct reachability or relay
 * capability marks dirty, in the same transaction, the node itself and every
 * node whose stored candidate set lists it (mesh_candidate_sets, a GIN
 * reverse index); a load change alone is stored (in 0.1 steps) and marks
 * nothing, because load never reaches a snapshot.
 */
import type pg from "pg";
import { withTransaction } from "../db/pool.js";
import { markNodesDirty } from "../snapshot/contributors.js";

/** Roles that make a node a mesh member: it receives a candidate set and may be a candidate. */
export const MESH_ROLES: readonly string[] = ["core-node", "entry-node", "relay-node"];

/** Node classes as the directory stores them (FabricNode spec.nodeClass, lower case). */
export type MeshNodeClass = "thin" | "standard" | "relay";

/** One mesh report from a heartbeat (validated by the agent API). */
export interface MeshReportRow {
  node: string;
  cluster: string;
  /** `host:port` (IPv6 as `[addr]:port`), preferred first. */
  endpoints: string[];
  reachable: boolean;
  relayCapable: boolean;
  /** 0..1 as reported. */
  load: number;
}

/** Load in 0.1 steps (0..10): finer changes are not worth a write. */
export function loadBucket(load: number): number {
  return Math.min(10, Math.max(0, Math.round(load * 10)));
}

/** What {@link writeMeshReports} changed. */
export interface MeshWriteResult {
  /** Nodes whose endpoints, reachability or relay capability changed (or first reported). */
  directoryChanged: string[];
  /** Nodes whose stored load bucket alone changed. */
  loadChanged: string[];
  /** Dirty marks written (the changed nodes and the nodes listing them). */
  marked: number;
}

interface StoredReport {
  node: string;
  endpoints: string[];
  reachable: boolean;
  relay_capable: boolean;
  load_bucket: number;
}

/**
 * Stores mesh reports, writing only rows that changed; nodes without a row
 * in `nodes` (deleted meanwhile) are skipped. See the module comment for
 * what is marked dirty.
 */
export async function writeMeshReports(pool: pg.Pool, rows: readonly MeshReportRow[]): Promise<MeshWriteResult> {
  const result: MeshWriteResult = { directoryChanged: [], loadChanged: [], marked: 0 };
  if (rows.length === 0) return result;
  return withTransaction(pool, async (c) => {
    const names = rows.map((r) => r.node);
    const old = await c.query<StoredReport>(
      "SELECT node, endpoints, reachable, relay_capable, load_bucket FROM mesh_endpoints WHERE node = ANY($1) FOR UPDATE",
      [names],
    );
    const stored = new Map(old.rows.map((r) => [r.node, r]));
    const write: MeshReportRow[] = [];
    const directoryByCluster = new Map<string, string[]>();
    for (const r of rows) {
      const s = stored.get(r.node);
      const directory = s === undefined || s.reachable !== r.reachable || s.relay_capable !== r.relayCapable || s.endpoints.join(",") !== r.endpoints.join(",");
      const load = s !== undefined && s.load_bucket !== loadBucket(r.load);
      if (!directory && !load) continue;
      write.push(r);
      if (directory) {
        result.directoryChanged.push(r.node);
        let list = directoryByCluster.get(r.cluster);
        if (list === undefined) directoryByCluster.set(r.cluster, (list = []));
        list.push(r.node);
      } else result.loadChanged.push(r.node);
    }
    if (write.length === 0) return result;
    await c.query(
      `INSERT INTO mesh_endpoints (node, cluster, endpoints, reachable, relay_capable, load_bucket)
       SELECT m.node, m.cluster, ARRAY(SELECT jsonb_array_elements_text(m.endpoints)), m.reachable, m.relay_capable, m.load_bucket
         FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::boolean[], $5::boolean[], $6::smallint[])
           AS m(node, cluster, endpoints, reachable, relay_capable, load_bucket)
        WHERE EXISTS (SELECT 1 FROM nodes n WHERE n.name = m.node)
       ON CONFLICT (node) DO UPDATE SET cluster = EXCLUDED.cluster, endpoints = EXCLUDED.endpoints, reachable = EXCLUDED.reachable,
         relay_capable = EXCLUDED.relay_capable, load_bucket = EXCLUDED.load_bucket, changed_at = now()`,
      [
        write.map((r) => r.node),
        write.map((r) => r.cluster),
        write.map((r) => JSON.stringify(r.endpoints)),
        write.map((r) => r.reachable),
        write.map((r) => r.relayCapable),
        write.map((r) => loadBucket(r.load)),
      ],
    );
    for (const [cluster, changed] of directoryByCluster) {
      const listing = await c.query<{ node: string }>("SELECT node FROM mesh_candidate_sets WHERE cluster = $1 AND candidates && $2::text[]", [cluster, changed]);
      const marks = new Set([...changed, ...listing.rows.map((r) => r.node)]);
      await markNodesDirty(c, cluster, [...marks]);
      result.marked += marks.size;
    }
    return result;
  });
}

/** One mesh member of a cluster as the candidate selection sees it. */
export interface MeshMemberRow {
  node: string;
  nodeClass: MeshNodeClass;
  region: string;
  zone: string;
  /** The node's mesh roles (of {@link MESH_ROLES}), sorted. */
  roles: string[];
  /** Empty when the agent has not reported any: not a candidate. */
  endpoints: string[];
  reachable: boolean;
  relayCapable: boolean;
  /** sha256:<hex> of the SPKI of the node's active certificate; "" when it has none (not a candidate). */
  publicKeyFingerprint: string;
}

/** Peer counts per class (FabricCluster spec.peerPolicy with its defaults applied). */
export interface MeshPeerPolicy {
  thin: { min: number; max: number };
  standard: { min: number; max: number };
  relay: { min: number; max: number };
  /** A candidate must score this many percent better than an active peer to replace it. */
  hysteresisPercent: number;
}

/** The schema defaults of FabricCluster spec.peerPolicy. */
export const DEFAULT_PEER_POLICY: MeshPeerPolicy = { thin: { min: 1, max: 3 }, standard: { min: 3, max: 5 }, relay: { min: 8, max: 20 }, hysteresisPercent: 20 };

function bounds(v: unknown, dflt: { min: number; max: number }): { min: number; max: number } {
  const o = typeof v === "object" && v !== null ? (v as Record<string, unknown>) : {};
  const max = typeof o.max === "number" && Number.isSafeInteger(o.max) && o.max >= 1 ? o.max : dflt.max;
  const min = typeof o.min === "number" && Number.isSafeInteger(o.min) && o.min >= 0 ? Math.min(o.min, max) : Math.min(dflt.min, max);
  return { min, max };
}

/** spec.peerPolicy of a stored FabricCluster spec, defaults filled in. */
export function peerPolicyOf(spec: unknown): MeshPeerPolicy {
  const p = typeof spec === "object" && spec !== null ? (spec as Record<string, unknown>).peerPolicy : undefined;
  const o = typeof p === "object" && p !== null ? (p as Record<string, unknown>) : {};
  const h = o.hysteresisPercent;
  return {
    thin: bounds(o.thin, DEFAULT_PEER_POLICY.thin),
    standard: bounds(o.standard, DEFAULT_PEER_POLICY.standard),
    relay: bounds(o.relay, DEFAULT_PEER_POLICY.relay),
    hysteresisPercent: typeof h === "number" && Number.isSafeInteger(h) && h >= 0 && h <= 100 ? h : DEFAULT_PEER_POLICY.hysteresisPercent,
  };
}

/** The class a member's peer counts follow: a core-node role makes it "core" (relay counts). */
export function meshClassOf(m: { nodeClass: MeshNodeClass; roles: readonly string[] }): MeshNodeClass | "core" {
  return m.roles.includes("core-node") ? "core" : m.nodeClass;
}

/** Active-set bounds of a class under a policy. */
export function meshBoundsOf(policy: MeshPeerPolicy, cls: MeshNodeClass | "core"): { min: number; max: number } {
  return cls === "core" || cls === "relay" ? policy.relay : policy[cls];
}

/** A cluster's mesh directory: its policy and every Active node holding a mesh role. */
export interface MeshDirectory {
  cluster: string;
  policy: MeshPeerPolicy;
  members: MeshMemberRow[];
}

interface MemberDb {
  node: string;
  node_class: MeshNodeClass | null;
  region: string | null;
  zone: string | null;
  roles: string[];
  endpoints: string[] | null;
  reachable: boolean | null;
  relay_capable: boolean | null;
  fingerprint: string | null;
}

/** A directory as read from PostgreSQL, with the directory version it was read at. */
export interface StoredMeshDirectory extends MeshDirectory {
  /**
   * The directory version (migrations/025_mesh_directory_version.sql) read
   * in the same statement as the rows: while {@link meshDirectoryVersion}
   * still returns it, no committed change altered what this read returned.
   */
  version: string;
}

/**
 * The directory version as it is now: a counter bumped at commit by every
 * transaction that changes a member's node row, roles, active identity,
 * facts, endpoints (not load alone) or a cluster's spec. One row read; lets
 * a reader keep a prepared directory across transactions without ever
 * serving a stale one.
 */
export async function meshDirectoryVersion(db: pg.ClientBase | pg.Pool): Promise<string> {
  const r = await db.query<{ version: string }>("SELECT version::text AS version FROM mesh_directory_version");
  return r.rows[0]?.version ?? "";
}

/**
 * Reads a cluster's mesh directory in one statement (one snapshot of the
 * database), members sorted by name, with the directory version it was read at.
 *
 * The statement joins whole-cluster tables, for which hash joins are right at
 * every size. With statistics taken before a burst of enrolments (tables
 * believed nearly empty) the planner chose nested loops over sequential
 * scans instead: quadratic, one read of 100,000 members ran for minutes and
 * held a core of PostgreSQL. Nested loops are therefore turned off for this
 * statement only (SET LOCAL, in the caller's transaction, or in one of its
 * own when given a pool).
 */
export async function meshDirectoryOf(db: pg.ClientBase | pg.Pool, cluster: string): Promise<StoredMeshDirectory> {
  return withoutNestedLoops(db, (c) => readDirectory(c, cluster));
}

/** Runs a whole-cluster read with nested loops off for it alone (see meshDirectoryOf). */
async function withoutNestedLoops<T>(db: pg.ClientBase | pg.Pool, read: (c: pg.ClientBase) => Promise<T>): Promise<T> {
  if (typeof (db as pg.Pool).totalCount === "number") return withTransaction(db as pg.Pool, (c) => withoutNestedLoops(c, read));
  const c = db as pg.ClientBase;
  await c.query("SET LOCAL enable_nestloop = off");
  const out = await read(c);
  await c.query("SET LOCAL enable_nestloop TO DEFAULT");
  return out;
}

async function readDirectory(db: pg.ClientBase, cluster: string): Promise<StoredMeshDirectory> {
  // Row 0 carries the spec and the version, the others the members.
  const r = await db.query<MemberDb & { part: number; spec: unknown; version: string | null }>(
    `WITH mr AS (
       SELECT node, array_agg(DISTINCT role ORDER BY role) AS roles FROM node_roles
        WHERE cluster = $1 AND role = ANY($2::text[]) GROUP BY node)
     SELECT 0 AS part, (SELECT spec FROM clusters WHERE name = $1) AS spec, (SELECT version::text FROM mesh_directory_version) AS version,
            NULL AS node, NULL AS node_class, NULL AS region, NULL AS zone, NULL::text[] AS roles,
            NULL::text[] AS endpoints, NULL::boolean AS reachable, NULL::boolean AS relay_capable, NULL AS fingerprint
     UNION ALL
     SELECT 1, NULL, NULL, n.name, f.node_class, f.region, f.zone, mr.roles, e.endpoints, e.reachable, e.relay_capable, i.public_key_fingerprint
       FROM mr
       JOIN nodes n ON n.name = mr.node AND n.cluster = $1 AND n.membership = 'Active'
       LEFT JOIN mesh_node_facts f ON f.node = n.name
       LEFT JOIN mesh_endpoints e ON e.node = n.name AND e.cluster = $1
       LEFT JOIN node_identities i ON i.node = n.name AND i.status = 'active'
     ORDER BY part, node`,
    [cluster, MESH_ROLES],
  );
  const head = r.rows[0];
  return {
    cluster,
    policy: peerPolicyOf(head?.spec),
    version: head?.version ?? "",
    members: r.rows.slice(1).map((x) => ({
      node: x.node,
      nodeClass: x.node_class ?? "standard",
      region: x.region ?? "",
      zone: x.zone ?? "",
      roles: x.roles,
      endpoints: x.endpoints ?? [],
      reachable: x.reachable ?? false,
      relayCapable: x.relay_capable ?? false,
      publicKeyFingerprint: x.fingerprint ?? "",
    })),
  };
}

/**
 * Records the candidate sets just put in these nodes' snapshots (an empty
 * set deletes the row). Writes only rows that changed.
 */
export async function recordCandidateSets(db: pg.ClientBase, cluster: string, sets: ReadonlyMap<string, readonly string[]>): Promise<void> {
  const keep: string[] = [];
  const lists: string[] = [];
  const drop: string[] = [];
  for (const [node, set] of sets) {
    if (set.length === 0) drop.push(node);
    else {
      keep.push(node);
      // FabricNode names never hold a space (DNS subdomain names): one text per set, split in SQL, is far cheaper than a jsonb[].
      lists.push(set.join(" "));
    }
  }
  if (drop.length > 0) await db.query("DELETE FROM mesh_candidate_sets WHERE node = ANY($1)", [drop]);
  if (keep.length === 0) return;
  await db.query(
    `INSERT INTO mesh_candidate_sets (node, cluster, candidates)
     SELECT m.node, $1, string_to_array(m.list, ' ') FROM unnest($2::text[], $3::text[]) AS m(node, list)
     ON CONFLICT (node) DO UPDATE SET cluster = EXCLUDED.cluster, candidates = EXCLUDED.candidates
     WHERE mesh_candidate_sets.cluster IS DISTINCT FROM EXCLUDED.cluster OR mesh_candidate_sets.candidates IS DISTINCT FROM EXCLUDED.candidates`,
    [cluster, keep, lists],
  );
}

/** The candidate sets stored for a cluster's nodes. */
export async function candidateSetsOf(db: pg.ClientBase | pg.Pool, cluster: string): Promise<Map<string, string[]>> {
  const r = await db.query<{ node: string; candidates: string[] }>("SELECT node, candidates FROM mesh_candidate_sets WHERE cluster = $1", [cluster]);
  return new Map(r.rows.map((x) => [x.node, x.candidates]));
}

/** Names of every cluster (the directory sweep walks them). */
export async function meshClusterNames(db: pg.Pool): Promise<string[]> {
  const r = await db.query<{ name: string }>("SELECT name FROM clusters ORDER BY name");
  return r.rows.map((x) => x.name);
}

/** Marks nodes dirty (the directory sweep found their candidate set out of date). */
export async function markMeshNodesDirty(pool: pg.Pool, cluster: string, nodes: readonly string[]): Promise<void> {
  if (nodes.length === 0) return;
  await withTransaction(pool, (c) => markNodesDirty(c, cluster, nodes));
}

/** The FabricNode facts the directory projects. */
export interface MeshNodeFacts {
  node: string;
  cluster: string;
  nodeClass: MeshNodeClass;
  region: string;
  zone: string;
}

/** Upserts a node's projected facts; true when something changed. */
export async function writeMeshNodeFacts(pool: pg.Pool, f: MeshNodeFacts): Promise<boolean> {
  const r = await pool.query(
    `INSERT INTO mesh_node_facts (node, cluster, node_class, region, zone) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (node) DO UPDATE SET cluster = EXCLUDED.cluster, node_class = EXCLUDED.node_class, region = EXCLUDED.region, zone = EXCLUDED.zone, changed_at = now()
     WHERE (mesh_node_facts.cluster, mesh_node_facts.node_class, mesh_node_facts.region, mesh_node_facts.zone)
       IS DISTINCT FROM (EXCLUDED.cluster, EXCLUDED.node_class, EXCLUDED.region, EXCLUDED.zone)`,
    [f.node, f.cluster, f.nodeClass, f.region, f.zone],
  );
  return (r.rowCount ?? 0) > 0;
}

/** Forgets a deleted node's projected facts and stored candidate set. */
export async function deleteMeshNode(pool: pg.Pool, node: string): Promise<void> {
  await pool.query("DELETE FROM mesh_node_facts WHERE node = $1", [node]);
  await pool.query("DELETE FROM mesh_candidate_sets WHERE node = $1", [node]);
}

/** A mesh member with what its agent last reported (kind `mesh` status reports). */
export interface MeshReportFacts {
  node: string;
  nodeClass: MeshNodeClass;
  /** Its mesh roles, sorted. */
  roles: string[];
  /** When its last heartbeat arrived (undefined: never). */
  heartbeatAt?: Date;
  /** Its last mesh report: whether the mesh was on and the peers with a link up. */
  report?: { receivedAt: Date; enabled: boolean; up: string[] };
}

/**
 * The cluster's mesh members (Active nodes holding a mesh role) with their
 * last heartbeat time and mesh report, sorted by name; with `node`, that
 * member only (none when it is not one). The peers with a link up are
 * extracted in SQL: a report's other rows never leave PostgreSQL.
 */
export async function meshReportsOf(db: pg.ClientBase | pg.Pool, cluster: string, node?: string): Promise<{ policy: MeshPeerPolicy; members: MeshReportFacts[] }> {
  // The whole cluster: joined like the directory (see meshDirectoryOf); one node: nested loops are right.
  return node === undefined ? withoutNestedLoops(db, (c) => readReports(c, cluster, undefined)) : readReports(db, cluster, node);
}

async function readReports(db: pg.ClientBase | pg.Pool, cluster: string, node: string | undefined): Promise<{ policy: MeshPeerPolicy; members: MeshReportFacts[] }> {
  const r = await db.query<{ node: string; node_class: MeshNodeClass | null; roles: string[]; heartbeat_at: Date | null; received_at: Date | null; enabled: boolean | null; up: string[] | null; spec: unknown }>(
    `WITH mr AS (
       SELECT node, array_agg(DISTINCT role ORDER BY role) AS roles FROM node_roles
        WHERE cluster = $1 AND role = ANY($2::text[]) AND ($3::text IS NULL OR node = $3) GROUP BY node)
     SELECT n.name AS node, f.node_class, mr.roles, h.received_at AS heartbeat_at, s.received_at,
            (s.body->>'enabled')::boolean AS enabled,
            ARRAY(SELECT p->>'peer' FROM jsonb_array_elements(CASE WHEN jsonb_typeof(s.body->'peers') = 'array' THEN s.body->'peers' ELSE '[]'::jsonb END) p
                   WHERE p->>'state' = 'up' ORDER BY 1) AS up,
            (SELECT spec FROM clusters WHERE name = $1) AS spec
       FROM mr
       JOIN nodes n ON n.name = mr.node AND n.cluster = $1 AND n.membership = 'Active'
       LEFT JOIN mesh_node_facts f ON f.node = n.name
       LEFT JOIN node_heartbeats h ON h.node = n.name
       LEFT JOIN node_status_reports s ON s.node = n.name AND s.kind = 'mesh' AND s.cluster = $1
      ORDER BY n.name`,
    [cluster, MESH_ROLES, node ?? null],
  );
  const spec = r.rows[0]?.spec ?? (await db.query<{ spec: unknown }>("SELECT spec FROM clusters WHERE name = $1", [cluster])).rows[0]?.spec;
  return {
    policy: peerPolicyOf(spec),
    members: r.rows.map((x) => ({
      node: x.node,
      nodeClass: x.node_class ?? "standard",
      roles: x.roles,
      ...(x.heartbeat_at !== null ? { heartbeatAt: x.heartbeat_at } : {}),
      ...(x.received_at !== null ? { report: { receivedAt: x.received_at, enabled: x.enabled === true, up: x.up ?? [] } } : {}),
    })),
  };
}
