/**
 * PKCS#10 requests and X.509 certificates for node identities, for any key
 * type Node's crypto supports (ECDSA P-256 is what agents generate; Ed25519
 * and RSA work too). node-forge parses and builds only RSA keys, so the
 * structures are built with the small DER helpers in der.ts and signed with
 * Node's crypto, which is also ~50x faster than forge's JS RSA signing
 * (see docs/benchmarks.md, "Enrollment").
 *
 * Node certificates carry the cluster and node in a URI SAN
 * `spiffe://accessfabric.io/cluster/<cluster>/node/<fabricnode>`, plus a DNS
 * SAN `<fabricnode>.<cluster>.fabric.internal` for QUIC server names.
 */
import { createHash, createPublicKey, sign, verify, X509Certificate, type KeyObject } from "node:crypto";
import { bits, bool, children, ctx, int, intBytes, nullDer, octets, oid, oidText, readTlv, seq, set, time, tlv, utf8 } from "./der.js";

/** Object identifiers of the algorithms, name attributes and extensions used here and in ec-certs.ts. */
export const OID = {
  commonName: "2.5.4.3",
  organization: "2.5.4.10",
  ecdsaSha256: "1.2.840.10045.4.3.2",
  ed25519: "1.3.101.112",
  rsaSha256: "1.2.840.113549.1.1.11",
  basicConstraints: "2.5.29.19",
  keyUsage: "2.5.29.15",
  extKeyUsage: "2.5.29.37",
  subjectAltName: "2.5.29.17",
  subjectKeyId: "2.5.29.14",
  authorityKeyId: "2.5.29.35",
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
} as const;

/** The URI SAN prefix naming a node identity. */
export const NODE_URI_PREFIX = "spiffe://accessfabric.io/cluster/";

/** The URI SAN of a node certificate. */
export function nodeUri(cluster: string, node: string): string {
  return `${NODE_URI_PREFIX}${cluster}/node/${node}`;
}

/** Parses a node URI SAN; undefined when it is not one. */
export function parseNodeUri(uri: string): { cluster: string; node: string } | undefined {
  if (!uri.startsWith(NODE_URI_PREFIX)) return undefined;
  const m = /^([a-z0-9-]+)\/node\/([a-z0-9.-]+)$/.exec(uri.slice(NODE_URI_PREFIX.length));
  if (m === null || m[1] === undefined || m[2] === undefined) return undefined;
  return { cluster: m[1], node: m[2] };
}

/** The signature algorithm identifier and the digest for a key. */
export function algorithmFor(key: KeyObject): { algId: Buffer; digest: string | null } {
  switch (key.asymmetricKeyType) {
    case "ec":
      return { algId: seq(oid(OID.ecdsaSha256)), digest: "sha256" };
    case "ed25519":
      return { algId: seq(oid(OID.ed25519)), digest: null };
    case "rsa":
      return { algId: seq(oid(OID.rsaSha256), nullDer()), digest: "sha256" };
    default:
      throw new Error(`unsupported key type ${String(key.asymmetricKeyType)}`);
  }
}

function digestOfAlgorithm(algOid: string): string | null {
  switch (algOid) {
    case OID.ecdsaSha256:
    case OID.rsaSha256:
      return "sha256";
    case OID.ed25519:
      return null;
    default:
      throw new Error(`unsupported signature algorithm ${algOid}`);
  }
}

/** A Name of O=org (when given) and CN=cn. */
export function subjectName(cn: string, org?: string): Buffer {
  const rdns = [];
  if (org !== undefined) rdns.push(set(seq(oid(OID.organization), utf8(org))));
  rdns.push(set(seq(oid(OID.commonName), utf8(cn))));
  return seq(...rdns);
}

/** PEM text of a DER block, 64 base64 characters a line. */
export function pem(label: string, der: Buffer): string {
  const b64 = der.toString("base64").replace(/.{1,64}/g, "$&\n");
  return `-----BEGIN ${label}-----\n${b64}-----END ${label}-----\n`;
}

/** DER of the first PEM block with this label. */
export function pemToDer(text: string, label: string): Buffer {
  const re = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+)-----END ${label}-----`);
  const m = re.exec(text);
  if (m === null || m[1] === undefined) throw new Error(`no ${label} PEM block`);
  return Buffer.from(m[1].replace(/\s+/g, ""), "base64");
}

/** sha256:<hex> of a SubjectPublicKeyInfo DER: the public key fingerprint used everywhere (and by --ca-hash). */
export function spkiFingerprint(spkiDer: Buffer): string {
  return `sha256:${createHash("sha256").update(spkiDer).digest("hex")}`;
}

/** sha256:<hex> of a public key's SPKI. */
export function publicKeyFingerprint(key: KeyObject): string {
  return spkiFingerprint(key.export({ format: "der", type: "spki" }));
}

/** sha256:<hex> of a PEM certificate's public key (kubeadm's --discovery-token-ca-cert-hash). */
export function caPinOf(certPem: string): string {
  return publicKeyFingerprint(new X509Certificate(certPem).publicKey);
}

/** Builds a PEM PKCS#10 request for the key pair, subject CN=commonName, signed with privateKey. */
export function createCsr(privateKey: KeyObject, publicKey: KeyObject, commonName: string): string {
  const spki = publicKey.export({ format: "der", type: "spki" });
  const info = seq(int(0), subjectName(commonName), spki, ctx(0));
  const { algId, digest } = algorithmFor(privateKey);
  const sig = sign(digest, info, privateKey);
  return pem("CERTIFICATE REQUEST", seq(info, algId, bits(sig)));
}

/** A parsed, signature-checked certificate request. */
export interface ParsedCsr {
  publicKey: KeyObject;
  spkiDer: Buffer;
  /** sha256:<hex> of the SPKI. */
  fingerprint: string;
  /** The subject CN, if any. */
  commonName: string | undefined;
}

/** Thrown for a request that is malformed or whose signature does not verify. */
export class CsrError extends Error {}

/**
 * Parses a PEM CSR and verifies its self-signature: proof that whoever made
 * it holds the private key of the public key inside.
 */
export function parseCsr(csrPem: string): ParsedCsr {
  let der: Buffer;
  try {
    der = pemToDer(csrPem, "CERTIFICATE REQUEST");
  } catch (cause) {
    throw new CsrError("csr is not a PEM certificate request", { cause });
  }
  try {
    const outer = readTlv(der);
    if (outer.tag !== 0x30 || outer.end !== der.length) throw new Error("not a single SEQUENCE");
    const [info, alg, sig] = children(outer.content);
    if (info === undefined || alg === undefined || sig === undefined || sig.tag !== 0x03) throw new Error("missing fields");
    const infoParts = children(info.content);
    const subject = infoParts[1];
    const spki = infoParts[2];
    if (subject === undefined || spki === undefined) throw new Error("missing subject or key");
    const algOid = children(alg.content)[0];
    if (algOid === undefined || algOid.tag !== 0x06) throw new Error("missing algorithm");
    const digest = digestOfAlgorithm(oidText(algOid.content));
    const publicKey = createPublicKey({ key: Buffer.from(spki.raw), format: "der", type: "spki" });
    if (sig.content[0] !== 0) throw new Error("signature has unused bits");
    const ok = verify(digest, info.raw, publicKey, sig.content.subarray(1));
    if (!ok) throw new CsrError("csr signature does not verify: the caller does not hold the private key");
    let commonName: string | undefined;
    for (const rdn of children(subject.content)) {
      for (const atv of children(rdn.content)) {
        const [t, v] = children(atv.content);
        if (t !== undefined && v !== undefined && oidText(t.content) === OID.commonName) commonName = v.content.toString("utf8");
      }
    }
    const spkiDer = Buffer.from(spki.raw);
    return { publicKey, spkiDer, fingerprint: spkiFingerprint(spkiDer), commonName };
  } catch (err) {
    if (err instanceof CsrError) throw err;
    throw new CsrError(`csr is malformed: ${(err as Error).message}`, { cause: err });
  }
}

/** What a node certificate says. */
export interface NodeCertificateInput {
  caCertPem: string;
  caKey: KeyObject;
  /** The node's public key (SPKI DER, from its CSR). */
  spkiDer: Buffer;
  cluster: string;
  /** FabricNode name. */
  node: string;
  /** Positive serial, lowercase hex (lib/crypto/pki.ts randomSerial). */
  serialHex: string;
  notBefore: Date;
  notAfter: Date;
}

/** SHA-1 of the subjectPublicKey bits of a SubjectPublicKeyInfo (RFC 5280 4.2.1.2 method 1; node-forge computes the same). */
export function keyIdOf(spkiDer: Buffer): Buffer {
  const keyBits = children(readTlv(spkiDer).content)[1];
  return createHash("sha1")
    .update(keyBits === undefined ? spkiDer : keyBits.content.subarray(1))
    .digest();
}

/** The issuer's subject Name DER and subject key id, read from its certificate. */
export function issuerOf(caCertPem: string): { subject: Buffer; keyId: Buffer } {
  const der = pemToDer(caCertPem, "CERTIFICATE");
  const cert = children(readTlv(der).content);
  const tbs = cert[0];
  if (tbs === undefined) throw new Error("ca certificate without tbsCertificate");
  const f = children(tbs.content);
  const offset = f[0]?.tag === 0xa0 ? 1 : 0; // [0] version present
  const subject = f[offset + 4];
  const spki = f[offset + 5];
  if (subject === undefined || spki === undefined) throw new Error("ca certificate without subject");
  return { subject: Buffer.from(subject.raw), keyId: keyIdOf(spki.raw) };
}

/** One certificate extension. */
export function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? seq(oid(id), bool(true), octets(value)) : seq(oid(id), octets(value));
}

/** The fields of a v3 certificate that differ from one certificate to another. */
export interface CertificateFields {
  /** Positive serial, lowercase hex. */
  serialHex: string;
  /** Issuer Name DER: the signing CA's subject, or `subject` itself when self-signed. */
  issuer: Buffer;
  notBefore: Date;
  notAfter: Date;
  /** Subject Name DER. */
  subject: Buffer;
  /** The subject's SubjectPublicKeyInfo DER. */
  spkiDer: Buffer;
  /** Extension DERs in order (see {@link extension}). */
  extensions: Buffer[];
}

/** Builds the tbsCertificate, signs it with the issuer's key (any type {@link algorithmFor} knows) and returns PEM. */
export function signCertificate(f: CertificateFields, issuerKey: KeyObject): string {
  const { algId, digest } = algorithmFor(issuerKey);
  const tbs = seq(
    ctx(0, int(2)),
    intBytes(Buffer.from(f.serialHex, "hex")),
    algId,
    f.issuer,
    seq(time(f.notBefore), time(f.notAfter)),
    f.subject,
    f.spkiDer,
    ctx(3, seq(...f.extensions)),
  );
  const sig = sign(digest, tbs, issuerKey);
  return pem("CERTIFICATE", seq(tbs, algId, bits(sig)));
}

/** Issues a node certificate (client and server auth) signed by the cluster CA; returns PEM. */
export function issueNodeCertificate(i: NodeCertificateInput): string {
  const issuer = issuerOf(i.caCertPem);
  const uri = nodeUri(i.cluster, i.node);
  const dns = `${i.node}.${i.cluster}.fabric.internal`;
  const san = seq(tlv(0x86, Buffer.from(uri, "ascii")), tlv(0x82, Buffer.from(dns, "ascii")));
  return signCertificate(
    {
      serialHex: i.serialHex,
      issuer: issuer.subject,
      notBefore: i.notBefore,
      notAfter: i.notAfter,
      subject: subjectName(i.node, i.cluster),
      spkiDer: i.spkiDer,
      extensions: [
        extension(OID.basicConstraints, true, seq()),
        // digitalSignature only (bit 0): 0x03 0x02 0x07 0x80.
        extension(OID.keyUsage, true, Buffer.from([0x03, 0x02, 0x07, 0x80])),
        extension(OID.extKeyUsage, false, seq(oid(OID.clientAuth), oid(OID.serverAuth))),
        extension(OID.subjectAltName, true, san),
        extension(OID.subjectKeyId, false, octets(keyIdOf(i.spkiDer))),
        extension(OID.authorityKeyId, false, seq(tlv(0x80, issuer.keyId))),
      ],
    },
    i.caKey,
  );
}

/** What a node certificate names, after checking it was issued by caCertPem and is within its validity. */
export interface VerifiedNodeCert {
  cluster: string;
  node: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
  publicKeyFingerprint: string;
}

/** Thrown when a certificate is not a valid node certificate of the cluster. */
export class CertificateRejected extends Error {}

/** The cluster and node a certificate claims, unverified (to pick the CA to verify with). */
export function claimedNode(cert: X509Certificate): { cluster: string; node: string } | undefined {
  const san = cert.subjectAltName ?? "";
  for (const part of san.split(/,\s*/)) {
    if (part.startsWith("URI:")) {
      const parsed = parseNodeUri(part.slice(4));
      if (parsed !== undefined) return parsed;
    }
  }
  return undefined;
}

/**
 * Verifies a node certificate against its cluster CA: signature, issuer,
 * validity (with `graceMs` allowed past notAfter, for renewal only) and the
 * node URI SAN. Revocation is the caller's business (PostgreSQL).
 */
export function verifyNodeCertificate(cert: X509Certificate, ca: X509Certificate, now: Date, graceMs = 0): VerifiedNodeCert {
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) throw new CertificateRejected("certificate is not signed by the cluster CA");
  const notBefore = new Date(cert.validFrom);
  const notAfter = new Date(cert.validTo);
  if (now.getTime() < notBefore.getTime() - 60_000) throw new CertificateRejected("certificate is not valid yet");
  if (now.getTime() > notAfter.getTime() + graceMs) throw new CertificateRejected("certificate has expired");
  const claimed = claimedNode(cert);
  if (claimed === undefined) throw new CertificateRejected("certificate names no fabric node");
  return { ...claimed, serial: cert.serialNumber.toLowerCase(), notBefore, notAfter, publicKeyFingerprint: publicKeyFingerprint(cert.publicKey) };
}
