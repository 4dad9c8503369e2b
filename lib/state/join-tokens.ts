/**
 * Repository of join_tokens (migrations/004_enrollment.sql): the JoinToken
 * controller's decisions, fenced by the authority term. The agent API's use
 * of a token is recorded by EnrollmentStore (enrollment.ts).
 */
import type pg from "pg";
import { decide, decideRow, type AuditEntry, type Fence } from "./fenced.js";
import { Table } from "./table.js";

/** A join_tokens row. */
export interface TokenRow {
  name: string;
  uid: string;
  tokenId: string;
  secretHash: Buffer;
  cluster: string;
  expiresAt: Date;
  maxUses: number;
  used: number;
  allowedRoles: string[];
  autoApprove: boolean;
  nodeGroup: string | null;
  revokedAt: Date | null;
  expiredAt: Date | null;
  lastUsedAt: Date | null;
}

/** A join_tokens row as PostgreSQL returns it. */
export interface TokenDb {
  name: string;
  uid: string;
  token_id: string;
  secret_hash: Buffer;
  cluster: string;
  expires_at: Date;
  max_uses: number;
  used: number;
  allowed_roles: string[];
  auto_approve: boolean;
  node_group: string | null;
  revoked_at: Date | null;
  expired_at: Date | null;
  last_used_at: Date | null;
}

/** Maps a join_tokens row. */
export function tokenFromDb(r: TokenDb): TokenRow {
  return {
    name: r.name,
    uid: r.uid,
    tokenId: r.token_id,
    secretHash: r.secret_hash,
    cluster: r.cluster,
    expiresAt: r.expires_at,
    maxUses: r.max_uses,
    used: r.used,
    allowedRoles: r.allowed_roles,
    autoApprove: r.auto_approve,
    nodeGroup: r.node_group,
    revokedAt: r.revoked_at,
    expiredAt: r.expired_at,
    lastUsedAt: r.last_used_at,
  };
}

const joinTokens = new Table<TokenDb, TokenRow>("join_tokens", tokenFromDb);

/** New token row fields. */
export type NewToken = Omit<TokenRow, "used" | "revokedAt" | "expiredAt" | "lastUsedAt">;

/** The JoinToken controller's rows (fenced decisions). */
export class TokenStore {
  constructor(
    private readonly pool: pg.Pool,
    private readonly fence: Fence,
    private readonly actor: string,
  ) {}

  /** A token row by object name. */
  async get(name: string): Promise<TokenRow | undefined> {
    return joinTokens.get(this.pool, name);
  }

  /** Names of all token rows. */
  async names(): Promise<string[]> {
    return joinTokens.names(this.pool);
  }

  /** Creates the row (replacing a row of another uid under the same name). */
  async create(t: NewToken): Promise<void> {
    await decide(this.fence, this.actor, async (c) => {
      const audit: AuditEntry[] = [];
      const del = await c.query("DELETE FROM join_tokens WHERE name = $1 AND uid <> $2", [t.name, t.uid]);
      if ((del.rowCount ?? 0) > 0) audit.push({ action: "token.deleted", objectKind: "JoinToken", objectName: t.name, cluster: t.cluster, details: { reason: "replaced by a new object of the same name" } });
      await c.query(
        `INSERT INTO join_tokens (name, uid, token_id, secret_hash, cluster, expires_at, max_uses, allowed_roles, auto_approve, node_group)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
        [t.name, t.uid, t.tokenId, t.secretHash, t.cluster, t.expiresAt, t.maxUses, t.allowedRoles, t.autoApprove, t.nodeGroup],
      );
      audit.push({
        action: "token.created",
        objectKind: "JoinToken",
        objectName: t.name,
        cluster: t.cluster,
        details: { tokenId: t.tokenId, expiresAt: t.expiresAt.toISOString(), maxUses: t.maxUses, allowedRoles: t.allowedRoles, autoApprove: t.autoApprove },
      });
      return { result: undefined, audit };
    });
  }

  /** Marks the token revoked (once). */
  async revoke(name: string, reason: string): Promise<void> {
    await decideRow<{ cluster: string }>(
      this.fence,
      this.actor,
      "UPDATE join_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL RETURNING cluster",
      [name],
      (row) => ({ action: "token.revoked", objectKind: "JoinToken", objectName: name, cluster: row.cluster, details: { reason } }),
    );
  }

  /** Records the expiry (once). */
  async markExpired(name: string): Promise<void> {
    await decideRow<{ cluster: string; used: number }>(
      this.fence,
      this.actor,
      "UPDATE join_tokens SET expired_at = now() WHERE name = $1 AND expired_at IS NULL RETURNING cluster, used",
      [name],
      (row) => ({ action: "token.expired", objectKind: "JoinToken", objectName: name, cluster: row.cluster, details: { uses: row.used } }),
    );
  }

  /** Deletes the row (the object is gone); false when there was none. */
  async delete(name: string): Promise<boolean> {
    return decideRow<{ cluster: string }>(
      this.fence,
      this.actor,
      "DELETE FROM join_tokens WHERE name = $1 RETURNING cluster",
      [name],
      (row) => ({ action: "token.deleted", objectKind: "JoinToken", objectName: name, cluster: row.cluster, details: {} }),
    );
  }
}
