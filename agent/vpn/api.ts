/**
 * The VPN owner's calls to the agent API (wire contract), over the
 * membership's mTLS transport; the certificate is the caller. Refusals
 * arrive as AgentApiRequestError (403 NotEligible / NotHolder, 409
 * LeaseLost, 503 NotLeader); answers are checked before use.
 */
import type { SyncTransport } from "../sync/transport.js";

/** An acquire answer. */
export type AcquireResult = { granted: true; token: number; ttlMs: number } | { granted: false; retryAfterMs: number; reason: string };

/** What the owner needs from the control plane. */
export interface VpnLeaseApi {
  acquire(connection: string): Promise<AcquireResult>;
  renew(connection: string, token: number): Promise<{ token: number; ttlMs: number }>;
  release(connection: string, token: number): Promise<void>;
  credential(connection: string, token: number): Promise<string>;
}

function positiveInt(v: unknown, what: string): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) throw new Error(`agent api answered a ${what} that is not a non-negative integer`);
  return v;
}

/** The calls over `transport()` (looked up per call, so a renewed certificate is used). */
export function leaseApiOver(transport: () => Promise<Pick<SyncTransport, "postJson">>): VpnLeaseApi {
  const post = async <T>(path: string, body: unknown): Promise<T> => (await transport()).postJson<T>(path, body);
  return {
    async acquire(connection) {
      const r = await post<Record<string, unknown>>("/v1/vpn/lease/acquire", { connection });
      if (r.granted === true) return { granted: true, token: positiveInt(r.token, "token"), ttlMs: positiveInt(r.ttlMs, "ttlMs") };
      return { granted: false, retryAfterMs: Math.min(positiveInt(r.retryAfterMs ?? 0, "retryAfterMs"), 3_600_000), reason: typeof r.reason === "string" ? r.reason.slice(0, 200) : "held by another node" };
    },
    async renew(connection, token) {
      const r = await post<Record<string, unknown>>("/v1/vpn/lease/renew", { connection, token });
      return { token: positiveInt(r.token, "token"), ttlMs: positiveInt(r.ttlMs, "ttlMs") };
    },
    async release(connection, token) {
      await post("/v1/vpn/lease/release", { connection, token });
    },
    async credential(connection, token) {
      const r = await post<Record<string, unknown>>("/v1/vpn/credential", { connection, token });
      if (typeof r.credential !== "string") throw new Error("agent api answered a credential that is not a string");
      if (r.token !== token) throw new Error("agent api answered the credential of another token");
      return r.credential;
    },
  };
}
