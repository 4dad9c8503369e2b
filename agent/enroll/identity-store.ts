/**
 * The agent's identity files, one directory per cluster membership under
 * `<state-dir>/clusters/<cluster>/`:
 *   node.pem       private key and certificate together (0600; written
 *                  atomically, so key and certificate never disagree)
 *   ca.pem         the cluster CA bundle
 *   server-ca.pem  the pinned agent API CA
 *   identity.json  server URL, cluster, node, snapshot key, serial, validity
 * and `<state-dir>/host.key`, the host key whose fingerprint identifies the
 * machine (shared by all memberships of the host; never sent anywhere).
 * Private keys never leave the host.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate, type KeyObject } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { publicKeyFingerprint } from "../../lib/crypto/x509.js";
import { writeFileAtomic } from "../state/atomic-file.js";

/** What identity.json holds. */
export interface IdentityInfo {
  server: string;
  cluster: string;
  node: string;
  joinRequest: string;
  snapshotKey?: { keyId: string; publicKey: string };
  serial: string;
  notBefore: string;
  notAfter: string;
}

/** A loaded identity. */
export interface StoredIdentity {
  dir: string;
  info: IdentityInfo;
  key: KeyObject;
  keyPem: string;
  certPem: string;
  caPem: string;
  serverCaPem: string;
}

/** Generates a node key: ECDSA P-256 (see docs/enrollment.md for the measurement behind the choice). */
export function generateNodeKey(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync("ec", { namedCurve: "P-256" });
}

/** The directory of a cluster membership. */
export function clusterDir(stateDir: string, cluster: string): string {
  return join(stateDir, "clusters", cluster);
}

/** The host fingerprint: sha256 of the host key's public key, creating the key on first use. */
export async function hostFingerprint(stateDir: string): Promise<string> {
  let pem: string;
  try {
    pem = await readFile(join(stateDir, "host.key"), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    const k = generateKeyPairSync("ed25519");
    pem = k.privateKey.export({ format: "pem", type: "pkcs8" }).toString();
    await writeFileAtomic(stateDir, "host.key", Buffer.from(pem));
  }
  return publicKeyFingerprint(createPublicKey(createPrivateKey(pem)));
}

/** Writes a membership's files (key and certificate in one atomic file). */
export async function saveIdentity(stateDir: string, s: Omit<StoredIdentity, "dir" | "key">): Promise<string> {
  const dir = clusterDir(stateDir, s.info.cluster);
  await writeFileAtomic(dir, "ca.pem", Buffer.from(s.caPem));
  await writeFileAtomic(dir, "server-ca.pem", Buffer.from(s.serverCaPem));
  await writeFileAtomic(dir, "node.pem", Buffer.from(s.keyPem + s.certPem));
  await writeFileAtomic(dir, "identity.json", Buffer.from(JSON.stringify(s.info, null, 2) + "\n"));
  return dir;
}

function firstBlock(text: string, label: string): string {
  const m = new RegExp(`-----BEGIN ${label}-----[\\s\\S]+?-----END ${label}-----\\n?`).exec(text);
  if (m === null) throw new Error(`no ${label} block`);
  return m[0];
}

/** Loads one membership. */
export async function loadIdentity(dir: string): Promise<StoredIdentity> {
  const info = JSON.parse(await readFile(join(dir, "identity.json"), "utf8")) as IdentityInfo;
  const pem = await readFile(join(dir, "node.pem"), "utf8");
  const keyPem = firstBlock(pem, "PRIVATE KEY");
  const certPem = firstBlock(pem, "CERTIFICATE");
  const key = createPrivateKey(keyPem);
  const cert = new X509Certificate(certPem);
  if (!cert.checkPrivateKey(key)) throw new Error(`identity in ${dir}: key and certificate do not match`);
  return { dir, info, key, keyPem, certPem, caPem: await readFile(join(dir, "ca.pem"), "utf8"), serverCaPem: await readFile(join(dir, "server-ca.pem"), "utf8") };
}

/** Every membership in the state directory. */
export async function loadIdentities(stateDir: string): Promise<StoredIdentity[]> {
  let names: string[];
  try {
    names = await readdir(join(stateDir, "clusters"));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const out: StoredIdentity[] = [];
  for (const n of names.sort()) out.push(await loadIdentity(join(stateDir, "clusters", n)));
  return out;
}
