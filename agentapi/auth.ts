/**
 * mTLS authentication of agents. The server asks for a client certificate
 * but does not make TLS verify it (enrollment has none yet); routes that
 * need a node use requireNode, which on EVERY request:
 *   1. takes the peer certificate (TLS already proved the peer holds its key),
 *   2. verifies it against the CA of the cluster it names (signature, issuer,
 *      validity, node URI SAN),
 *   3. looks its serial up in PostgreSQL: it must be the node's active
 *      identity and the membership must not be Revoked.
 * Revocation therefore takes effect from the next request on, also on
 * kept-alive connections. The result is ctx.state.node.
 */
import { X509Certificate } from "node:crypto";
import type { TLSSocket } from "node:tls";
import type Koa from "koa";
import { CertificateRejected, claimedNode, verifyNodeCertificate } from "../lib/crypto/x509.js";
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
}

const caCache = new Map<string, X509Certificate>();

async function clusterCa(clusters: ClusterStore, cluster: string): Promise<X509Certificate | undefined> {
  const row = await clusters.get(cluster);
  if (row === undefined) return undefined;
  let ca = caCache.get(row.caFingerprint);
  if (ca === undefined) {
    ca = new X509Certificate(row.caCertPem);
    caCache.set(row.caFingerprint, ca);
  }
  return ca;
}

/** Authenticates the peer certificate of ctx (see the module comment). */
export async function authenticate(ctx: Koa.Context, o: AuthOptions): Promise<AuthenticatedNode> {
  const socket = ctx.req.socket as TLSSocket;
  const peer = typeof socket.getPeerX509Certificate === "function" ? socket.getPeerX509Certificate() : undefined;
  if (peer === undefined) throw new AgentApiError(401, "ClientCertificateRequired", "this endpoint needs a node client certificate");
  const claimed = claimedNode(peer);
  if (claimed === undefined) throw new AgentApiError(401, "CertificateRejected", "certificate names no fabric node");
  const ca = await clusterCa(o.clusters, claimed.cluster);
  if (ca === undefined) throw new AgentApiError(401, "CertificateRejected", `cluster ${claimed.cluster} does not exist`);
  let v;
  try {
    v = verifyNodeCertificate(peer, ca, new Date((o.now ?? Date.now)()), o.graceMs ?? 0);
  } catch (err) {
    if (err instanceof CertificateRejected) throw new AgentApiError(401, "CertificateRejected", err.message);
    throw err;
  }
  const id = await o.nodes.identityBySerial(v.serial);
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
