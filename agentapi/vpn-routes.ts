/**
 * The VPN lease and credential routes (lib/agent-protocol.ts, docs/vpn.md).
 * The caller is always the certificate's node. Acquire, renew and the
 * credential run under this control plane's authority term (lib/state/vpn.ts):
 * without a current term they answer 503 NotLeader and decide nothing.
 * Connections the node is not allowed to own are refused with one message,
 * whether they exist or not, so another organization's connections cannot
 * be probed. The credential is read from the connection's Secret through the
 * Kubernetes API the control plane serves, only for the current holder with
 * the current unexpired token, and every fetch is audited.
 */
import { Router } from "@koa/router";
import type { CoreV1Api } from "@kubernetes/client-node";
import type Koa from "koa";
import {
  MAX_VPN_BODY_BYTES,
  VPN_CONNECTION_PATTERN,
  type VpnAcquireResponse,
  type VpnCredentialResponse,
  type VpnLeaseRequest,
  type VpnReleaseResponse,
  type VpnRenewResponse,
} from "../lib/agent-protocol.js";
import type { Logger } from "../lib/log.js";
import { INVISIBLE_REASONS, type VpnStore } from "../lib/state/vpn.js";
import { authenticate, type AuthOptions } from "./auth.js";
import { AgentApiError } from "./errors.js";

/** Reads one key of a Secret's data (decoded); undefined when the Secret or key is missing. */
export type SecretReader = (namespace: string, name: string, key: string) => Promise<string | undefined>;

/** A SecretReader over the Kubernetes API (the store the control plane serves, or a real cluster's). */
export function kubeSecretReader(core: CoreV1Api): SecretReader {
  return async (namespace, name, key) => {
    try {
      const s = await core.readNamespacedSecret({ name, namespace });
      const v = s.data?.[key];
      return v === undefined ? undefined : Buffer.from(v, "base64").toString("utf8");
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (code === 404) return undefined;
      throw err;
    }
  };
}

/** Dependencies of the VPN routes. */
export interface VpnRoutesDeps {
  auth: AuthOptions;
  /** The fenced lease store of the in-process controllers; absent: every deciding route answers 503 NotLeader. */
  vpn?: { store: VpnStore; readSecret: SecretReader; onChange?: (connection: string) => void };
  log: Logger;
}

/** Largest credential handed out (a wg-quick text is a few hundred bytes). */
const MAX_CREDENTIAL_BYTES = 64 * 1024;

function bad(message: string): AgentApiError {
  return new AgentApiError(400, "InvalidRequest", message);
}

function objectBody(b: unknown, keys: readonly string[]): Record<string, unknown> {
  if (typeof b !== "object" || b === null || Array.isArray(b)) throw bad("body must be a JSON object");
  const o = b as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!keys.includes(k)) throw bad(`${k.slice(0, 32)} is not a known field`);
  return o;
}

function connectionOf(o: Record<string, unknown>): string {
  const c = o.connection;
  if (typeof c !== "string" || c.length > 317 || !VPN_CONNECTION_PATTERN.test(c)) throw bad("connection must be <namespace>/<name>");
  return c;
}

/** Validates `{ connection }`. */
export function validateAcquire(b: unknown): { connection: string } {
  return { connection: connectionOf(objectBody(b, ["connection"])) };
}

/** Validates `{ connection, token }`. */
export function validateLeaseRequest(b: unknown): VpnLeaseRequest {
  const o = objectBody(b, ["connection", "token"]);
  const connection = connectionOf(o);
  if (typeof o.token !== "number" || !Number.isSafeInteger(o.token) || o.token < 1) throw bad("token must be a positive integer");
  return { connection, token: o.token };
}

function notLeader(): AgentApiError {
  return new AgentApiError(503, "NotLeader", "this control plane instance is not the leader; retry", 2);
}

/** Maps a FencedError to 503 NotLeader. */
async function fenced<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if ((err as Error).name === "FencedError") throw notLeader();
    throw err;
  }
}

/** Builds the router. */
export function vpnRouter(d: VpnRoutesDeps, readJson: (ctx: Koa.Context, limit?: number) => Promise<unknown>): Router {
  const router = new Router();
  const need = (): NonNullable<VpnRoutesDeps["vpn"]> => {
    if (d.vpn === undefined) throw notLeader();
    return d.vpn;
  };

  router.post("/v1/vpn/lease/acquire", async (ctx) => {
    const n = await authenticate(ctx, d.auth);
    const { connection } = validateAcquire(await readJson(ctx, MAX_VPN_BODY_BYTES));
    const v = need();
    const out = await fenced(() => v.store.acquire(connection, n.node));
    if (out.kind === "ineligible") {
      const message = INVISIBLE_REASONS.has(out.reason) ? "no such connection for this node" : `this node may not own the connection: ${out.reason}`;
      throw new AgentApiError(403, "NotEligible", message);
    }
    if (out.kind === "busy") {
      ctx.body = { granted: false, connection, retryAfterMs: out.retryAfterMs, reason: "another node holds the lease" } satisfies VpnAcquireResponse;
      return;
    }
    d.log.info("vpn lease granted", { connection, node: n.node, token: out.token });
    v.onChange?.(connection);
    ctx.body = { granted: true, connection, token: out.token, ttlMs: out.ttlMs, expiresAt: out.expiresAt.toISOString() } satisfies VpnAcquireResponse;
  });

  router.post("/v1/vpn/lease/renew", async (ctx) => {
    const n = await authenticate(ctx, d.auth);
    const req = validateLeaseRequest(await readJson(ctx, MAX_VPN_BODY_BYTES));
    const v = need();
    const out = await fenced(() => v.store.renew(req.connection, n.node, req.token));
    if (out === undefined) throw new AgentApiError(409, "LeaseLost", "this node does not hold the lease with this token, or it expired");
    ctx.body = { token: out.token, ttlMs: out.ttlMs, expiresAt: out.expiresAt.toISOString() } satisfies VpnRenewResponse;
  });

  router.post("/v1/vpn/lease/release", async (ctx) => {
    const n = await authenticate(ctx, d.auth);
    const req = validateLeaseRequest(await readJson(ctx, MAX_VPN_BODY_BYTES));
    const v = need();
    const ended = await v.store.release(req.connection, n.node, req.token);
    if (ended !== undefined) {
      await v.store.auditEnded([ended]).catch((err: unknown) => d.log.warn("vpn release not audited", { connection: req.connection, err }));
      v.onChange?.(req.connection);
    }
    ctx.body = { released: ended !== undefined } satisfies VpnReleaseResponse;
  });

  router.post("/v1/vpn/credential", async (ctx) => {
    const n = await authenticate(ctx, d.auth);
    const req = validateLeaseRequest(await readJson(ctx, MAX_VPN_BODY_BYTES));
    const v = need();
    const where = await fenced(() => v.store.credentialFetch(req.connection, n.node, req.token));
    if (!where.ok) {
      if (where.reason === "NoCredential") throw new AgentApiError(404, "NoCredential", "the connection references no credential Secret");
      throw new AgentApiError(403, "NotHolder", "only the current holder with the current token may fetch the credential");
    }
    const credential = await v.readSecret(where.namespace, where.secretName, where.secretKey);
    if (credential === undefined) throw new AgentApiError(404, "NoCredential", "the credential Secret or its key is missing");
    if (Buffer.byteLength(credential) > MAX_CREDENTIAL_BYTES) throw new AgentApiError(422, "CredentialTooLarge", "the credential is larger than 64 KiB");
    ctx.set("Cache-Control", "no-store");
    ctx.body = { connection: req.connection, token: req.token, credential } satisfies VpnCredentialResponse;
  });

  return router;
}
