/**
 * Repository of the release tables (migrations/017_releases.sql): the trust
 * set accepted per cluster, the verification outcome of each Release, the
 * highest version verified per (cluster, component), and the check the agent
 * API makes before serving an artifact. Controller writes are fenced
 * decisions with their audit rows.
 */
import type pg from "pg";
import { canonicalJson } from "../canonical-json.js";
import type { ArtifactRef, TrustSet } from "../release/index.js";
import { decide, type AuditEntry, type Fence } from "./fenced.js";
import type { Queryable } from "./table.js";

/** The trust set accepted for a cluster. */
export interface AcceptedTrust {
  cluster: string;
  trust: TrustSet;
  how: "initial" | "rotation";
  acceptedAt: Date;
}

/** A releases row. */
export interface ReleaseRow {
  name: string;
  uid: string;
  cluster: string;
  component: string;
  version: string;
  payloadSha256: string;
  verified: boolean;
  reason: string;
  message: string;
  signedBy: string[];
  expires: Date | null;
  artifacts: ArtifactRef[];
}

interface DbRelease {
  name: string;
  uid: string;
  cluster: string;
  component: string;
  version: string;
  payload_sha256: string;
  verified: boolean;
  reason: string;
  message: string;
  signed_by: string[];
  expires: Date | null;
  artifacts: ArtifactRef[];
}

function fromDb(r: DbRelease): ReleaseRow {
  return {
    name: r.name,
    uid: r.uid,
    cluster: r.cluster,
    component: r.component,
    version: r.version,
    payloadSha256: r.payload_sha256,
    verified: r.verified,
    reason: r.reason,
    message: r.message,
    signedBy: r.signed_by,
    expires: r.expires,
    artifacts: r.artifacts,
  };
}

/** True when the stored outcome equals the new one (no write, no audit row). */
export function sameReleaseRow(a: ReleaseRow, b: ReleaseRow): boolean {
  return canonicalJson({ ...a, expires: a.expires?.getTime() ?? null }) === canonicalJson({ ...b, expires: b.expires?.getTime() ?? null });
}

/** See the module comment. */
export class ReleaseStore {
  constructor(
    private readonly pool: pg.Pool,
    private readonly fence: Fence,
    private readonly actor: string,
  ) {}

  async trustOf(cluster: string): Promise<AcceptedTrust | undefined> {
    const r = await this.pool.query<{ cluster: string; trust: TrustSet; how: "initial" | "rotation"; accepted_at: Date }>(
      "SELECT cluster, trust, how, accepted_at FROM release_trust WHERE cluster = $1",
      [cluster],
    );
    const row = r.rows[0];
    return row && { cluster: row.cluster, trust: row.trust, how: row.how, acceptedAt: row.accepted_at };
  }

  /**
   * Records a newly accepted trust set. `previous` is the set the caller
   * based its decision on: when another writer changed it meanwhile nothing
   * is written and false is returned (the caller re-reads and decides again).
   */
  async acceptTrust(cluster: string, trust: TrustSet, how: "initial" | "rotation", previous: TrustSet | undefined): Promise<boolean> {
    return decide(this.fence, this.actor, async (c) => {
      const cur = (await c.query<{ trust: TrustSet }>("SELECT trust FROM release_trust WHERE cluster = $1 FOR UPDATE", [cluster])).rows[0];
      if (JSON.stringify(cur?.trust) !== JSON.stringify(previous)) return { result: false, audit: [] };
      await c.query(
        `INSERT INTO release_trust (cluster, trust, how) VALUES ($1, $2, $3)
         ON CONFLICT (cluster) DO UPDATE SET trust = EXCLUDED.trust, how = EXCLUDED.how, accepted_at = now()`,
        [cluster, JSON.stringify(trust), how],
      );
      const audit: AuditEntry = {
        action: how === "initial" ? "release.trust.accepted" : "release.trust.rotated",
        objectKind: "FabricCluster",
        objectName: cluster,
        cluster,
        details: { keyIds: trust.keys.map((k) => k.keyId), threshold: trust.threshold, ...(previous ? { previousKeyIds: previous.keys.map((k) => k.keyId), previousThreshold: previous.threshold } : {}) },
      };
      return { result: true, audit: [audit] };
    });
  }

  /** Records that a rotation was refused (audited, nothing else changes). */
  async refuseRotation(cluster: string, reason: string): Promise<void> {
    await decide(this.fence, this.actor, async () => ({
      result: undefined,
      audit: [{ action: "release.trust.rotation-refused", objectKind: "FabricCluster", objectName: cluster, cluster, details: { reason } }],
    }));
  }

  async get(name: string): Promise<ReleaseRow | undefined> {
    const r = await this.pool.query<DbRelease>("SELECT * FROM releases WHERE name = $1", [name]);
    return r.rows[0] && fromDb(r.rows[0]);
  }

  async names(): Promise<string[]> {
    return (await this.pool.query<{ name: string }>("SELECT name FROM releases ORDER BY name")).rows.map((r) => r.name);
  }

  /** The highest version ever verified for (cluster, component). */
  async highWater(cluster: string, component: string): Promise<string | undefined> {
    const r = await this.pool.query<{ version: string }>("SELECT version FROM release_high_water WHERE cluster = $1 AND component = $2", [cluster, component]);
    return r.rows[0]?.version;
  }

  /** The verified release of (cluster, component, version) other than `name`, if any. */
  async verifiedTwin(cluster: string, component: string, version: string, name: string): Promise<ReleaseRow | undefined> {
    const r = await this.pool.query<DbRelease>("SELECT * FROM releases WHERE cluster = $1 AND component = $2 AND version = $3 AND verified AND name <> $4", [cluster, component, version, name]);
    return r.rows[0] && fromDb(r.rows[0]);
  }

  /**
   * Writes a verification outcome with its audit row; when verified, raises
   * the high-water version (`newHighWater`, decided by the caller). Returns
   * false when the stored row is already equal.
   */
  async record(row: ReleaseRow, previous: ReleaseRow | undefined, newHighWater: string | undefined): Promise<boolean> {
    if (previous !== undefined && sameReleaseRow(previous, row)) return false;
    return decide(this.fence, this.actor, async (c) => {
      await c.query(
        `INSERT INTO releases (name, uid, cluster, component, version, payload_sha256, verified, reason, message, signed_by, expires, artifacts)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (name) DO UPDATE SET uid = EXCLUDED.uid, cluster = EXCLUDED.cluster, component = EXCLUDED.component, version = EXCLUDED.version,
           payload_sha256 = EXCLUDED.payload_sha256, verified = EXCLUDED.verified, reason = EXCLUDED.reason, message = EXCLUDED.message,
           signed_by = EXCLUDED.signed_by, expires = EXCLUDED.expires, artifacts = EXCLUDED.artifacts, updated_at = now()`,
        [row.name, row.uid, row.cluster, row.component, row.version, row.payloadSha256, row.verified, row.reason, row.message, row.signedBy, row.expires, JSON.stringify(row.artifacts)],
      );
      if (newHighWater !== undefined) {
        await c.query(
          `INSERT INTO release_high_water (cluster, component, version) VALUES ($1, $2, $3)
           ON CONFLICT (cluster, component) DO UPDATE SET version = EXCLUDED.version`,
          [row.cluster, row.component, newHighWater],
        );
      }
      const changed = previous === undefined || previous.verified !== row.verified || previous.reason !== row.reason || previous.payloadSha256 !== row.payloadSha256;
      const audit: AuditEntry[] = changed
        ? [
            {
              action: row.verified ? "release.verified" : "release.rejected",
              objectKind: "Release",
              objectName: row.name,
              cluster: row.cluster,
              details: { component: row.component, version: row.version, reason: row.reason, payloadSha256: row.payloadSha256, signedBy: row.signedBy },
            },
          ]
        : [];
      return { result: true, audit };
    });
  }

  /** Forgets a deleted Release (the high-water version stays). */
  async delete(name: string): Promise<boolean> {
    return decide(this.fence, this.actor, async (c) => {
      const r = await c.query<{ cluster: string; version: string }>("DELETE FROM releases WHERE name = $1 RETURNING cluster, version", [name]);
      const row = r.rows[0];
      if (row === undefined) return { result: false, audit: [] };
      return { result: true, audit: [{ action: "release.deleted", objectKind: "Release", objectName: name, cluster: row.cluster, details: { version: row.version } }] };
    });
  }
}

/**
 * Whether a node may download an artifact: one of its assignments names a
 * verified release of the node's cluster whose manifest lists that artifact.
 */
export async function nodeMayFetch(db: Queryable, nodeId: string, sha256: string): Promise<boolean> {
  const r = await db.query(
    `SELECT 1 FROM node_release_assignments a
       JOIN releases r ON r.name = a.release_name AND r.verified
       JOIN nodes n ON n.name = a.node_id AND n.cluster = r.cluster
      WHERE a.node_id = $1 AND a.sha256 = $2
        AND r.artifacts @> jsonb_build_array(jsonb_build_object('sha256', a.sha256::text))
      LIMIT 1`,
    [nodeId, sha256],
  );
  return (r.rowCount ?? 0) > 0;
}
