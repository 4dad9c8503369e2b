/**
 * Certificate building with node-forge (runtime signing elsewhere uses
 * Node's crypto). Used for the API server's serving certificate; the cluster
 * authorities build on the same helpers.
 */
import { randomBytes } from "node:crypto";
import forge from "node-forge";

/** A PEM key pair with its certificate. */
export interface CertBundle {
  certPem: string;
  keyPem: string;
}

/** A positive DER serial number (first byte non-zero and < 0x80), hex encoded. */
export function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = ((b[0] ?? 1) & 0x7f) | 0x01;
  return b.toString("hex");
}

function generateRsaKeys(bits = 2048): forge.pki.rsa.KeyPair {
  return forge.pki.rsa.generateKeyPair({ bits, e: 0x10001 });
}

/** An unsigned certificate for publicKey with a random serial, valid from a minute ago for validDays. */
function newCertificate(publicKey: forge.pki.PublicKey, validDays: number): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = randomSerial();
  const now = new Date();
  cert.validity.notBefore = new Date(now.getTime() - 60_000);
  cert.validity.notAfter = new Date(now.getTime() + validDays * 86_400_000);
  return cert;
}

/** Creates a self-signed certificate authority. */
export function createCertificateAuthority(commonName: string, validDays = 3650): CertBundle {
  const keys = generateRsaKeys();
  const cert = newCertificate(keys.publicKey, validDays);
  const attrs = [{ name: "commonName", value: commonName }];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.setExtensions([
    { name: "basicConstraints", cA: true, critical: true },
    { name: "keyUsage", keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: "subjectKeyIdentifier" },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: forge.pki.privateKeyToPem(keys.privateKey) };
}

/** Issues a TLS server certificate for DNS names and IP addresses, signed by `ca`. */
export function issueServingCertificate(ca: CertBundle, commonName: string, dnsNames: string[], ips: string[], validDays = 365): CertBundle {
  const keys = generateRsaKeys();
  const caCert = forge.pki.certificateFromPem(ca.certPem);
  const caKey = forge.pki.privateKeyFromPem(ca.keyPem);
  const cert = newCertificate(keys.publicKey, validDays);
  cert.setSubject([{ name: "commonName", value: commonName }]);
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    { name: "basicConstraints", cA: false },
    { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
    { name: "extKeyUsage", serverAuth: true },
    {
      name: "subjectAltName",
      altNames: [...dnsNames.map((value) => ({ type: 2, value })), ...ips.map((ip) => ({ type: 7, ip }))],
    },
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: forge.pki.privateKeyToPem(keys.privateKey) };
}

/** The notAfter of a PEM certificate. */
export function certificateNotAfter(certPem: string): Date {
  return forge.pki.certificateFromPem(certPem).validity.notAfter;
}
