/**
 * Update-cache nodes in PostgreSQL's reach (docs/releases.md "Update
 * caches"). A node holding the `update-cache` role in its cluster:
 *
 * - may download from the agent API exactly the artifacts of verified
 *   releases assigned to some node of its own cluster (cacheMayFetch);
 * - finds that list in its snapshot (cacheArtifactsOf, bounded);
 * - reports where it serves as status kind `update-cache`
 *   ({ endpoint: "ip:port" }, validated by validateUpdateCacheReport), and
 *   nodes of its cluster with release assignments receive it with the pin
 *   of its active certificate (cacheEndpointsOf).
 *
 * Need-to-know: every query is bounded to one cluster.
 */
import { isIP } from "node:net";
import { UPDATE_CACHE_STATUS_KIND } from "../agent-protocol.js";
import type { Queryable } from "./table.js";

/** The role. */
export const UPDATE_CACHE_ROLE = "update-cache";
/** At most this many artifacts in a cache node's snapshot, and caches in a fetching node's. */
export const MAX_CACHE_ARTIFACTS = 256;
export const MAX_CACHES = 8;

/** A cache's status report body. */
export interface UpdateCacheReport {
  endpoint: string;
}

/**
 * Accepts `{ endpoint: "ip:port" }` only: an IPv4 or bracketed IPv6 literal
 * (no names, no zone, not unspecified) and a port 1..65535. Returns the
 * body or a reason.
 */
export function validateUpdateCacheReport(body: unknown): UpdateCacheReport | string {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return "body must be an object";
  const o = body as Record<string, unknown>;
  for (const k of Object.keys(o)) if (k !== "endpoint") return `${k.slice(0, 32)} is not a known field`;
  const e = o.endpoint;
  if (typeof e !== "string" || e.length > 64) return "endpoint must be a string host:port";
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(e);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (host === undefined || isIP(host) === 0 || (m?.[1] !== undefined) !== (isIP(host) === 6)) return "endpoint host must be an IP literal (IPv6 in brackets)";
  if (host === "0.0.0.0" || host === "::" || !Number.isInteger(port) || port < 1 || port > 65535) return "endpoint must name a usable address and a port in 1..65535";
  return { endpoint: e.toLowerCase() };
}

/** Whether `node` holds the update-cache role and a verified release assigned in its cluster lists `sha256`. */
export async function cacheMayFetch(db: Queryable, node: string, sha256: string): Promise<boolean> {
  const r = await db.query(
    `SELECT 1 FROM nodes c
       JOIN node_roles cr ON cr.node = c.name AND cr.cluster = c.cluster AND cr.role = $3
       JOIN nodes n ON n.cluster = c.cluster
       JOIN node_release_assignments a ON a.node_id = n.name AND a.sha256 = $2
       JOIN releases r ON r.name = a.release_name AND r.verified AND r.cluster = c.cluster
      WHERE c.name = $1 AND c.membership = 'Active'
        AND r.artifacts @> jsonb_build_array(jsonb_build_object('sha256', a.sha256::text))
      LIMIT 1`,
    [node, sha256, UPDATE_CACHE_ROLE],
  );
  return (r.rowCount ?? 0) > 0;
}

/** The artifacts (digest, length) of verified releases assigned in a cluster, sorted, at most MAX_CACHE_ARTIFACTS. */
export async function cacheArtifactsOf(db: Queryable, cluster: string): Promise<Array<{ sha256: string; length: number }>> {
  const r = await db.query<{ sha256: string; length: string }>(
    `SELECT DISTINCT a.sha256, s.length FROM node_release_assignments a
       JOIN nodes n ON n.name = a.node_id AND n.cluster = $1
       JOIN releases r ON r.name = a.release_name AND r.verified AND r.cluster = $1
       JOIN artifacts s ON s.sha256 = a.sha256
      WHERE r.artifacts @> jsonb_build_array(jsonb_build_object('sha256', a.sha256::text))
      ORDER BY a.sha256 LIMIT $2`,
    [cluster, MAX_CACHE_ARTIFACTS],
  );
  return r.rows.map((x) => ({ sha256: x.sha256, length: Number(x.length) }));
}

/** Which of these nodes hold the update-cache role (Active members of the cluster). */
export async function cacheNodesAmong(db: Queryable, cluster: string, nodes: readonly string[]): Promise<Set<string>> {
  if (nodes.length === 0) return new Set();
  const r = await db.query<{ node: string }>(
    `SELECT DISTINCT r.node FROM node_roles r JOIN nodes n ON n.name = r.node AND n.cluster = $1 AND n.membership = 'Active'
      WHERE r.cluster = $1 AND r.role = $2 AND r.node = ANY($3::text[])`,
    [cluster, UPDATE_CACHE_ROLE, nodes],
  );
  return new Set(r.rows.map((x) => x.node));
}

/** The cluster's caches with a valid reported endpoint and an active certificate, sorted by node, at most MAX_CACHES. */
export async function cacheEndpointsOf(db: Queryable, cluster: string): Promise<Array<{ node: string; endpoint: string; certificateFingerprint: string }>> {
  const r = await db.query<{ node: string; body: unknown; fingerprint: string }>(
    `SELECT DISTINCT ON (n.name) n.name AS node, s.body, i.public_key_fingerprint AS fingerprint
       FROM node_roles cr
       JOIN nodes n ON n.name = cr.node AND n.cluster = $1 AND n.membership = 'Active'
       JOIN node_status_reports s ON s.node = n.name AND s.kind = $3 AND s.cluster = $1
       JOIN node_identities i ON i.node = n.name AND i.status = 'active'
      WHERE cr.cluster = $1 AND cr.role = $2
      ORDER BY n.name`,
    [cluster, UPDATE_CACHE_ROLE, UPDATE_CACHE_STATUS_KIND],
  );
  const out: Array<{ node: string; endpoint: string; certificateFingerprint: string }> = [];
  for (const x of r.rows) {
    const v = validateUpdateCacheReport(x.body);
    if (typeof v !== "string" && x.fingerprint.startsWith("sha256:")) out.push({ node: x.node, endpoint: v.endpoint, certificateFingerprint: x.fingerprint });
    if (out.length === MAX_CACHES) break;
  }
  return out;
}
