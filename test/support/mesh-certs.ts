/**
 * Fixture builders for mesh transport tests and benchmarks: a cluster CA
 * (ECDSA P-256, as lib/crypto/ec-certs.ts makes them) and node certificates
 * issued with the production issuer (lib/crypto/x509.ts issueNodeCertificate),
 * plus the forgeries the transport must refuse.
 */
import { createPrivateKey, generateKeyPairSync } from "node:crypto";
import { createEcCertificateAuthority } from "../../lib/crypto/ec-certs.js";
import { randomSerial } from "../../lib/crypto/pki.js";
import { issueNodeCertificate, signCertificate, subjectName } from "../../lib/crypto/x509.js";
import type { CertBundle } from "../../lib/crypto/pki.js";

/** A node's key and certificate (PEM). */
export interface NodeCreds {
  node: string;
  keyPem: string;
  certPem: string;
}

/** A test cluster CA. */
export function clusterCa(cluster: string): CertBundle {
  return createEcCertificateAuthority(`accessfabric cluster ${cluster} CA`);
}

/** Issues a node certificate for a fresh P-256 key; `validMs` may be negative windows via notBefore/notAfter. */
export function nodeCreds(ca: CertBundle, cluster: string, node: string, window: { notBefore?: Date; notAfter?: Date } = {}): NodeCreds {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const now = Date.now();
  const certPem = issueNodeCertificate({
    caCertPem: ca.certPem,
    caKey: createPrivateKey(ca.keyPem),
    spkiDer: publicKey.export({ format: "der", type: "spki" }),
    cluster,
    node,
    serialHex: randomSerial(),
    notBefore: window.notBefore ?? new Date(now - 60_000),
    notAfter: window.notAfter ?? new Date(now + 3_600_000),
  });
  return { node, keyPem: privateKey.export({ format: "pem", type: "pkcs8" }).toString(), certPem };
}

/** A self-signed certificate carrying a valid node's SANs (what an attacker without the CA can make). */
export function selfSignedNodeCreds(cluster: string, node: string): NodeCreds {
  // Issue with a throwaway CA whose key is the node's own, so issuer = subject key: self-signed in effect.
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const spkiDer = publicKey.export({ format: "der", type: "spki" });
  const subject = subjectName(node, cluster);
  const selfCaPem = signCertificate(
    { serialHex: randomSerial(), issuer: subject, notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 3_600_000), subject, spkiDer, extensions: [] },
    privateKey,
  );
  const certPem = issueNodeCertificate({
    caCertPem: selfCaPem,
    caKey: privateKey,
    spkiDer,
    cluster,
    node,
    serialHex: randomSerial(),
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3_600_000),
  });
  return { node, keyPem: privateKey.export({ format: "pem", type: "pkcs8" }).toString(), certPem };
}
