/**
 * Certificate renewal by the agent, without operator action: at a random
 * point between 70% and 90% of the certificate's lifetime it generates a new
 * key, sends a CSR over mTLS with the current certificate, and atomically
 * replaces key and certificate. Failures retry with capped exponential
 * backoff; a certificate that expired while the host was off can still renew
 * within the server's grace period (no lockout of headless nodes).
 */
import { createPublicKey, X509Certificate } from "node:crypto";
import { createCsr, publicKeyFingerprint } from "../../lib/crypto/x509.js";
import type { RenewResponse } from "../../lib/enrollment/protocol.js";
import { AgentApiClient, AgentApiRequestError } from "../http/client.js";
import { generateNodeKey, saveIdentity, type StoredIdentity } from "./identity-store.js";

/** When to renew: a uniformly random point in [70%, 90%] of the validity. */
export function renewalTime(notBefore: Date, notAfter: Date, random: () => number = Math.random): Date {
  const life = notAfter.getTime() - notBefore.getTime();
  return new Date(notBefore.getTime() + life * (0.7 + 0.2 * random()));
}

/** Renews one identity now; returns the new stored identity. */
export async function renewIdentity(stateDir: string, id: StoredIdentity): Promise<StoredIdentity> {
  const client = new AgentApiClient(id.info.server, { ca: id.serverCaPem, cert: id.certPem, key: id.keyPem });
  try {
    const { privateKey, publicKey } = generateNodeKey();
    const r = await client.request<RenewResponse>("POST", "/v1/identity/renew", { csr: createCsr(privateKey, publicKey, id.info.node) });
    const cert = new X509Certificate(r.body.certificate);
    const ca = new X509Certificate(r.body.caBundle);
    if (!cert.verify(ca.publicKey) || publicKeyFingerprint(cert.publicKey) !== publicKeyFingerprint(createPublicKey(privateKey))) {
      throw new Error("renewed certificate does not match the new key or the cluster CA");
    }
    const keyPem = privateKey.export({ format: "pem", type: "pkcs8" }).toString();
    const info = { ...id.info, serial: cert.serialNumber.toLowerCase(), notBefore: new Date(cert.validFrom).toISOString(), notAfter: new Date(cert.validTo).toISOString() };
    const dir = await saveIdentity(stateDir, { info, keyPem, certPem: r.body.certificate, caPem: r.body.caBundle, serverCaPem: id.serverCaPem });
    return { dir, info, key: privateKey, keyPem, certPem: r.body.certificate, caPem: r.body.caBundle, serverCaPem: id.serverCaPem };
  } finally {
    client.close();
  }
}

/** Keeps one identity renewed until signal aborts. */
export async function keepRenewed(stateDir: string, initial: StoredIdentity, opts: { signal: AbortSignal; log: (msg: string, fields?: Record<string, unknown>) => void }): Promise<void> {
  let id = initial;
  let failures = 0;
  while (!opts.signal.aborted) {
    const at = failures === 0 ? renewalTime(new Date(id.info.notBefore), new Date(id.info.notAfter)).getTime() : Date.now() + Math.min(60_000, 1000 * 2 ** Math.min(failures, 6)) * (0.5 + Math.random() / 2);
    const wait = Math.max(0, at - Date.now());
    opts.log("next certificate renewal scheduled", { cluster: id.info.cluster, inMs: Math.round(wait), serial: id.info.serial });
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, Math.min(wait, 2 ** 31 - 1));
      opts.signal.addEventListener("abort", () => {
        clearTimeout(t);
        resolve();
      });
    });
    if (opts.signal.aborted) return;
    if (Date.now() < at) continue;
    try {
      id = await renewIdentity(stateDir, id);
      failures = 0;
      opts.log("certificate renewed", { cluster: id.info.cluster, serial: id.info.serial, notAfter: id.info.notAfter });
    } catch (err) {
      failures++;
      const refusedForGood = err instanceof AgentApiRequestError && (err.code === "IdentityRevoked" || err.code === "CertificateSuperseded");
      opts.log(refusedForGood ? "certificate renewal refused" : "certificate renewal failed", { cluster: id.info.cluster, error: (err as Error).message, failures });
      if (refusedForGood) return;
    }
  }
}
