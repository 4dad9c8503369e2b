/**
 * The agent API's enrollment writes (migrations/004_enrollment.sql): a token
 * use and the join request it creates, checked and recorded in one
 * transaction with their audit rows. They are runtime facts, stamped with
 * the current authority term but not fenced: enrolling decides nothing. The
 * decisions that follow are the controllers' (join-tokens.ts, nodes.ts).
 */
import type pg from "pg";
import { appendAudit } from "../audit/chain.js";
import { withTransaction } from "../db/pool.js";
import { secretMatches } from "../enrollment/token.js";
import type { TokenDb } from "./join-tokens.js";
import { joinRequests, requestFromDb, type RequestDb, type RequestRow } from "./nodes.js";

/** Why an enrollment was refused: a stable code for machines, a message for people. */
export type RefusalCode =
  | "TokenMalformed"
  | "TokenInvalid"
  | "TokenExpired"
  | "TokenRevoked"
  | "TokenExhausted"
  | "TokenWrongCluster"
  | "RoleNotAllowed"
  | "ClusterNotFound"
  | "EnrollmentPaused"
  | "CapabilityMissing"
  | "KeyInUse";

/** What the agent asked for, already validated: the join request's own fields, and the token that admits it. */
export interface EnrollmentInput
  extends Pick<RequestRow, "nodeName" | "hostFingerprint" | "publicKeyFingerprint" | "publicKeyDer" | "csrPem" | "capabilities" | "requestedRoles" | "facts"> {
  tokenId: string;
  secret: string;
  /** The cluster the agent believes it joins, if it said. */
  cluster?: string;
  /** Deterministic name of the JoinRequest to create. */
  requestName: (cluster: string) => string;
}

/** Outcome of recordEnrollment. */
export type EnrollmentOutcome =
  | { kind: "created"; request: RequestRow }
  | { kind: "replayed"; request: RequestRow }
  | { kind: "refused"; code: RefusalCode; message: string; token?: RefusedToken };

/** The token a refusal concerns, when one matched (for the event and log line that record the refusal). */
export interface RefusedToken {
  name: string;
  uid: string;
  cluster: string;
}

/** Current authority term (for stamping runtime-fact audit rows). */
async function currentTerm(c: pg.ClientBase): Promise<number> {
  const r = await c.query<{ term: string }>("SELECT term FROM authority WHERE id = 1");
  return Number(r.rows[0]?.term ?? 0);
}

/** The enrollment API's writes: token use and join request, checked and recorded in one transaction. */
export class EnrollmentStore {
  constructor(
    private readonly pool: pg.Pool,
    private readonly actor: string,
  ) {}

  /**
   * Checks the token (hash, cluster, expiry, revocation, remaining uses) and
   * the cluster policy, then records the use and the request. The token row
   * is locked FOR UPDATE, so concurrent enrollments serialise on it and
   * `used` can never pass max_uses. A request for a public key that already
   * has one is a replay: the existing request is returned and nothing
   * changes. Refusals write nothing.
   */
  async recordEnrollment(i: EnrollmentInput): Promise<EnrollmentOutcome> {
    return withTransaction(this.pool, async (c) => {
      const prior = await c.query<RequestDb>("SELECT * FROM join_requests WHERE public_key_fingerprint = $1", [i.publicKeyFingerprint]);
      const existing = prior.rows[0];
      const tokRes = await c.query<TokenDb>("SELECT * FROM join_tokens WHERE token_id = $1 FOR UPDATE", [i.tokenId]);
      const t = tokRes.rows[0];
      if (t === undefined || !secretMatches(i.secret, t.secret_hash)) return refused("TokenInvalid", "join token is not valid");
      if (existing !== undefined) {
        if (existing.token_name === t.name && existing.node_name === i.nodeName && existing.host_fingerprint === i.hostFingerprint) {
          return { kind: "replayed" as const, request: requestFromDb(existing) };
        }
        return refused("KeyInUse", "this public key is already enrolled; generate a new key", t);
      }
      if (i.cluster !== undefined && i.cluster !== t.cluster) {
        return refused("TokenWrongCluster", `join token is for another cluster than ${i.cluster}`, t);
      }
      if (t.revoked_at !== null) return refused("TokenRevoked", "join token has been revoked", t);
      const now = await c.query<{ now: Date }>("SELECT now() AS now");
      const nowAt = now.rows[0]?.now ?? new Date();
      if (t.expires_at.getTime() <= nowAt.getTime()) return refused("TokenExpired", `join token expired at ${t.expires_at.toISOString()}`, t);
      if (t.used >= t.max_uses) return refused("TokenExhausted", `join token has been used ${t.used} of ${t.max_uses} times`, t);
      const notAllowed = i.requestedRoles.filter((r) => !t.allowed_roles.includes(r));
      if (notAllowed.length > 0) return refused("RoleNotAllowed", `join token does not allow roles: ${notAllowed.join(", ")}`, t);
      const cl = await c.query<{ spec: Record<string, unknown> }>("SELECT spec FROM clusters WHERE name = $1", [t.cluster]);
      const cluster = cl.rows[0];
      if (cluster === undefined) return refused("ClusterNotFound", `cluster ${t.cluster} does not exist`, t);
      const policy = (cluster.spec.enrollmentPolicy ?? {}) as { paused?: boolean; requireCapabilities?: string[]; approval?: string };
      if (policy.paused === true) return refused("EnrollmentPaused", `enrollment into cluster ${t.cluster} is paused`, t);
      const missing = (policy.requireCapabilities ?? []).filter((cap) => !i.capabilities.includes(cap));
      if (missing.length > 0) return refused("CapabilityMissing", `cluster ${t.cluster} requires capabilities: ${missing.join(", ")}`, t);

      const name = i.requestName(t.cluster);
      await c.query("UPDATE join_tokens SET used = used + 1, last_used_at = now() WHERE name = $1", [t.name]);
      const ins = await c.query<RequestDb>(
        `INSERT INTO join_requests (name, cluster, token_name, node_name, host_fingerprint, public_key_fingerprint, public_key_der, csr_pem,
                                    capabilities, requested_roles, facts, node_group, auto_approve)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING *`,
        [
          name,
          t.cluster,
          t.name,
          i.nodeName,
          i.hostFingerprint,
          i.publicKeyFingerprint,
          i.publicKeyDer,
          i.csrPem,
          i.capabilities,
          i.requestedRoles,
          JSON.stringify(i.facts),
          t.node_group,
          t.auto_approve && policy.approval === "TokenAutoApprove",
        ],
      );
      const row = ins.rows[0];
      if (row === undefined) throw new Error("inserting join request: no row returned");
      const term = await currentTerm(c);
      await appendAudit(c, [
        { actor: this.actor, term, action: "token.used", objectKind: "JoinToken", objectName: t.name, cluster: t.cluster, details: { uses: t.used + 1, maxUses: t.max_uses, joinRequest: name } },
        {
          actor: this.actor,
          term,
          action: "joinrequest.received",
          objectKind: "JoinRequest",
          objectName: name,
          cluster: t.cluster,
          details: { nodeName: i.nodeName, hostFingerprint: i.hostFingerprint, publicKeyFingerprint: i.publicKeyFingerprint, requestedRoles: i.requestedRoles, token: t.name },
        },
      ]);
      return { kind: "created" as const, request: requestFromDb(row) };
    });
  }

  /**
   * Undoes a just-recorded enrollment whose JoinRequest object could not be
   * created (the use is returned to the token), with an audit row.
   */
  async undoEnrollment(requestName: string, why: string): Promise<void> {
    await withTransaction(this.pool, async (c) => {
      const del = await c.query<{ token_name: string; cluster: string }>("DELETE FROM join_requests WHERE name = $1 AND state = 'Pending' RETURNING token_name, cluster", [requestName]);
      const r = del.rows[0];
      if (r === undefined) return;
      await c.query("UPDATE join_tokens SET used = greatest(used - 1, 0) WHERE name = $1", [r.token_name]);
      await appendAudit(c, [
        { actor: this.actor, term: await currentTerm(c), action: "joinrequest.withdrawn", objectKind: "JoinRequest", objectName: requestName, cluster: r.cluster, details: { reason: why } },
      ]);
    });
  }

  /** A join request by name. */
  async request(name: string): Promise<RequestRow | undefined> {
    return joinRequests.get(this.pool, name);
  }
}

function refused(code: RefusalCode, message: string, t?: TokenDb): EnrollmentOutcome {
  return t === undefined ? { kind: "refused", code, message } : { kind: "refused", code, message, token: { name: t.name, uid: t.uid, cluster: t.cluster } };
}
