/**
 * Enrollment routes of the agent API: the CA for pinning, enrollment (token
 * checks and the use count in one transaction, then the JoinRequest object
 * through the kube API), polling with proof of possession, and the mTLS
 * identity routes (whoami, renewal). Every refusal is an ErrorBody with a
 * stable code; a refusal creates nothing.
 */
import { createPublicKey } from "node:crypto";
import type { CustomObjectsApi } from "@kubernetes/client-node";
import type Koa from "koa";
import { Router } from "@koa/router";
import { RESOURCES } from "../lib/api/types.generated.js";
import { CsrError, parseCsr } from "../lib/crypto/x509.js";
import type { NodeCertificateIssuer } from "../lib/enrollment/issuer.js";
import {
  POP_MAX_SKEW_MS,
  POP_SIGNATURE_HEADER,
  POP_TIMESTAMP_HEADER,
  verifyPoll,
  type EnrollRequest,
  type EnrollResponse,
  type PollResponse,
  type RenewResponse,
} from "../lib/enrollment/protocol.js";
import { unsupportedRoles } from "../lib/enrollment/roles.js";
import { parseToken } from "../lib/enrollment/token.js";
import type { EventRecorderLike } from "../lib/kube/events.js";
import type { Logger } from "../lib/log.js";
import type { ClusterStore, EnrollmentStore, NodeStore, RefusalCode } from "../lib/state/index.js";
import { authenticate, type AuthCache, type AuthOptions } from "./auth.js";
import { AgentApiError } from "./errors.js";
import { recordRefusal } from "./refusals.js";
import type { RateLimiter } from "./rate-limit.js";

/** Dependencies of the enrollment routes. */
export interface EnrollRoutesDeps {
  enrollment: EnrollmentStore;
  clusters: ClusterStore;
  nodes: NodeStore;
  api: CustomObjectsApi;
  /** PEM of the agent API's own CA (served for pinning). */
  serverCaPem: string;
  requests: RateLimiter;
  failures: RateLimiter;
  /** Issues renewals; undefined when no controllers run in this process. */
  renewal?: { issuer: NodeCertificateIssuer; nodes: NodeStore; onRenewed?: (node: string) => void };
  renewGraceMs: number;
  log: Logger;
  now?: () => number;
  /** The agent API's authentication cache. */
  authCache?: AuthCache;
  /** Kubernetes Events about refused enrollments (refusals are logged either way). */
  events?: EventRecorderLike;
}

const NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const FINGERPRINT = /^sha256:[a-f0-9]{64}$/;
const CAPABILITY = /^[a-z0-9]([-_a-z0-9]*[a-z0-9])?$/;

const STATUS: Record<RefusalCode, number> = {
  TokenMalformed: 400,
  TokenInvalid: 401,
  TokenExpired: 403,
  TokenRevoked: 403,
  TokenExhausted: 403,
  TokenWrongCluster: 403,
  RoleNotAllowed: 403,
  ClusterNotFound: 403,
  EnrollmentPaused: 403,
  CapabilityMissing: 403,
  KeyInUse: 409,
};

function bad(message: string): AgentApiError {
  return new AgentApiError(400, "InvalidRequest", message);
}

function stringList(v: unknown, field: string, pattern: RegExp, max: number): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.length > max) throw bad(`${field} must be a list of at most ${max} names`);
  const out: string[] = [];
  for (const x of v) {
    if (typeof x !== "string" || x.length > 63 || !pattern.test(x)) throw bad(`${field} holds an invalid name: ${JSON.stringify(x)}`);
    if (!out.includes(x)) out.push(x);
  }
  return out.sort();
}

/** Validates an enrollment body; throws InvalidRequest naming the field. */
export function validateEnrollRequest(body: unknown): EnrollRequest {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw bad("body must be a JSON object");
  const b = body as Record<string, unknown>;
  if (typeof b.token !== "string") throw bad("token is required");
  if (b.cluster !== undefined && (typeof b.cluster !== "string" || !NAME.test(b.cluster) || b.cluster.length > 63)) throw bad("cluster is not a valid cluster name");
  if (typeof b.nodeName !== "string" || b.nodeName.length > 63 || !NAME.test(b.nodeName)) throw bad("nodeName must be a DNS label (lowercase letters, digits, '-', at most 63)");
  if (typeof b.hostFingerprint !== "string" || !FINGERPRINT.test(b.hostFingerprint)) throw bad("hostFingerprint must be sha256: and 64 hex digits");
  if (typeof b.csr !== "string" || b.csr.length > 16384) throw bad("csr must be a PEM certificate request");
  const facts = b.facts ?? {};
  if (typeof facts !== "object" || facts === null || Array.isArray(facts)) throw bad("facts must be an object");
  if (JSON.stringify(facts).length > 16384) throw bad("facts are larger than 16 KiB");
  return {
    token: b.token,
    cluster: b.cluster as string | undefined,
    nodeName: b.nodeName,
    hostFingerprint: b.hostFingerprint,
    csr: b.csr,
    capabilities: stringList(b.capabilities, "capabilities", CAPABILITY, 128),
    requestedRoles: stringList(b.requestedRoles, "requestedRoles", NAME, 64),
    facts: facts as Record<string, unknown>,
  };
}

/** Deterministic JoinRequest name: node name plus the key fingerprint's first 10 hex digits. */
export function joinRequestName(nodeName: string, publicKeyFingerprint: string): string {
  return `${nodeName.slice(0, 50)}-${publicKeyFingerprint.slice("sha256:".length, "sha256:".length + 10)}`;
}

function clientAddress(ctx: Koa.Context): string {
  return ctx.req.socket.remoteAddress ?? "unknown";
}

function rateLimit(limiter: RateLimiter, key: string): void {
  const wait = limiter.take(key);
  if (wait > 0) throw new AgentApiError(429, "RateLimited", `too many requests; retry in ${wait}s`, wait);
}

/** Builds the router. */
export function enrollRouter(d: EnrollRoutesDeps, readJson: (ctx: Koa.Context) => Promise<unknown>): Router {
  const router = new Router();
  const res = RESOURCES.JoinRequest;
  const authOpts: AuthOptions = { clusters: d.clusters, nodes: d.nodes, now: d.now, cache: d.authCache };

  router.get("/v1/enroll/ca", (ctx) => {
    ctx.type = "application/x-pem-file";
    ctx.body = d.serverCaPem;
  });

  router.post("/v1/enroll", async (ctx) => {
    const addr = clientAddress(ctx);
    rateLimit(d.requests, addr);
    if (!d.failures.peek(addr)) throw new AgentApiError(429, "RateLimited", "too many failed enrollments from this address; retry later", 60);
    const body = validateEnrollRequest(await readJson(ctx));
    const tok = parseToken(body.token);
    if (tok === undefined) {
      d.failures.take(addr);
      await recordRefusal({ code: "TokenMalformed", message: "malformed token", nodeName: body.nodeName, cluster: body.cluster, address: addr }, d);
      throw new AgentApiError(400, "TokenMalformed", "token must look like <6 chars>.<32 chars> of [a-z0-9]");
    }
    let csr;
    try {
      csr = parseCsr(body.csr);
    } catch (err) {
      if (err instanceof CsrError) throw new AgentApiError(400, "CsrInvalid", err.message);
      throw err;
    }
    const out = await d.enrollment.recordEnrollment({
      tokenId: tok.id,
      secret: tok.secret,
      cluster: body.cluster,
      nodeName: body.nodeName,
      hostFingerprint: body.hostFingerprint,
      publicKeyFingerprint: csr.fingerprint,
      publicKeyDer: csr.spkiDer,
      csrPem: body.csr,
      capabilities: body.capabilities,
      requestedRoles: body.requestedRoles,
      facts: body.facts,
      requestName: () => joinRequestName(body.nodeName, csr.fingerprint),
    });
    if (out.kind === "refused") {
      if (out.code === "TokenInvalid") d.failures.take(addr);
      await recordRefusal({ code: out.code, message: out.message, nodeName: body.nodeName, cluster: body.cluster, token: out.token, address: addr }, d);
      throw new AgentApiError(STATUS[out.code], out.code, out.message);
    }
    const r = out.request;
    const obj = {
      apiVersion: `${res.group}/${res.version}`,
      kind: "JoinRequest",
      metadata: { name: r.name, labels: { "accessfabric.io/cluster": r.cluster, "accessfabric.io/jointoken": r.tokenName } },
      spec: {
        cluster: r.cluster,
        nodeName: r.nodeName,
        hostFingerprint: r.hostFingerprint,
        csr: r.csrPem,
        capabilities: r.capabilities,
        facts: r.facts,
        requestedRoles: r.requestedRoles,
        tokenRef: { name: r.tokenName },
        ...(r.nodeGroup !== null ? { nodeGroup: r.nodeGroup } : {}),
      },
    };
    try {
      await d.api.createClusterCustomObject({ group: res.group, version: res.version, plural: res.plural, body: obj });
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (code !== 409) {
        if (out.kind === "created") await d.enrollment.undoEnrollment(r.name, "creating the JoinRequest object failed");
        d.log.warn("creating join request object failed", { joinRequest: r.name, err });
        throw new AgentApiError(503, "Unavailable", "the control plane could not record the request; retry", 5);
      }
    }
    d.log.info(out.kind === "created" ? "join request received" : "join request replayed", { joinRequest: r.name, cluster: r.cluster, node: r.nodeName });
    ctx.status = out.kind === "created" ? 201 : 200;
    ctx.body = { joinRequest: r.name, cluster: r.cluster, node: `${r.cluster}.${r.nodeName}`, replayed: out.kind === "replayed" } satisfies EnrollResponse;
  });

  router.get("/v1/enroll/requests/:name", async (ctx) => {
    rateLimit(d.requests, clientAddress(ctx));
    const name = ctx.params.name ?? "";
    const ts = Number(ctx.get(POP_TIMESTAMP_HEADER));
    const sig = ctx.get(POP_SIGNATURE_HEADER);
    const now = (d.now ?? Date.now)();
    if (!Number.isFinite(ts) || sig === "") throw new AgentApiError(401, "ProofRequired", `sign the poll with the enrollment key (${POP_TIMESTAMP_HEADER}, ${POP_SIGNATURE_HEADER})`);
    if (Math.abs(now - ts) > POP_MAX_SKEW_MS) throw new AgentApiError(401, "ProofStale", "poll timestamp is more than 5 minutes off the server clock");
    const row = await d.enrollment.request(name);
    if (row === undefined) throw new AgentApiError(404, "NotFound", "no such join request (it may have been garbage-collected)");
    if (!verifyPoll(name, ts, sig, createPublicKey({ key: row.publicKeyDer, format: "der", type: "spki" }))) {
      throw new AgentApiError(401, "ProofInvalid", "poll signature does not verify with the request's key");
    }
    const body: PollResponse = { state: row.state, cluster: row.cluster, node: `${row.cluster}.${row.nodeName}` };
    if (row.reason !== null) body.reason = row.reason;
    const unsupported = unsupportedRoles(row.requestedRoles, row.capabilities);
    if (unsupported.length > 0) body.unsupportedRoles = unsupported;
    if (row.state === "Approved" && row.certificatePem !== null) {
      const cl = await d.clusters.get(row.cluster);
      if (cl === undefined) throw new AgentApiError(404, "NotFound", `cluster ${row.cluster} no longer exists`);
      body.certificate = row.certificatePem;
      body.caBundle = cl.caCertPem;
      body.snapshotKey = { keyId: cl.snapshotKeyId, publicKey: cl.snapshotPublicKey };
    }
    ctx.body = body;
  });

  router.get("/v1/identity", async (ctx) => {
    const n = await authenticate(ctx, authOpts);
    ctx.body = { cluster: n.cluster, node: n.node, serial: n.serial, membership: n.membership, notAfter: n.notAfter.toISOString() };
  });

  router.post("/v1/identity/renew", async (ctx) => {
    const n = await authenticate(ctx, { ...authOpts, graceMs: d.renewGraceMs });
    const body = await readJson(ctx);
    const csrPem = typeof body === "object" && body !== null ? (body as { csr?: unknown }).csr : undefined;
    if (typeof csrPem !== "string") throw bad("csr is required");
    let csr;
    try {
      csr = parseCsr(csrPem);
    } catch (err) {
      if (err instanceof CsrError) throw new AgentApiError(400, "CsrInvalid", err.message);
      throw err;
    }
    const r = d.renewal;
    if (r === undefined) throw new AgentApiError(503, "NotLeader", "no certificate authority runs in this control plane process; retry another", 5);
    const identity = await r.issuer.issue(n.cluster, n.node, csr.spkiDer);
    let ok: boolean;
    try {
      ok = await r.nodes.renew(n.node, n.serial, identity);
    } catch (err) {
      if ((err as Error).name === "FencedError") throw new AgentApiError(503, "NotLeader", "this control plane instance is not the leader; retry", 2);
      throw err;
    }
    if (!ok) throw new AgentApiError(409, "CertificateSuperseded", "the presented certificate is no longer the node's active identity");
    // The superseded certificate is refused from now on (the NOTIFY would tell a moment later).
    d.authCache?.forgetNode(n.node);
    r.onRenewed?.(n.node);
    const cl = await d.clusters.get(n.cluster);
    d.log.info("node certificate renewed", { node: n.node, serial: identity.serial, previous: n.serial });
    ctx.body = { certificate: identity.certificatePem, caBundle: cl?.caCertPem ?? "", notAfter: identity.notAfter.toISOString() } satisfies RenewResponse;
  });

  return router;
}
