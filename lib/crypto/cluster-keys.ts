/**
 * A FabricCluster's keys: the certificate authority that will issue node
 * certificates (RSA-2048 through node-forge: forge has no ECDSA certificates
 * and Node's X509Certificate cannot sign) and the Ed25519 key that signs
 * node snapshots (Node's crypto). Private halves leave this module only as
 * PKCS#8 DER for sealing under the KEK; they are never logged or put in a CR.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate, type KeyObject } from "node:crypto";
import forge from "node-forge";
import { createCertificateAuthority } from "./pki.js";

/** Freshly generated keys of one cluster. */
export interface ClusterKeys {
  caCertPem: string;
  /** sha256:<hex> of the CA certificate's DER. */
  caFingerprint: string;
  /** PKCS#8 DER of the CA private key. */
  caPrivateKeyDer: Buffer;
  /** Raw 32-byte Ed25519 public key, base64. */
  snapshotPublicKey: string;
  /** sha256:<hex> of the raw public key. */
  snapshotKeyFingerprint: string;
  /** First 16 hex digits of the raw public key's SHA-256. */
  snapshotKeyId: string;
  /** PKCS#8 DER of the Ed25519 private key. */
  snapshotPrivateKeyDer: Buffer;
}

/** sha256:<hex> of the DER of a PEM certificate. */
export function certificateFingerprint(certPem: string): string {
  return `sha256:${createHash("sha256").update(new X509Certificate(certPem).raw).digest("hex")}`;
}

function rawEd25519(pub: KeyObject): Buffer {
  const jwk = pub.export({ format: "jwk" });
  if (typeof jwk.x !== "string") throw new Error("ed25519 public key without x");
  return Buffer.from(jwk.x, "base64url");
}

/** Fingerprint and key id of a raw Ed25519 public key. */
export function snapshotKeyIdentity(raw: Buffer): { fingerprint: string; keyId: string } {
  const hex = createHash("sha256").update(raw).digest("hex");
  return { fingerprint: `sha256:${hex}`, keyId: hex.slice(0, 16) };
}

/** Generates a cluster's CA and snapshot key (the CA dominates: ~0.2 s of RSA keygen). */
export function generateClusterKeys(cluster: string): ClusterKeys {
  const ca = createCertificateAuthority(`accessfabric cluster ${cluster} CA`);
  const caKey = forge.pki.privateKeyFromPem(ca.keyPem);
  const caPrivateKeyDer = Buffer.from(
    forge.asn1.toDer(forge.pki.wrapRsaPrivateKey(forge.pki.privateKeyToAsn1(caKey))).getBytes(),
    "binary",
  );
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const raw = rawEd25519(publicKey);
  const { fingerprint, keyId } = snapshotKeyIdentity(raw);
  return {
    caCertPem: ca.certPem,
    caFingerprint: certificateFingerprint(ca.certPem),
    caPrivateKeyDer,
    snapshotPublicKey: raw.toString("base64"),
    snapshotKeyFingerprint: fingerprint,
    snapshotKeyId: keyId,
    snapshotPrivateKeyDer: privateKey.export({ format: "der", type: "pkcs8" }),
  };
}

/** The raw Ed25519 public key of a PKCS#8 private key (checks a stored pair matches). */
export function ed25519PublicOf(privateKeyDer: Buffer): Buffer {
  return rawEd25519(createPublicKey(createPrivateKey({ key: privateKeyDer, format: "der", type: "pkcs8" })));
}
