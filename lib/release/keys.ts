/**
 * Release signing keys and trust sets. A trust set is what a cluster pins in
 * `FabricCluster.spec.releaseTrust`: Ed25519 public keys (PEM or base64 of
 * the SPKI DER) with a key id each, and the number of distinct keys whose
 * signatures a release needs. A key id is a label chosen by the publisher
 * (`fabricctl release keygen` proposes the first 16 hex digits of the
 * SPKI's sha256); a set that names the same id or the same public key twice
 * is refused, so one key can never count twice toward the threshold.
 */
import { createHash, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { ReleaseError } from "./errors.js";
import { isPlainObject } from "./envelope.js";

export interface TrustKey {
  keyId: string;
  /** PEM (`-----BEGIN PUBLIC KEY-----`) or base64 of the DER SubjectPublicKeyInfo. */
  publicKey: string;
}

export interface TrustSet {
  keys: TrustKey[];
  threshold: number;
}

/** A checked trust set: key ids mapped to Ed25519 public keys. */
export interface ParsedTrust {
  keys: Map<string, KeyObject>;
  threshold: number;
}

export const TRUST_LIMITS = { maxKeys: 16, maxKeyIdLength: 128 } as const;
const KEY_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]*$/;

/** Reads one Ed25519 public key; throws ReleaseError(BadTrust) for anything else. */
export function parsePublicKey(text: string): KeyObject {
  let key: KeyObject;
  try {
    key = text.includes("-----BEGIN")
      ? createPublicKey({ key: text, format: "pem" })
      : createPublicKey({ key: Buffer.from(text.trim(), "base64"), format: "der", type: "spki" });
  } catch (err) {
    throw new ReleaseError("BadTrust", "public key is neither PEM nor base64 SPKI", { cause: err });
  }
  if (key.asymmetricKeyType !== "ed25519") throw new ReleaseError("BadTrust", `public key is ${key.asymmetricKeyType}, not ed25519`);
  return key;
}

/** Base64 of the key's DER SPKI: one spelling per key, whatever form it came in. */
export function spkiBase64(key: KeyObject): string {
  return key.export({ format: "der", type: "spki" }).toString("base64");
}

/** The key id `fabricctl release keygen` proposes: first 16 hex digits of sha256(SPKI DER). */
export function proposedKeyId(key: KeyObject): string {
  return createHash("sha256").update(key.export({ format: "der", type: "spki" })).digest("hex").slice(0, 16);
}

/** A fresh Ed25519 key pair with its proposed key id. */
export function generateSigningKey(): { keyId: string; privateKey: KeyObject; publicKey: KeyObject } {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return { keyId: proposedKeyId(publicKey), privateKey, publicKey };
}

/** Checks an untrusted trust set; throws ReleaseError(BadTrust). */
export function parseTrust(value: unknown): ParsedTrust {
  if (!isPlainObject(value)) throw new ReleaseError("BadTrust", "trust set is not an object");
  const { keys, threshold } = value;
  if (!Array.isArray(keys) || keys.length === 0 || keys.length > TRUST_LIMITS.maxKeys) {
    throw new ReleaseError("BadTrust", `trust set needs 1 to ${TRUST_LIMITS.maxKeys} keys`);
  }
  if (typeof threshold !== "number" || !Number.isInteger(threshold) || threshold < 1 || threshold > keys.length) {
    throw new ReleaseError("BadTrust", `threshold must be an integer from 1 to the number of keys (${keys.length})`);
  }
  const parsed = new Map<string, KeyObject>();
  const seen = new Set<string>();
  for (const [i, k] of keys.entries()) {
    if (!isPlainObject(k)) throw new ReleaseError("BadTrust", `key ${i} is not an object`);
    const { keyId, publicKey } = k;
    if (typeof keyId !== "string" || keyId.length > TRUST_LIMITS.maxKeyIdLength || !KEY_ID.test(keyId)) {
      throw new ReleaseError("BadTrust", `key ${i} has no valid keyId`);
    }
    if (typeof publicKey !== "string" || publicKey.length > 4096) throw new ReleaseError("BadTrust", `key ${keyId} has no publicKey`);
    if (parsed.has(keyId)) throw new ReleaseError("BadTrust", `key id ${keyId} appears twice`);
    const key = parsePublicKey(publicKey);
    const spki = spkiBase64(key);
    if (seen.has(spki)) throw new ReleaseError("BadTrust", `key ${keyId} repeats another key's public key`);
    seen.add(spki);
    parsed.set(keyId, key);
  }
  return { keys: parsed, threshold };
}

/** The trust set in one spelling (keys sorted by id, public keys as base64 SPKI), for equality checks. */
export function normalizeTrust(trust: ParsedTrust): TrustSet {
  const keys = [...trust.keys.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([keyId, key]) => ({ keyId, publicKey: spkiBase64(key) }));
  return { keys, threshold: trust.threshold };
}

export function sameTrust(a: ParsedTrust, b: ParsedTrust): boolean {
  return JSON.stringify(normalizeTrust(a)) === JSON.stringify(normalizeTrust(b));
}
