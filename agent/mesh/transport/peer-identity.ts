/**
 * Who is on the other end of a mesh link. A peer is accepted only when its
 * leaf certificate is signed by this cluster's CA, is within its validity,
 * names a node of this cluster (URI SAN, lib/crypto/x509.ts) and that node is
 * authorised (the peer manager answers from the current verified snapshot).
 * The checks run in this fixed order and each has its own typed reason, as
 * nebula's ca_pool does; TLS itself proves the peer holds the key.
 */
import { X509Certificate } from "node:crypto";
import { CertificateRejected, verifyNodeCertificate } from "../../../lib/crypto/x509.js";

/** Why a peer was refused. PascalCase so it can be reported as a reason. */
export type PeerRefusal = "NoCertificate" | "NotIssuedByClusterCa" | "Expired" | "NotYetValid" | "NoNodeName" | "OtherCluster" | "NotAuthorised" | "WrongNode" | "Malformed";

/** A refused peer certificate. */
export class PeerRefused extends Error {
  override readonly name = "PeerRefused";
  constructor(
    readonly reason: PeerRefusal,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Answers whether a node may hold a link with this one (from the verified snapshot). */
export type Authoriser = (node: string) => boolean;

/** A verified peer. */
export interface PeerIdentity {
  node: string;
  cluster: string;
  serial: string;
  notAfter: Date;
}

/**
 * Verifies a peer's leaf certificate (DER). `expectedNode`, on the dialling
 * side, is the node the caller meant to reach.
 */
export function verifyPeerCertificate(
  leafDer: Uint8Array | undefined,
  ca: X509Certificate,
  cluster: string,
  authorised: Authoriser,
  now: Date,
  expectedNode?: string,
): PeerIdentity {
  if (leafDer === undefined || leafDer.length === 0) throw new PeerRefused("NoCertificate", "peer sent no certificate");
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(leafDer);
  } catch (cause) {
    throw new PeerRefused("Malformed", "peer certificate does not parse", { cause });
  }
  let v;
  try {
    v = verifyNodeCertificate(cert, ca, now);
  } catch (err) {
    if (!(err instanceof CertificateRejected)) throw err;
    const reason: PeerRefusal = /expired/.test(err.message) ? "Expired" : /not valid yet/.test(err.message) ? "NotYetValid" : /names no fabric node/.test(err.message) ? "NoNodeName" : "NotIssuedByClusterCa";
    throw new PeerRefused(reason, `peer certificate refused: ${err.message}`, { cause: err });
  }
  if (v.cluster !== cluster) throw new PeerRefused("OtherCluster", `peer certificate names cluster ${v.cluster}`);
  if (expectedNode !== undefined && v.node !== expectedNode) throw new PeerRefused("WrongNode", `peer certificate names node ${v.node}, expected ${expectedNode}`);
  if (!authorised(v.node)) throw new PeerRefused("NotAuthorised", `node ${v.node} is not authorised`);
  return { node: v.node, cluster: v.cluster, serial: v.serial, notAfter: v.notAfter };
}

/** The DNS SAN a node certificate carries (lib/crypto/x509.ts), used as the QUIC server name. */
export function nodeServerName(cluster: string, node: string): string {
  return `${node}.${cluster}.fabric.internal`;
}
