/**
 * Certificate authorities and TLS serving certificates built with Node's
 * crypto and the DER helpers of der.ts: ECDSA P-256 keys, which Node
 * generates in about a millisecond where node-forge's JavaScript RSA-2048
 * takes a few hundred. Signing works with any CA key Node's crypto loads, so
 * an RSA CA made by pki.ts (PKCS#1 PEM) issues through here as well. Used by
 * the agent API (agentapi/server.ts); pki.ts keeps its forge builders.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, X509Certificate, type KeyObject } from "node:crypto";
import { isIPv4, isIPv6 } from "node:net";
import { bits, bool, children, ctx, int, intBytes, nullDer, octets, oid, readTlv, seq, set, time, tlv, utf8 } from "./der.js";
import type { CertBundle } from "./pki.js";
import { randomSerial } from "./pki.js";
import { pemToDer } from "./x509.js";

const OID = {
  commonName: "2.5.4.3",
  ecdsaSha256: "1.2.840.10045.4.3.2",
  ed25519: "1.3.101.112",
  rsaSha256: "1.2.840.113549.1.1.11",
  basicConstraints: "2.5.29.19",
  keyUsage: "2.5.29.15",
  extKeyUsage: "2.5.29.37",
  subjectAltName: "2.5.29.17",
  subjectKeyId: "2.5.29.14",
  serverAuth: "1.3.6.1.5.5.7.3.1",
} as const;

function algorithmFor(key: KeyObject): { algId: Buffer; digest: string | null } {
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

function pem(label: string, der: Buffer): string {
  const b64 = der.toString("base64").replace(/.{1,64}/g, "$&\n");
  return `-----BEGIN ${label}-----\n${b64}-----END ${label}-----\n`;
}

function cnName(cn: string): Buffer {
  return seq(set(seq(oid(OID.commonName), utf8(cn))));
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? seq(oid(id), bool(true), octets(value)) : seq(oid(id), octets(value));
}

/** SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2 method 1; node-forge computes the same). */
function keyIdOf(spkiDer: Buffer): Buffer {
  const keyBits = children(readTlv(spkiDer).content)[1];
  return createHash("sha1")
    .update(keyBits === undefined ? spkiDer : keyBits.content.subarray(1))
    .digest();
}

/** The subject Name DER of a PEM certificate. */
function subjectOf(certPem: string): Buffer {
  const tbs = children(readTlv(pemToDer(certPem, "CERTIFICATE")).content)[0];
  if (tbs === undefined) throw new Error("certificate without tbsCertificate");
  const f = children(tbs.content);
  const subject = f[(f[0]?.tag === 0xa0 ? 1 : 0) + 4];
  if (subject === undefined) throw new Error("certificate without subject");
  return Buffer.from(subject.raw);
}

/** The 4 or 16 bytes of a textual IP address. */
export function ipBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split(".").map((p) => Number.parseInt(p, 10)));
  if (!isIPv6(ip)) throw new Error(`not an IP address: ${ip}`);
  let text = ip.split("%")[0] ?? ip;
  // A trailing dotted quad becomes two hex groups.
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (quad?.[1] !== undefined) {
    const b = ipBytes(quad[1]);
    text = text.slice(0, -quad[1].length) + `${((b[0] ?? 0) * 256 + (b[1] ?? 0)).toString(16)}:${((b[2] ?? 0) * 256 + (b[3] ?? 0)).toString(16)}`;
  }
  const [head = "", tail] = text.split("::");
  const groups = (s: string): string[] => (s === "" ? [] : s.split(":"));
  const h = groups(head);
  const t = tail === undefined ? [] : groups(tail);
  const all = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(Number.parseInt(g, 16), i * 2));
  return out;
}

/** A new self-signed ECDSA P-256 certificate authority (key as PKCS#8 PEM). */
export function createEcCertificateAuthority(commonName: string, validDays = 3650): CertBundle {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const spki = publicKey.export({ format: "der", type: "spki" });
  const { algId, digest } = algorithmFor(privateKey);
  const now = Date.now();
  const subject = cnName(commonName);
  const extensions = seq(
    extension(OID.basicConstraints, true, seq(bool(true))),
    // keyCertSign, cRLSign, digitalSignature: bits 5, 6, 0 -> 0x86, 1 unused bit.
    extension(OID.keyUsage, true, Buffer.from([0x03, 0x02, 0x01, 0x86])),
    extension(OID.subjectKeyId, false, octets(keyIdOf(spki))),
  );
  const tbs = seq(
    ctx(0, int(2)),
    intBytes(Buffer.from(randomSerial(), "hex")),
    algId,
    subject,
    seq(time(new Date(now - 60_000)), time(new Date(now + validDays * 86_400_000))),
    subject,
    spki,
    ctx(3, extensions),
  );
  const sig = sign(digest, tbs, privateKey);
  return { certPem: pem("CERTIFICATE", seq(tbs, algId, bits(sig))), keyPem: privateKey.export({ format: "pem", type: "pkcs8" }).toString() };
}

/**
 * Issues a TLS server certificate with a fresh ECDSA P-256 key for DNS names
 * and IP addresses, signed by `ca` (whose key may be RSA, EC or Ed25519).
 */
export function issueEcServingCertificate(ca: CertBundle, commonName: string, dnsNames: string[], ips: string[], validDays = 365): CertBundle {
  const caKey = createPrivateKey(ca.keyPem);
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const spki = publicKey.export({ format: "der", type: "spki" });
  const { algId, digest } = algorithmFor(caKey);
  const now = Date.now();
  const san = seq(...dnsNames.map((d) => tlv(0x82, Buffer.from(d, "ascii"))), ...ips.map((ip) => tlv(0x87, ipBytes(ip))));
  const extensions = seq(
    extension(OID.basicConstraints, false, seq()),
    // digitalSignature only (bit 0): the key is ECDSA, so no keyEncipherment.
    extension(OID.keyUsage, true, Buffer.from([0x03, 0x02, 0x07, 0x80])),
    extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth))),
    extension(OID.subjectAltName, false, san),
    extension(OID.subjectKeyId, false, octets(keyIdOf(spki))),
  );
  const tbs = seq(
    ctx(0, int(2)),
    intBytes(Buffer.from(randomSerial(), "hex")),
    algId,
    subjectOf(ca.certPem),
    seq(time(new Date(now - 60_000)), time(new Date(now + validDays * 86_400_000))),
    cnName(commonName),
    spki,
    ctx(3, extensions),
  );
  const sig = sign(digest, tbs, caKey);
  return { certPem: pem("CERTIFICATE", seq(tbs, algId, bits(sig))), keyPem: privateKey.export({ format: "pem", type: "pkcs8" }).toString() };
}

/** True when keyPem is the private key of certPem's public key. */
export function keyMatchesCertificate(certPem: string, keyPem: string): boolean {
  try {
    const fromKey = createPublicKey(createPrivateKey(keyPem)).export({ format: "der", type: "spki" });
    const fromCert = new X509Certificate(certPem).publicKey.export({ format: "der", type: "spki" });
    return fromKey.equals(fromCert);
  } catch {
    return false;
  }
}

/** PKCS#8 DER of a PEM private key of any format Node's crypto reads (PKCS#1 RSA from node-forge included). */
export function privateKeyToPkcs8Der(keyPem: string): Buffer {
  return createPrivateKey(keyPem).export({ format: "der", type: "pkcs8" });
}

/** PKCS#8 PEM of a PKCS#8 DER private key. */
export function pkcs8DerToPem(der: Buffer): string {
  return createPrivateKey({ key: der, format: "der", type: "pkcs8" }).export({ format: "pem", type: "pkcs8" }).toString();
}
