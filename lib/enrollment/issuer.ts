/**
 * Issues node certificates with a cluster's CA. The CA private key is
 * opened from cluster_keys with the KEK on first use and kept in memory as
 * a KeyObject (never written anywhere else). Signing uses Node's crypto.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import { open, type Kek } from "../crypto/kek.js";
import { randomSerial } from "../crypto/pki.js";
import { issueNodeCertificate, publicKeyFingerprint } from "../crypto/x509.js";
import { clusterKeyAad, type ClusterStore } from "../state/index.js";
import type { NewIdentity } from "../state/index.js";

/** Default node certificate lifetime: 24 hours. */
export const DEFAULT_NODE_CERT_LIFETIME_MS = 24 * 3_600_000;

/** A cluster's CA as the issuer holds it. */
export interface ClusterAuthority {
  cluster: string;
  caCertPem: string;
  caCert: X509Certificate;
  caKey: KeyObject;
  snapshotKeyId: string;
  /** Raw Ed25519 snapshot verification key, base64. */
  snapshotPublicKey: string;
}

/** See the module comment. */
export class NodeCertificateIssuer {
  private readonly cache = new Map<string, Promise<ClusterAuthority>>();

  constructor(
    private readonly clusters: ClusterStore,
    private readonly kek: Kek,
    /** Lifetime of issued certificates. */
    readonly lifetimeMs: number = DEFAULT_NODE_CERT_LIFETIME_MS,
    private readonly now: () => number = Date.now,
  ) {}

  /** The cluster's CA (cached; a cluster recreated under the same name gets a new CA and is reloaded). */
  async authority(cluster: string): Promise<ClusterAuthority> {
    const row = await this.clusters.get(cluster);
    if (row === undefined) throw new Error(`cluster ${cluster} has no keys yet`);
    const cacheKey = `${cluster}|${row.caFingerprint}`;
    let p = this.cache.get(cacheKey);
    if (p === undefined) {
      p = (async () => {
        const keys = await this.clusters.keys(cluster);
        const ca = keys.find((k) => k.kind === "ca");
        if (ca === undefined) throw new Error(`cluster ${cluster} has no CA key`);
        const der = open(this.kek, ca.sealed, clusterKeyAad(cluster, "ca", ca.keyVersion));
        const caKey = createPrivateKey({ key: der, format: "der", type: "pkcs8" });
        der.fill(0);
        return { cluster, caCertPem: row.caCertPem, caCert: new X509Certificate(row.caCertPem), caKey, snapshotKeyId: row.snapshotKeyId, snapshotPublicKey: row.snapshotPublicKey };
      })();
      p.catch(() => this.cache.delete(cacheKey));
      this.cache.set(cacheKey, p);
    }
    return p;
  }

  /** Issues a certificate for the node's public key (SPKI DER). */
  async issue(cluster: string, node: string, spkiDer: Buffer): Promise<NewIdentity> {
    const a = await this.authority(cluster);
    const now = this.now();
    // Backdated for clock skew, but never by more than a tenth of the lifetime (renewal is scheduled on it).
    const notBefore = new Date(Math.floor((now - Math.min(60_000, this.lifetimeMs / 10)) / 1000) * 1000);
    const notAfter = new Date(Math.floor((now + this.lifetimeMs) / 1000) * 1000);
    const serial = randomSerial();
    const certificatePem = issueNodeCertificate({ caCertPem: a.caCertPem, caKey: a.caKey, spkiDer, cluster, node, serialHex: serial, notBefore, notAfter });
    const cert = new X509Certificate(certificatePem);
    return { serial: cert.serialNumber.toLowerCase(), publicKeyFingerprint: publicKeyFingerprint(cert.publicKey), notBefore, notAfter, certificatePem };
  }
}
