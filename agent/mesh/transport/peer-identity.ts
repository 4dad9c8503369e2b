/**
 * Who is on the other end of a mesh link. A peer is accepted only when its
 * leaf certificate is signed by this cluster's CA, is within its validity,
 * names a node of this cluster (URI SAN, lib/crypto/x509.ts), that node is
 * authorised by the current verified snapshot, and its public key is the
 * one the snapshot pins for it (certificateFingerprint: sha256 of the SPKI
 * of its active certificate). The checks run in this fixed order and each
 * has its own typed reason, as nebula's ca_pool does; TLS itself proves the
 * peer holds the key.
 *
 * Authorisation is symmetric: a node's snapshot lists its candidates
 * (meshPeers, which it dials) and the nodes whose candidates list it
 * (meshInbound, which it only accepts); either makes a link authorised.
 */
import { X509Certificate } from "node:crypto";
import { CertificateRejected, verifyNodeCertificate } from "../../../lib/crypto/x509.js";
import type { SnapshotPayload } from "../../../lib/snapshot/format.js";

/** Why a peer was refused. PascalCase so it can be reported as a reason. */
export type PeerRefusal = "NoCertificate" | "NotIssuedByClusterCa" | "Expired" | "NotYetValid" | "NoNodeName" | "OtherCluster" | "NotAuthorised" | "PinMismatch" | "WrongNode" | "Malformed";

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

/** What the verified snapshot says of an authorised peer: the SPKI fingerprint its certificate must carry. */
export interface PeerGrant {
  certificateFingerprint: string;
}

/**
 * Answers whether a node may hold a link with this one (from the verified
 * snapshot): false when not; a grant whose pin the certificate must match;
 * true authorises without a pin (tests of the transport alone).
 */
export type Authoriser = (node: string) => boolean | PeerGrant;

/** A verified peer. */
export interface PeerIdentity {
  node: string;
  cluster: string;
  serial: string;
  notAfter: Date;
  /** sha256:<hex> of its certificate's SPKI. */
  publicKeyFingerprint: string;
}

/** Why an established link may no longer stand: no longer authorised, or its key is no longer the pinned one; undefined when it may. */
export function revalidate(id: PeerIdentity, authorised: Authoriser): "NotAuthorised" | "PinMismatch" | undefined {
  const grant = authorised(id.node);
  if (grant === false) return "NotAuthorised";
  if (grant !== true && grant.certificateFingerprint !== id.publicKeyFingerprint) return "PinMismatch";
  return undefined;
}

/**
 * The peers a snapshot authorises, with their pins: its candidates
 * (meshPeers) and the nodes listing it (meshInbound). An entry without a
 * pin authorises nothing.
 */
export function peerGrantsOf(payload: Pick<SnapshotPayload, "meshPeers" | "meshInbound">): Map<string, PeerGrant> {
  const out = new Map<string, PeerGrant>();
  for (const p of [...(payload.meshInbound ?? []), ...payload.meshPeers]) {
    if (typeof p.certificateFingerprint === "string" && p.certificateFingerprint.startsWith("sha256:")) out.set(p.node, { certificateFingerprint: p.certificateFingerprint });
  }
  return out;
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
  const id: PeerIdentity = { node: v.node, cluster: v.cluster, serial: v.serial, notAfter: v.notAfter, publicKeyFingerprint: v.publicKeyFingerprint };
  const refusal = revalidate(id, authorised);
  if (refusal === "NotAuthorised") throw new PeerRefused("NotAuthorised", `node ${v.node} is not authorised`);
  if (refusal === "PinMismatch") throw new PeerRefused("PinMismatch", `node ${v.node} presented key ${v.publicKeyFingerprint}, not the one its snapshot entry pins`);
  return id;
}

/** The DNS SAN a node certificate carries (lib/crypto/x509.ts), used as the QUIC server name. */
export function nodeServerName(cluster: string, node: string): string {
  return `${node}.${cluster}.fabric.internal`;
}
