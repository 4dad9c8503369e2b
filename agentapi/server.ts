/**
 * The agent-facing API: a Koa HTTPS server in the control plane process.
 * It asks for client certificates without requiring them (enrollment comes
 * before any certificate); routes that need a node authenticate it with
 * auth.ts on every request. Its serving certificate comes from the agent API
 * CA, one per database (table agent_api_ca, key sealed under the KEK, see
 * loadAgentApiCredentials), so every control-plane process on a database
 * chains to the same CA; it is separate from the cluster CAs, which sign node
 * certificates. Agents pin that CA by its public key hash (`--ca-hash
 * sha256:...`, like kubeadm's discovery hash). It serves the enrollment
 * routes (enroll.ts) and, for nodes with a certificate, the sync routes
 * (node-routes.ts: snapshot long poll, heartbeats, status reports).
 */
import { X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import https from "node:https";
import { isIP, type AddressInfo } from "node:net";
import { join } from "node:path";
import type { CustomObjectsApi } from "@kubernetes/client-node";
import Koa from "koa";
import type { Registry } from "prom-client";
import type pg from "pg";
import { createEcCertificateAuthority, issueEcServingCertificate, keyMatchesCertificate, pkcs8DerToPem, privateKeyToPkcs8Der } from "../lib/crypto/ec-certs.js";
import { AGENT_API_MAX_JSON_DEPTH, MAX_ENROLL_BODY_BYTES } from "../lib/agent-protocol.js";
import { kekFileOf, loadKek, open, seal, type Kek } from "../lib/crypto/kek.js";
import { JsonLimitError, parseJsonWithLimits, type JsonLimitCode } from "../lib/json-limits.js";
import type { CertBundle } from "../lib/crypto/pki.js";
import { caPinOf } from "../lib/crypto/x509.js";
import type { NodeCertificateIssuer } from "../lib/enrollment/issuer.js";
import type { EventRecorderLike } from "../lib/kube/events.js";
import type { Logger } from "../lib/log.js";
import { AgentApiCaStore, agentApiCaAad, type AgentApiCaRow } from "../lib/state/agent-api-ca.js";
import { ClusterStore, EnrollmentStore, NodeStore, type Fence } from "../lib/state/index.js";
import { AuthCache } from "./auth.js";
import { enrollRouter } from "./enroll.js";
import { HeartbeatBatcher } from "./heartbeat-batcher.js";
import { nodeRouter } from "./node-routes.js";
import { artifactRouter } from "./artifact-routes.js";
import { ArtifactStore } from "../lib/state/artifacts.js";
import { vpnRouter, type SecretReader } from "./vpn-routes.js";
import { VpnStore } from "../lib/state/vpn.js";
import { SnapshotFeed } from "./snapshot-feed.js";
import { AgentApiError, errorMiddleware } from "./errors.js";
import { RateLimiter, type RateLimit } from "./rate-limit.js";
import { agentApiMetrics } from "./metrics.js";

/** Options of startAgentApi. */
export interface AgentApiOptions {
  stateDir: string;
  host: string;
  port: number;
  /** A pool of its own, so enrollment bursts cannot starve the kube API's storage. */
  pool: pg.Pool;
  api: CustomObjectsApi;
  /** Audit actor of enrollment records. */
  actor: string;
  log: Logger;
  /** Extra DNS names and IPs for the serving certificate. */
  serverNames?: string[];
  /** Per client address (default 200 burst, 50/s). */
  rateLimit?: RateLimit;
  /** Failed token checks per client address (default 20 burst, 0.2/s). */
  failureRateLimit?: RateLimit;
  /** VPN leases under the in-process controllers' authority term; absent: the VPN routes answer 503 NotLeader. */
  vpn?: { fence: Fence; readSecret: SecretReader; onChange?: (connection: string) => void };
  /** Renewal through the in-process controllers; absent: renewals answer 503. */
  renewal?: { issuer: NodeCertificateIssuer; nodes: NodeStore; onRenewed?: (node: string) => void };
  /** How long after expiry a certificate may still renew itself (default 7 days). */
  renewGraceMs?: number;
  /** Heartbeat interval told to agents, seconds (default 10). */
  heartbeatIntervalSeconds?: number;
  /** Where the agent API's metrics go (the process's /metrics registry); none when absent. */
  metrics?: Registry;
  /** Kubernetes Events about refused enrollments (on the JoinToken, or the cluster named for an unknown token). */
  events?: EventRecorderLike;
  /** Seals the shared agent API CA key; default FABRIC_KEK, else `<state-dir>/pki/kek` (created if missing, like the controllers'). */
  kek?: Kek;
}

/** Counters of a running agent API. */
export interface AgentApiStats {
  /** Heartbeat rows written and the statements that wrote them. */
  heartbeatsWritten: number;
  heartbeatBatches: number;
  /** Authentication lookups (identity status, cluster CA) answered from memory / read from PostgreSQL. */
  authCacheHits: number;
  authCacheMisses: number;
}

/** A running agent API. */
export interface AgentApi {
  url: string;
  port: number;
  /** PEM of the agent API CA. */
  caPem: string;
  /** `sha256:<hex>` of the CA's public key: the value of --ca-hash. */
  caHash: string;
  /** Snapshot long polls held right now. */
  pendingPolls(): number;
  /** Counters for metrics, tests and benchmarks. */
  stats(): AgentApiStats;
  stop(): Promise<void>;
}

function writeAtomic(path: string, data: string, mode: number): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode });
  renameSync(tmp, path);
}

function readPair(dir: string, cert: string, key: string): CertBundle | undefined {
  const c = join(dir, cert);
  const k = join(dir, key);
  if (!existsSync(c) || !existsSync(k)) return undefined;
  return { certPem: readFileSync(c, "utf8"), keyPem: readFileSync(k, "utf8") };
}

/** Options of loadAgentApiCredentials. */
export interface AgentApiCredentialOptions {
  /** `<state-dir>/pki/agentapi`: this process's serving certificate, and the CA of installs from before the shared one. */
  dir: string;
  /** Extra DNS names and IPs for the serving certificate. */
  names: string[];
  pool: pg.Pool;
  kek: Kek;
  /** Recorded as the creator of the CA row. */
  actor: string;
  log: Logger;
  /** Re-issue the serving certificate when it expires within this (default 30 days). */
  renewBeforeMs?: number;
}

/** The agent API CA of the database and this process's serving certificate. */
export interface AgentApiCredentials {
  ca: CertBundle;
  serving: CertBundle;
  /** How the stored CA came to be (by this process or another one). */
  caOrigin: AgentApiCaRow["origin"];
}

/** A stored CA with its key opened and checked against its certificate and hash. */
function openStoredCa(row: AgentApiCaRow, kek: Kek): CertBundle {
  if (row.sealed.kekId !== kek.id) {
    throw new Error(
      `the agent API CA in the database is sealed with key-encryption key ${row.sealed.kekId}, but this process loaded ${kek.id}: every control plane on one database needs the same KEK (FABRIC_KEK)`,
    );
  }
  const keyPem = pkcs8DerToPem(open(kek, row.sealed, agentApiCaAad(row.caHash)));
  if (caPinOf(row.certPem) !== row.caHash || !keyMatchesCertificate(row.certPem, keyPem)) throw new Error("the agent API CA row is inconsistent (certificate, hash and key do not match)");
  return { certPem: row.certPem, keyPem };
}

/**
 * The agent API CA is one per database (table agent_api_ca, key sealed
 * under the KEK), so every control-plane process on it presents certificates
 * that chain to the CA agents pinned. The first process to start stores it:
 * the CA found in `dir` (ca.crt + ca.key, written by versions before the
 * shared CA: agents pinned it, so it is imported, never replaced), or else a
 * new ECDSA P-256 CA. Concurrent first starts are safe: the first insert
 * wins, the others read it back. Each process then keeps its own serving
 * certificate in `dir`, re-issued from the shared CA when missing, not issued
 * by that CA, not covering the names, or close to expiry.
 */
export async function loadAgentApiCredentials(o: AgentApiCredentialOptions): Promise<AgentApiCredentials> {
  mkdirSync(o.dir, { recursive: true, mode: 0o700 });
  const store = new AgentApiCaStore(o.pool);
  const legacy = readPair(o.dir, "ca.crt", "ca.key");
  let row = await store.get();
  if (row === undefined) {
    let candidate: CertBundle;
    let origin: AgentApiCaRow["origin"];
    if (legacy !== undefined) {
      if (!keyMatchesCertificate(legacy.certPem, legacy.keyPem) || !new X509Certificate(legacy.certPem).ca) {
        throw new Error(`${join(o.dir, "ca.crt")} and ca.key are not a CA certificate and its key: fix or remove them (agents pinned the CA they hold)`);
      }
      candidate = legacy;
      origin = "imported";
    } else {
      candidate = createEcCertificateAuthority("access-fabric-agent-api-ca");
      origin = "generated";
    }
    const caHash = caPinOf(candidate.certPem);
    const sealed = seal(o.kek, privateKeyToPkcs8Der(candidate.keyPem), agentApiCaAad(caHash));
    const r = await store.insertIfAbsent({ certPem: candidate.certPem, caHash, sealed, origin, createdBy: o.actor });
    row = r.row;
    if (r.inserted) o.log.info("stored the agent API CA in the database", { caHash, origin });
  }
  const ca = openStoredCa(row, o.kek);
  if (legacy !== undefined && caPinOf(legacy.certPem) !== row.caHash) {
    o.log.warn("the agent API CA in the state directory is not the database's; it is ignored (agents that pinned it must re-join)", { file: join(o.dir, "ca.crt"), ignored: caPinOf(legacy.certPem), caHash: row.caHash });
  }

  const ips = ["127.0.0.1", "::1", ...o.names.filter((n) => isIP(n) !== 0)];
  const dns = ["localhost", "fabric-agent-api", ...o.names.filter((n) => isIP(n) === 0)];
  const caCert = new X509Certificate(ca.certPem);
  const renewBefore = Date.now() + (o.renewBeforeMs ?? 30 * 86_400_000);
  const usable = (s: CertBundle): boolean => {
    try {
      const c = new X509Certificate(s.certPem);
      return (
        c.checkIssued(caCert) &&
        c.verify(caCert.publicKey) &&
        keyMatchesCertificate(s.certPem, s.keyPem) &&
        new Date(c.validTo).getTime() > renewBefore &&
        dns.every((d) => c.checkHost(d, { wildcards: false }) !== undefined) &&
        ips.every((ip) => c.checkIP(ip) !== undefined)
      );
    } catch {
      return false;
    }
  };
  let serving = readPair(o.dir, "serving.crt", "serving.key");
  if (serving === undefined || !usable(serving)) {
    serving = issueEcServingCertificate(ca, "access-fabric-agent-api", dns, ips);
    writeAtomic(join(o.dir, "serving.key"), serving.keyPem, 0o600);
    writeAtomic(join(o.dir, "serving.crt"), serving.certPem, 0o644);
  }
  return { ca, serving, caOrigin: row.origin };
}

const BODY_REFUSALS: Record<JsonLimitCode, string> = {
  TooLarge: "body is too large",
  NotUtf8: "body is not UTF-8",
  NotJson: "body is not JSON",
  TooDeep: `body is nested deeper than ${AGENT_API_MAX_JSON_DEPTH} levels`,
  NulCharacter: "body holds a string with U+0000",
  LoneSurrogate: "body holds a string with a lone UTF-16 surrogate",
};

/**
 * Reads a JSON body of at most `limit` bytes within the limits of
 * lib/agent-protocol.ts (events, not an async iterator: this runs for every
 * heartbeat). Refusals are AgentApiErrors: 413 TooLarge, else 400
 * InvalidRequest naming the problem, never the content.
 */
function readJson(ctx: Koa.Context, limit = MAX_ENROLL_BODY_BYTES): Promise<unknown> {
  const req = ctx.req;
  return new Promise((resolve, reject) => {
    let first: Buffer | undefined;
    let more: Buffer[] | undefined;
    let n = 0;
    const cleanup = (): void => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("close", onClose);
    };
    const onData = (c: Buffer): void => {
      n += c.length;
      if (n > limit) {
        cleanup();
        req.resume();
        reject(new AgentApiError(413, "TooLarge", `body larger than ${limit} bytes`));
        return;
      }
      if (first === undefined) first = c;
      else (more ??= [first]).push(c);
    };
    const onEnd = (): void => {
      cleanup();
      const body = more !== undefined ? Buffer.concat(more) : first;
      try {
        resolve(parseJsonWithLimits(body ?? Buffer.alloc(0), { maxBytes: limit, maxDepth: AGENT_API_MAX_JSON_DEPTH, wellFormedStrings: true }));
      } catch (err) {
        if (!(err instanceof JsonLimitError)) {
          reject(err);
          return;
        }
        reject(err.code === "TooLarge" ? new AgentApiError(413, "TooLarge", `body larger than ${limit} bytes`) : new AgentApiError(400, "InvalidRequest", BODY_REFUSALS[err.code]));
      }
    };
    // A client that hangs up mid-body: its doing, not a server error (nobody reads the answer).
    const onError = (): void => {
      cleanup();
      reject(new AgentApiError(400, "InvalidRequest", "request body cut off"));
    };
    const onClose = (): void => {
      if (req.complete) return;
      cleanup();
      reject(new AgentApiError(400, "InvalidRequest", "request body cut off"));
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("close", onClose);
  });
}

const noFence: Fence = {
  runFenced: () => Promise.reject(Object.assign(new Error("agent api holds no authority term"), { name: "FencedError" })),
  heldTerm: () => undefined,
};

/** Starts the agent API (see the module comment). */
export async function startAgentApi(o: AgentApiOptions): Promise<AgentApi> {
  const creds = await loadAgentApiCredentials({
    dir: join(o.stateDir, "pki", "agentapi"),
    names: [o.host, ...(o.serverNames ?? [])].filter((h) => h !== "0.0.0.0" && h !== "127.0.0.1"),
    pool: o.pool,
    kek: o.kek ?? loadKek({ file: kekFileOf(o.stateDir), createIfMissing: true }),
    actor: o.actor,
    log: o.log,
  });
  const clusters = new ClusterStore(o.pool, noFence, o.actor);
  const nodes = o.renewal?.nodes ?? new NodeStore(o.pool, noFence, o.actor);
  const authCache = new AuthCache(o.pool, o.log.with({ part: "agent-auth" }));
  const app = new Koa();
  app.on("error", (err: NodeJS.ErrnoException) => {
    // An agent that goes away mid-download (cut connection, refused length) is normal.
    if (err.code === "ERR_STREAM_PREMATURE_CLOSE" || err.code === "ECONNRESET" || err.code === "EPIPE") return;
    // Node's HTTP parser refusing what a client sent (it answers 400 itself).
    if (err.code?.startsWith("HPE_") === true) {
      o.log.info("agent api refused a malformed request", { code: err.code, err });
      return;
    }
    o.log.warn("agent api stream error", { err });
  });
  const metrics = o.metrics === undefined ? undefined : agentApiMetrics(o.metrics);
  if (metrics !== undefined) app.use(metrics.middleware());
  app.use(errorMiddleware(o.log));
  const router = enrollRouter(
    {
      enrollment: new EnrollmentStore(o.pool, o.actor),
      clusters,
      nodes,
      api: o.api,
      serverCaPem: creds.ca.certPem,
      requests: new RateLimiter(o.rateLimit ?? { burst: 200, perSecond: 50 }),
      failures: new RateLimiter(o.failureRateLimit ?? { burst: 20, perSecond: 0.2 }),
      renewal: o.renewal,
      renewGraceMs: o.renewGraceMs ?? 7 * 86_400_000,
      log: o.log,
      authCache,
      events: o.events,
    },
    (ctx) => readJson(ctx),
  );
  app.use(router.routes());
  app.use(router.allowedMethods());
  const feed = new SnapshotFeed(o.pool, o.log.with({ part: "snapshot-feed" }));
  await feed.start();
  await authCache.start();
  const heartbeats = new HeartbeatBatcher(o.pool, o.log.with({ part: "heartbeats" }));
  if (metrics !== undefined) metrics.sources = { longPolls: () => feed.pendingPolls(), heartbeatRowsWritten: () => heartbeats.written };
  const sync = nodeRouter({ pool: o.pool, auth: { clusters, nodes, cache: authCache }, feed, heartbeats, heartbeatIntervalSeconds: o.heartbeatIntervalSeconds }, (ctx, limit) => readJson(ctx, limit));
  app.use(sync.routes());
  app.use(sync.allowedMethods());
  const artifacts = artifactRouter({ pool: o.pool, auth: { clusters, nodes, cache: authCache }, store: new ArtifactStore(o.pool, o.stateDir), log: o.log.with({ part: "artifacts" }) });
  app.use(artifacts.routes());
  app.use(artifacts.allowedMethods());
  const vpn = vpnRouter(
    {
      auth: { clusters, nodes, cache: authCache },
      vpn: o.vpn === undefined ? undefined : { store: new VpnStore(o.pool, o.vpn.fence, o.actor), readSecret: o.vpn.readSecret, onChange: o.vpn.onChange },
      log: o.log.with({ part: "vpn" }),
    },
    (ctx, limit) => readJson(ctx, limit),
  );
  app.use(vpn.routes());
  app.use(vpn.allowedMethods());
  app.use((ctx) => {
    throw new AgentApiError(404, "NotFound", `no route ${ctx.method} ${ctx.path}`);
  });
  const server = https.createServer({ cert: creds.serving.certPem, key: creds.serving.keyPem, requestCert: true, rejectUnauthorized: false }, app.callback());
  // A connection keeps the certificate it was opened with: auth.ts verifies it once per connection.
  server.on("secureConnection", (tls: import("node:tls").TLSSocket) => tls.disableRenegotiation());
  // closeAllConnections() only knows connections that carried an HTTP request.
  const sockets = new Set<import("node:net").Socket>();
  server.on("connection", (sock: import("node:net").Socket) => {
    sockets.add(sock);
    sock.once("close", () => sockets.delete(sock));
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, o.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const host = o.host === "0.0.0.0" ? "127.0.0.1" : o.host;
  return {
    url: `https://${host}:${port}`,
    port,
    caPem: creds.ca.certPem,
    caHash: caPinOf(creds.ca.certPem),
    pendingPolls: () => feed.pendingPolls(),
    stats: () => ({ heartbeatsWritten: heartbeats.written, heartbeatBatches: heartbeats.batches, authCacheHits: authCache.hits, authCacheMisses: authCache.misses }),
    async stop() {
      await feed.stop();
      await heartbeats.stop();
      await authCache.stop();
      server.closeAllConnections();
      for (const sock of sockets) sock.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
