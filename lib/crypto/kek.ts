/**
 * The key-encryption key (KEK) that seals private keys stored in PostgreSQL.
 *
 * Source, in order: FABRIC_KEK (base64 of 32 bytes, e.g. from a Kubernetes
 * Secret), a file given explicitly, or `<state-dir>/pki/kek` created on first
 * start with mode 0600. Every control-plane instance that shares a database
 * must use the same KEK. Sealing is AES-256-GCM with a random 96-bit nonce;
 * the additional data binds a ciphertext to its row.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

/** A loaded key-encryption key. */
export interface Kek {
  /** First 16 hex digits of the SHA-256 of the key: names the key, reveals nothing. */
  id: string;
  key: Buffer;
}

/** A sealed secret as stored. */
export interface Sealed {
  kekId: string;
  nonce: Buffer;
  /** Ciphertext followed by the 16-byte GCM tag. */
  ciphertext: Buffer;
}

const KEY_BYTES = 32;
const TAG_BYTES = 16;

function fromBytes(key: Buffer, where: string): Kek {
  if (key.length !== KEY_BYTES) throw new Error(`key-encryption key from ${where} must be ${KEY_BYTES} bytes, got ${key.length}`);
  return { id: createHash("sha256").update(key).digest("hex").slice(0, 16), key };
}

/** Parses a base64 KEK (the FABRIC_KEK format). */
export function kekFromBase64(text: string, where = "FABRIC_KEK"): Kek {
  return fromBytes(Buffer.from(text.trim(), "base64"), where);
}

/** Options of loadKek. */
export interface LoadKekOptions {
  /** Default process.env.FABRIC_KEK. */
  envValue?: string;
  /** A file holding the base64 KEK; created (0600) when createIfMissing and absent. */
  file?: string;
  createIfMissing?: boolean;
}

/** The default KEK file of a state directory. */
export function kekFileOf(stateDir: string): string {
  return join(stateDir, "pki", "kek");
}

/** Loads the KEK (see the module comment); throws when none is configured. */
export function loadKek(opts: LoadKekOptions): Kek {
  const env = opts.envValue ?? process.env.FABRIC_KEK;
  if (env !== undefined && env !== "") return kekFromBase64(env);
  const file = opts.file;
  if (file === undefined) throw new Error("no key-encryption key: set FABRIC_KEK (base64 of 32 random bytes) or pass a KEK file");
  if (!existsSync(file)) {
    if (!opts.createIfMissing) throw new Error(`key-encryption key file ${file} does not exist`);
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    // wx: never overwrite a key another process created in the meantime.
    try {
      writeFileSync(file, randomBytes(KEY_BYTES).toString("base64") + "\n", { mode: 0o600, flag: "wx" });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw new Error("creating key-encryption key file", { cause: err });
    }
  }
  chmodSync(file, 0o600);
  return kekFromBase64(readFileSync(file, "utf8"), file);
}

/** Seals plaintext under kek, bound to aad. */
export function seal(kek: Kek, plaintext: Buffer, aad: string): Sealed {
  const nonce = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", kek.key, nonce);
  cipher.setAAD(Buffer.from(aad, "utf8"));
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  return { kekId: kek.id, nonce, ciphertext: ct };
}

/** Opens a sealed secret; throws when the KEK differs or the data or aad were altered. */
export function open(kek: Kek, sealed: Sealed, aad: string): Buffer {
  if (sealed.kekId !== kek.id) throw new Error(`sealed with key-encryption key ${sealed.kekId}, but ${kek.id} is loaded`);
  if (sealed.ciphertext.length < TAG_BYTES) throw new Error("sealed secret too short");
  const body = sealed.ciphertext.subarray(0, sealed.ciphertext.length - TAG_BYTES);
  const tag = sealed.ciphertext.subarray(sealed.ciphertext.length - TAG_BYTES);
  const decipher = createDecipheriv("aes-256-gcm", kek.key, sealed.nonce);
  decipher.setAAD(Buffer.from(aad, "utf8"));
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(body), decipher.final()]);
  } catch (err) {
    throw new Error("opening sealed secret: authentication failed", { cause: err });
  }
}
