/**
 * Pure decisions of the JoinToken controller: the token's state, its expiry
 * and the status to publish.
 */
import type { JoinTokenStatus } from "../../lib/api/types.generated.js";
import type { TokenRow } from "../../lib/state/index.js";
import { formatTime, setCondition, type Condition } from "../runtime/index.js";

/** Reasons of the Ready condition. */
export const TokenReasons = {
  Active: "Active",
  Expired: "Expired",
  Exhausted: "Exhausted",
  Revoked: "Revoked",
  ClusterNotFound: "ClusterNotFound",
} as const;

/** Where a token stands. */
export type TokenState = "Active" | "Expired" | "Exhausted" | "Revoked";

/** The state of a token row at `now` (revocation wins over expiry, expiry over exhaustion). */
export function tokenState(row: Pick<TokenRow, "revokedAt" | "expiresAt" | "used" | "maxUses">, specRevoked: boolean, now: Date): TokenState {
  if (specRevoked || row.revokedAt !== null) return "Revoked";
  if (row.expiresAt.getTime() <= now.getTime()) return "Expired";
  if (row.used >= row.maxUses) return "Exhausted";
  return "Active";
}

/** The expiry: creation plus ttl, bounded by the cluster's maxTokenTTL. */
export function tokenExpiry(created: Date, ttlMs: number, maxTtlMs: number): Date {
  return new Date(created.getTime() + Math.min(ttlMs, maxTtlMs));
}

const messages: Record<TokenState, (row: TokenRow) => string> = {
  Active: (r) => `token accepts ${r.maxUses - r.used} more join request(s) until ${r.expiresAt.toISOString()}`,
  Expired: (r) => `token expired at ${r.expiresAt.toISOString()}; its Secret was deleted`,
  Exhausted: (r) => `token was used ${r.used} of ${r.maxUses} times; its Secret was deleted`,
  Revoked: () => "token was revoked; its Secret was deleted",
};

/** The status to publish for a token with a row. */
export function desiredTokenStatus(
  current: JoinTokenStatus | undefined,
  generation: number,
  row: TokenRow,
  state: TokenState,
  secretRef: { name: string; namespace: string } | undefined,
  now: Date,
): JoinTokenStatus {
  const conditions = setCondition(
    current?.conditions as Condition[] | undefined,
    { type: "Ready", status: state === "Active" ? "True" : "False", reason: TokenReasons[state], message: messages[state](row), observedGeneration: generation },
    now,
  );
  const out: JoinTokenStatus = { observedGeneration: generation, uses: row.used, expiresAt: formatTime(row.expiresAt), conditions };
  if (row.lastUsedAt !== null) out.lastUsedTime = formatTime(row.lastUsedAt);
  if (secretRef !== undefined) out.secretRef = secretRef;
  return out;
}
