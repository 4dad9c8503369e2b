/**
 * Certificate authorities and TLS serving certificates built with Node's
 * crypto and the certificate builder of x509.ts: ECDSA P-256 keys, which Node
 * generates in about a millisecond where node-forge's JavaScript RSA-2048
 * takes a few hundred. Signing works with any CA key Node's crypto loads, so
 * an RSA CA made by pki.ts (PKCS#1 PEM) issues through here as well. Used by
 * the agent API (agentapi/server.ts); pki.ts keeps its forge builders.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate } from "node:crypto";
import { isIPv4, isIPv6 } from "node:net";
import { bool, octets, oid, seq, tlv } from "./der.js";
import type { CertBundle } from "./pki.js";
import { randomSerial } from "./pki.js";
import { extension, issuerOf, keyIdOf, OID, signCertificate, subjectName } from "./x509.js";

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
  const now = Date.now();
  const subject = subjectName(commonName);
  const certPem = signCertificate(
    {
      serialHex: randomSerial(),
      issuer: subject,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + validDays * 86_400_000),
      subject,
      spkiDer: spki,
      extensions: [
        extension(OID.basicConstraints, true, seq(bool(true))),
        // keyCertSign, cRLSign, digitalSignature: bits 5, 6, 0 -> 0x86, 1 unused bit.
        extension(OID.keyUsage, true, Buffer.from([0x03, 0x02, 0x01, 0x86])),
        extension(OID.subjectKeyId, false, octets(keyIdOf(spki))),
      ],
    },
    privateKey,
  );
  return { certPem, keyPem: privateKey.export({ format: "pem", type: "pkcs8" }).toString() };
}

/**
 * Issues a TLS server certificate with a fresh ECDSA P-256 key for DNS names
 * and IP addresses, signed by `ca` (whose key may be RSA, EC or Ed25519).
 */
export function issueEcServingCertificate(ca: CertBundle, commonName: string, dnsNames: string[], ips: string[], validDays = 365): CertBundle {
  const caKey = createPrivateKey(ca.keyPem);
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const spki = publicKey.export({ format: "der", type: "spki" });
  const now = Date.now();
  const san = seq(...dnsNames.map((d) => tlv(0x82, Buffer.from(d, "ascii"))), ...ips.map((ip) => tlv(0x87, ipBytes(ip))));
  const certPem = signCertificate(
    {
      serialHex: randomSerial(),
      issuer: issuerOf(ca.certPem).subject,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + validDays * 86_400_000),
      subject: subjectName(commonName),
      spkiDer: spki,
      extensions: [
        extension(OID.basicConstraints, false, seq()),
        // digitalSignature only (bit 0): the key is ECDSA, so no keyEncipherment.
        extension(OID.keyUsage, true, Buffer.from([0x03, 0x02, 0x07, 0x80])),
        extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth))),
        extension(OID.subjectAltName, false, san),
        extension(OID.subjectKeyId, false, octets(keyIdOf(spki))),
      ],
    },
    caKey,
  );
  return { certPem, keyPem: privateKey.export({ format: "pem", type: "pkcs8" }).toString() };
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
