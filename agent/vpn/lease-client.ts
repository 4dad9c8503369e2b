/**
 * The agent's side of a VPN connection lease (lib/agent-protocol.ts,
 * docs/vpn.md): acquire, renew and release over the agent API, and the
 * credential fetch, each carrying (connection, token). The one lease client
 * of the agent: the VPN owner (owner.ts) and the chaos test's clients use it.
 * Answers are checked before use (a malformed grant or renewal is
 * "unavailable", never a token or ttl acted on; a busy answer's delay and
 * reason are clamped; a credential must be text for the held token).
 *
 * The holder's deadline comes from its own monotonic clock: the time the
 * acquire or renew was SENT + ttlMs - margin (margin = max(1 s, ttl/10)).
 * The answer may arrive late, but the lease cannot have started before the
 * request left, so the deadline never outlives the lease the database
 * granted, whatever the wall clock or the answer's expiresAt say (expiresAt
 * is informational and never read here). After the deadline the lease is
 * gone for this node, renewed or not: the owner tears its data plane down.
 * Renew every ttl/3.
 */
import { performance } from "node:perf_hooks";
import {
  vpnDeadlineMarginMs,
  type VpnCredentialResponse,
  type VpnReleaseResponse,
} from "../../lib/agent-protocol.js";
import { AgentApiRequestError, type ApiResponse, type JsonRequestOptions } from "../http/client.js";

/** What the lease client needs of the agent API client (AgentApiClient has it). */
export interface LeaseTransport {
  request<T>(method: string, path: string, body?: unknown, headers?: Record<string, string>, o?: JsonRequestOptions): Promise<ApiResponse<T>>;
}

/** A transport, or where to get the current one per call (the membership's, which follows certificate renewals). */
export type LeaseTransportSource = LeaseTransport | (() => Promise<LeaseTransport>);

/** A lease this node holds, as far as its own clock knows. */
export interface HeldLease {
  connection: string;
  token: number;
  ttlMs: number;
  /** Monotonic (performance.now) time of the request that granted or last renewed it. */
  sentAt: number;
  /** Monotonic time after which the lease must be considered lost. */
  deadline: number;
}

/** Outcome of an acquire. */
export type AcquireResult =
  | { kind: "granted"; lease: HeldLease }
  | { kind: "busy"; retryAfterMs: number; reason: string }
  /** 403 NotEligible (or another 4xx): this node may not own the connection now. */
  | { kind: "refused"; status: number; code: string; message: string }
  /** 503 (not the leader), a timeout or a network error: try again later. */
  | { kind: "unavailable"; message: string; retryAfterMs: number };

/** Outcome of a renewal. */
export type RenewResult =
  | { kind: "renewed"; lease: HeldLease }
  /** 409 LeaseLost: the lease is gone (expired by the database clock, fenced, or taken over). */
  | { kind: "lost"; message: string }
  /** No answer that decides: keep the old deadline and retry until it passes. */
  | { kind: "unavailable"; message: string };

/** The deadline of a lease whose request left at `sentAt` (see the module comment). */
export function leaseDeadline(sentAt: number, ttlMs: number): number {
  return sentAt + ttlMs - vpnDeadlineMarginMs(ttlMs);
}

/** Whether the lease may still be used at monotonic time `now`. */
export function leaseLive(lease: HeldLease, now: number): boolean {
  return now < lease.deadline;
}

/** When the next renewal is due: ttl/3 after the last successful request was sent. */
export function renewDueAt(lease: HeldLease): number {
  return lease.sentAt + lease.ttlMs / 3;
}

/** Options of VpnLeaseClient. */
export interface LeaseClientOptions {
  /** Monotonic clock in milliseconds (default performance.now). */
  now?: () => number;
  /** Idle timeout of one request (default 5 s; a renewal never waits past the deadline). */
  timeoutMs?: number;
}

function unavailable(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Longest busy delay honoured, and longest busy reason kept. */
const MAX_RETRY_AFTER_MS = 3_600_000;
const MAX_REASON_CHARS = 200;

function count(v: unknown, what: string): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) throw new Error(`agent api answered a ${what} that is not a non-negative integer`);
  return v;
}

function objectAnswer(v: unknown): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("agent api answered something that is not a JSON object");
  return v as Record<string, unknown>;
}

/** See the module comment. */
export class VpnLeaseClient {
  private readonly now: () => number;
  private readonly timeoutMs: number;

  constructor(
    private readonly transport: LeaseTransportSource,
    o: LeaseClientOptions = {},
  ) {
    this.now = o.now ?? (() => performance.now());
    this.timeoutMs = o.timeoutMs ?? 5_000;
  }

  private async post(path: string, body: unknown, timeoutMs: number, what: string): Promise<Record<string, unknown>> {
    const t = typeof this.transport === "function" ? await this.transport() : this.transport;
    return objectAnswer((await t.request<unknown>("POST", path, body, {}, { decode: "json", timeoutMs, what })).body);
  }

  /** Asks for the lease of `connection`. */
  async acquire(connection: string): Promise<AcquireResult> {
    const sentAt = this.now();
    try {
      const b = await this.post("/v1/vpn/lease/acquire", { connection }, this.timeoutMs, "vpn lease acquire");
      if (b.granted === true) {
        const token = count(b.token, "token");
        const ttlMs = count(b.ttlMs, "ttlMs");
        return { kind: "granted", lease: { connection, token, ttlMs, sentAt, deadline: leaseDeadline(sentAt, ttlMs) } };
      }
      const retryAfterMs = Math.min(count(b.retryAfterMs ?? 0, "retryAfterMs"), MAX_RETRY_AFTER_MS);
      return { kind: "busy", retryAfterMs, reason: typeof b.reason === "string" ? b.reason.slice(0, MAX_REASON_CHARS) : "held by another node" };
    } catch (err) {
      if (err instanceof AgentApiRequestError && err.status >= 400 && err.status < 500) return { kind: "refused", status: err.status, code: err.code, message: err.message };
      const retry = err instanceof AgentApiRequestError && err.retryAfterSeconds !== undefined ? err.retryAfterSeconds * 1000 : 1000;
      return { kind: "unavailable", message: unavailable(err), retryAfterMs: retry };
    }
  }

  /** Renews a held lease; the new deadline counts from this request's send time. */
  async renew(lease: HeldLease): Promise<RenewResult> {
    const sentAt = this.now();
    if (!leaseLive(lease, sentAt)) return { kind: "lost", message: "the local deadline passed before the renewal was sent" };
    const timeoutMs = Math.max(1, Math.min(this.timeoutMs, lease.deadline - sentAt));
    try {
      const b = await this.post("/v1/vpn/lease/renew", { connection: lease.connection, token: lease.token }, timeoutMs, "vpn lease renew");
      const token = count(b.token, "token");
      const ttlMs = count(b.ttlMs, "ttlMs");
      if (token !== lease.token) return { kind: "lost", message: `renewal answered token ${token}, held ${lease.token}` };
      return { kind: "renewed", lease: { ...lease, ttlMs, sentAt, deadline: leaseDeadline(sentAt, ttlMs) } };
    } catch (err) {
      if (err instanceof AgentApiRequestError && err.status === 409) return { kind: "lost", message: `${err.code}: ${err.message}` };
      return { kind: "unavailable", message: unavailable(err) };
    }
  }

  /** Gives the lease up; true when the control plane ended it. Errors are swallowed (the lease then expires). */
  async release(lease: Pick<HeldLease, "connection" | "token">): Promise<boolean> {
    try {
      const b: Partial<VpnReleaseResponse> = await this.post("/v1/vpn/lease/release", { connection: lease.connection, token: lease.token }, this.timeoutMs, "vpn lease release");
      return b.released === true;
    } catch {
      return false;
    }
  }

  /** Fetches the credential with the held token (throws AgentApiRequestError 403 NotHolder otherwise). */
  async credential(lease: Pick<HeldLease, "connection" | "token">): Promise<string> {
    const b: Partial<Record<keyof VpnCredentialResponse, unknown>> = await this.post("/v1/vpn/credential", { connection: lease.connection, token: lease.token }, this.timeoutMs, "vpn credential");
    if (typeof b.credential !== "string") throw new Error("agent api answered a credential that is not a string");
    if (b.token !== lease.token) throw new Error("agent api answered the credential of another token");
    return b.credential;
  }
}
