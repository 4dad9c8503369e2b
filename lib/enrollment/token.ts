/**
 * Join token format, kubeadm style: `<id>.<secret>`, id 6 and secret 32
 * characters of [a-z0-9] (about 165 bits of secret). The id finds the row;
 * only the SHA-256 of the secret is stored in PostgreSQL (the secret is
 * high-entropy, so a plain hash cannot be brute-forced; no HMAC key to lose).
 * The raw value lives only in a Secret, shown once by `fabricctl token create`.
 */
import { createHash, randomInt, timingSafeEqual } from "node:crypto";

const ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";
/** Length of the token id. */
export const TOKEN_ID_LENGTH = 6;
/** Length of the token secret. */
export const TOKEN_SECRET_LENGTH = 32;
/** The accepted shape of a token. */
export const TOKEN_PATTERN = /^([a-z0-9]{6})\.([a-z0-9]{32})$/;

function randomText(n: number): string {
  let s = "";
  for (let i = 0; i < n; i++) s += ALPHABET[randomInt(ALPHABET.length)];
  return s;
}

/** A freshly generated token. */
export interface GeneratedToken {
  id: string;
  secret: string;
  /** `<id>.<secret>`: what the operator hands to the host. */
  token: string;
}

/** Generates a token from the CSPRNG. */
export function generateToken(): GeneratedToken {
  const id = randomText(TOKEN_ID_LENGTH);
  const secret = randomText(TOKEN_SECRET_LENGTH);
  return { id, secret, token: `${id}.${secret}` };
}

/** Splits a token; undefined when malformed. */
export function parseToken(token: string): { id: string; secret: string } | undefined {
  const m = TOKEN_PATTERN.exec(token);
  if (m === null || m[1] === undefined || m[2] === undefined) return undefined;
  return { id: m[1], secret: m[2] };
}

/** SHA-256 of the secret, as stored. */
export function hashSecret(secret: string): Buffer {
  return createHash("sha256").update(`accessfabric.io/join-token/v1|${secret}`).digest();
}

/** Constant-time comparison of a presented secret with a stored hash. */
export function secretMatches(secret: string, storedHash: Buffer): boolean {
  const h = hashSecret(secret);
  return h.length === storedHash.length && timingSafeEqual(h, storedHash);
}

/** Parses a Go-style duration (30s, 15m, 1h30m, 500ms) into milliseconds. */
export function parseDuration(text: string): number {
  const re = /([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)/g;
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, "µs": 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let consumed = 0;
  for (const m of text.matchAll(re)) {
    if (m.index !== consumed) break;
    total += Number(m[1]) * (unit[m[2] ?? "s"] ?? 0);
    consumed += m[0].length;
  }
  if (consumed !== text.length || text.length === 0) throw new Error(`invalid duration ${JSON.stringify(text)}`);
  return Math.round(total);
}
