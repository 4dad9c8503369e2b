/**
 * mTLS authentication of agents. The server asks for a client certificate
 * but does not make TLS verify it (enrollment has none yet); routes that
 * need a node call authenticate, which on every request establishes:
 *   1. the peer certificate (TLS already proved the peer holds its key) is
 *      signed by the CA of the cluster it names, is within its validity,
 *      and names a node (URI SAN);
 *   2. its serial is the node's active identity in PostgreSQL and the
 *      membership is not Revoked.
 * Revocation therefore takes effect from the next request on, also on
 * kept-alive connections.
 *
 * With an AuthCache (the agent API always has one), neither step costs a
 * signature check or a query per request: a connection's certificate is
 * verified once (the server disables TLS renegotiation, so a connection
 * never changes its certificate; only the validity window is re-checked per
 * request, and the cluster's CA must still be the one it was verified
 * with), and identity status, membership and each cluster's CA are kept in
 * memory and forgotten when PostgreSQL announces a change
 * (`agent_auth_changed`, sent by triggers at commit whatever wrote it:
 * migrations/009_agent_auth_notify.sql). While the LISTEN connection is
 * down, status and CA are read from PostgreSQL on every request, as
 * without a cache. The result is ctx.state.node.
 */
import { X509Certificate } from "node:crypto";
import type { TLSSocket } from "node:tls";
import type Koa from "koa";
import type pg from "pg";
import { PgListener } from "../lib/db/listener.js";
import { CertificateRejected, claimedNode, verifyNodeCertificate } from "../lib/crypto/x509.js";
import type { Logger } from "../lib/log.js";
import type { ClusterStore, NodeRow, NodeStore } from "../lib/state/index.js";
import { AgentApiError } from "./errors.js";

/** The authenticated node of a request. */
export interface AuthenticatedNode {
  cluster: string;
  /** FabricNode name. */
  node: string;
  serial: string;
  membership: NodeRow["membership"];
  notAfter: Date;
}

/** State added by requireNode. */
export interface NodeState {
  node: AuthenticatedNode;
}

/** Options of requireNode. */
export interface AuthOptions {
  clusters: ClusterStore;
  nodes: NodeStore;
  /** Accept certificates expired this long ago (renewal only; default 0). */
  graceMs?: number;
  now?: () => number;
  /** Per-connection verification and identity/CA caches (see the module comment). */
  cache?: AuthCache;
}

/** The channel of migrations/009_agent_auth_notify.sql; payload `node:<name>` or `cluster:<name>`. */
export const AGENT_AUTH_CHANNEL = "agent_auth_changed";

/** What a connection's certificate was verified to be (immutable facts of the certificate). */
interface VerifiedPeer {
  cluster: string;
  node: string;
  serial: string;
  notBefore: number;
  notAfter: Date;
  publicKeyFingerprint: string;
  /** The cluster CA it was verified with. */
  caFingerprint: string;
}

interface ClusterCa {
  ca: X509Certificate;
  fingerprint: string;
}

type IdentityStatus = NonNullable<Awaited<ReturnType<NodeStore["identityBySerial"]>>>;

/** Parsed CA certificates by fingerprint (immutable). */
const caByFingerprint = new Map<string, X509Certificate>();

function parsedCa(pem: string, fingerprint: string): X509Certificate {
  let ca = caByFingerprint.get(fingerprint);
  if (ca === undefined) {
    ca = new X509Certificate(pem);
    if (caByFingerprint.size > 1000) caByFingerprint.clear();
    caByFingerprint.set(fingerprint, ca);
  }
  return ca;
}

/** See the module comment. */
export class AuthCache {
  private readonly peers = new WeakMap<object, VerifiedPeer>();
  private readonly identities = new Map<string, IdentityStatus>();
  private readonly serialsOf = new Map<string, Set<string>>();
  private readonly clusters = new Map<string, ClusterCa>();
  /** Bumped by every invalidation: a lookup started before one is not stored. */
  private generation = 0;
  private readonly listener: PgListener;
  private readonly stopListening = new AbortController();
  private running: Promise<void> | undefined;
  /** Lookups answered from memory / read from PostgreSQL (metrics and tests). */
  hits = 0;
  misses = 0;

  constructor(pool: pg.Pool, log: Logger, retryMs = 2000, probeMs = 30_000) {
    this.listener = new PgListener({
      connection: pool,
      channels: [AGENT_AUTH_CHANNEL],
      onNotification: (m) => this.onNotification(m.payload ?? ""),
      // Whatever was read before the LISTEN (or while it was down) may already be stale.
      onConnect: () => this.clear(),
      onDisconnect: () => this.clear(),
      meanwhile: "checking PostgreSQL on every request",
      log,
      retryMs,
      probeMs,
    });
  }

  /** True while the LISTEN connection is up: only then are status and CA served from memory. */
  get listening(): boolean {
    return this.listener.connected;
  }

  /** Starts listening (the cache stays off until the LISTEN is in place); resolves after the first attempt. */
  async start(): Promise<void> {
    this.running = this.listener.run(this.stopListening.signal);
    await this.listener.firstAttempt;
  }

  private onNotification(payload: string): void {
    if (payload.startsWith("node:")) this.forgetNode(payload.slice(5));
    else if (payload.startsWith("cluster:")) this.forgetCluster(payload.slice(8));
    else this.clear();
  }

  /** Forgets the identities of a node (the next request reads them again). */
  forgetNode(node: string): void {
    this.generation++;
    const serials = this.serialsOf.get(node);
    if (serials === undefined) return;
    for (const s of serials) this.identities.delete(s);
    this.serialsOf.delete(node);
  }

  /** Forgets a cluster's CA. */
  forgetCluster(cluster: string): void {
    this.generation++;
    this.clusters.delete(cluster);
  }

  /** Forgets everything but the per-connection verifications (which do not depend on PostgreSQL). */
  clear(): void {
    this.generation++;
    this.identities.clear();
    this.serialsOf.clear();
    this.clusters.clear();
  }

  /** @internal */
  peer(socket: object): VerifiedPeer | undefined {
    return this.peers.get(socket);
  }

  /** @internal */
  rememberPeer(socket: object, p: VerifiedPeer): void {
    this.peers.set(socket, p);
  }

  /** @internal */
  forgetPeer(socket: object): void {
    this.peers.delete(socket);
  }

  /** The current CA of a cluster (memory, else PostgreSQL). */
  async clusterCa(store: ClusterStore, cluster: string): Promise<ClusterCa | undefined> {
    if (this.listening) {
      const hit = this.clusters.get(cluster);
      if (hit !== undefined) {
        this.hits++;
        return hit;
      }
    }
    this.misses++;
    const gen = this.generation;
    const row = await store.get(cluster);
    if (row === undefined) return undefined;
    const out = { ca: parsedCa(row.caCertPem, row.caFingerprint), fingerprint: row.caFingerprint };
    if (gen === this.generation && this.listening) this.clusters.set(cluster, out);
    return out;
  }

  /** Status and membership of a certificate serial (memory, else PostgreSQL). Unknown serials are not remembered. */
  async identity(store: NodeStore, serial: string): Promise<IdentityStatus | undefined> {
    if (this.listening) {
      const hit = this.identities.get(serial);
      if (hit !== undefined) {
        this.hits++;
        return hit;
      }
    }
    this.misses++;
    const gen = this.generation;
    const id = await store.identityBySerial(serial);
    if (id !== undefined && gen === this.generation && this.listening) {
      if (this.identities.size >= 1_000_000) this.clear();
      else {
        this.identities.set(serial, id);
        let s = this.serialsOf.get(id.node);
        if (s === undefined) this.serialsOf.set(id.node, (s = new Set()));
        s.add(serial);
      }
    }
    return id;
  }

  /** Stops listening. */
  async stop(): Promise<void> {
    this.stopListening.abort();
    await this.running;
    this.clear();
  }
}

async function clusterCaUncached(clusters: ClusterStore, cluster: string): Promise<ClusterCa | undefined> {
  const row = await clusters.get(cluster);
  return row === undefined ? undefined : { ca: parsedCa(row.caCertPem, row.caFingerprint), fingerprint: row.caFingerprint };
}

/** Verifies the connection's certificate (signature, issuer, node SAN; validity is checked per request by the caller). */
async function verifyPeer(socket: TLSSocket, o: AuthOptions, now: number): Promise<VerifiedPeer> {
  const peer = typeof socket.getPeerX509Certificate === "function" ? socket.getPeerX509Certificate() : undefined;
  if (peer === undefined) throw new AgentApiError(401, "ClientCertificateRequired", "this endpoint needs a node client certificate");
  const claimed = claimedNode(peer);
  if (claimed === undefined) throw new AgentApiError(401, "CertificateRejected", "certificate names no fabric node");
  const ca = o.cache !== undefined ? await o.cache.clusterCa(o.clusters, claimed.cluster) : await clusterCaUncached(o.clusters, claimed.cluster);
  if (ca === undefined) throw new AgentApiError(401, "CertificateRejected", `cluster ${claimed.cluster} does not exist`);
  let v;
  try {
    // Expiry is the caller's check (its grace differs per route); "not valid yet" is final here.
    v = verifyNodeCertificate(peer, ca.ca, new Date(now), Number.POSITIVE_INFINITY);
  } catch (err) {
    if (err instanceof CertificateRejected) throw new AgentApiError(401, "CertificateRejected", err.message);
    throw err;
  }
  return {
    cluster: v.cluster,
    node: v.node,
    serial: v.serial,
    notBefore: v.notBefore.getTime(),
    notAfter: v.notAfter,
    publicKeyFingerprint: v.publicKeyFingerprint,
    caFingerprint: ca.fingerprint,
  };
}

/** Authenticates the peer certificate of ctx (see the module comment). */
export async function authenticate(ctx: Koa.Context, o: AuthOptions): Promise<AuthenticatedNode> {
  const socket = ctx.req.socket as TLSSocket;
  const now = (o.now ?? Date.now)();
  const cache = o.cache;
  let v = cache?.peer(socket);
  if (v !== undefined && cache !== undefined) {
    // Still the cluster's CA? (A replaced cluster has a new one.)
    const ca = await cache.clusterCa(o.clusters, v.cluster);
    if (ca === undefined || ca.fingerprint !== v.caFingerprint) {
      cache.forgetPeer(socket);
      v = undefined;
    }
  }
  if (v === undefined) {
    v = await verifyPeer(socket, o, now);
    cache?.rememberPeer(socket, v);
  }
  if (now < v.notBefore - 60_000) throw new AgentApiError(401, "CertificateRejected", "certificate is not valid yet");
  if (now > v.notAfter.getTime() + (o.graceMs ?? 0)) throw new AgentApiError(401, "CertificateRejected", "certificate has expired");
  const id = cache !== undefined ? await cache.identity(o.nodes, v.serial) : await o.nodes.identityBySerial(v.serial);
  if (id === undefined || id.node !== v.node || id.cluster !== v.cluster || id.publicKeyFingerprint !== v.publicKeyFingerprint) {
    throw new AgentApiError(401, "CertificateRejected", "certificate is not a known node identity");
  }
  if (id.status === "revoked" || id.membership === "Revoked") throw new AgentApiError(403, "IdentityRevoked", "this node identity has been revoked");
  if (id.status !== "active") throw new AgentApiError(401, "CertificateSuperseded", "certificate was superseded by a renewal; use the new one");
  return { cluster: v.cluster, node: v.node, serial: v.serial, membership: id.membership, notAfter: v.notAfter };
}

/** Koa middleware setting ctx.state.node, or refusing the request. */
export function requireNode(o: AuthOptions): Koa.Middleware {
  return async (ctx, next) => {
    (ctx.state as NodeState).node = await authenticate(ctx, o);
    await next();
  };
}
