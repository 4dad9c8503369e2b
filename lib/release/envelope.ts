/**
 * DSSE envelopes (github.com/secure-systems-lab/dsse): the signature covers
 * PAE(payloadType, payload), the pre-authentication encoding
 * `"DSSEv1" SP len(type) SP type SP len(body) SP body` with lengths in ASCII
 * decimal bytes, so the signed bytes are exactly the payload bytes and no
 * JSON canonicalisation is needed. Signatures are Ed25519 (node:crypto).
 */
import { sign as edSign, verify as edVerify, type KeyObject } from "node:crypto";
import { ReleaseError } from "./errors.js";

/** The payload type of a release manifest. */
export const RELEASE_PAYLOAD_TYPE = "application/vnd.accessfabric.release+json";
/** The payload type of a trust-set rotation (the new set, signed by the old threshold). */
export const TRUST_PAYLOAD_TYPE = "application/vnd.accessfabric.trust+json";

export interface EnvelopeSignature {
  keyid: string;
  /** Base64 Ed25519 signature over PAE(payloadType, payload bytes). */
  sig: string;
}

export interface Envelope {
  payloadType: string;
  /** Base64 of the payload bytes. */
  payload: string;
  signatures: EnvelopeSignature[];
}

/** Bounds on an envelope read from an object or the network. */
export const ENVELOPE_LIMITS = {
  /** Largest decoded payload. */
  maxPayloadBytes: 64 * 1024,
  maxSignatures: 16,
  maxKeyIdLength: 128,
  maxPayloadTypeLength: 128,
} as const;

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** PAE(type, body) as DSSE v1 defines it. */
export function pae(payloadType: string, payload: Buffer): Buffer {
  const type = Buffer.from(payloadType, "utf8");
  return Buffer.concat([
    Buffer.from(`DSSEv1 ${type.length} `, "ascii"),
    type,
    Buffer.from(` ${payload.length} `, "ascii"),
    payload,
  ]);
}

/** Strict base64 decode: refuses characters outside the alphabet and non-canonical padding. */
export function decodeBase64(text: string, what: string): Buffer {
  if (text.length % 4 !== 0 || !BASE64.test(text)) throw new ReleaseError("MalformedEnvelope", `${what} is not base64`);
  const bytes = Buffer.from(text, "base64");
  if (bytes.toString("base64") !== text) throw new ReleaseError("MalformedEnvelope", `${what} is not canonical base64`);
  return bytes;
}

/**
 * Checks the shape of an untrusted value and returns it as an envelope with
 * its decoded payload. Throws ReleaseError(MalformedEnvelope), never anything else.
 */
export function parseEnvelope(value: unknown): { envelope: Envelope; payload: Buffer } {
  if (!isPlainObject(value)) throw new ReleaseError("MalformedEnvelope", "envelope is not an object");
  const { payloadType, payload, signatures } = value;
  if (typeof payloadType !== "string" || payloadType.length === 0 || payloadType.length > ENVELOPE_LIMITS.maxPayloadTypeLength) {
    throw new ReleaseError("MalformedEnvelope", "payloadType is missing or too long");
  }
  if (typeof payload !== "string") throw new ReleaseError("MalformedEnvelope", "payload is not a string");
  if (payload.length > Math.ceil(ENVELOPE_LIMITS.maxPayloadBytes / 3) * 4) {
    throw new ReleaseError("MalformedEnvelope", `payload is larger than ${ENVELOPE_LIMITS.maxPayloadBytes} bytes`);
  }
  const bytes = decodeBase64(payload, "payload");
  if (!Array.isArray(signatures)) throw new ReleaseError("MalformedEnvelope", "signatures is not a list");
  if (signatures.length > ENVELOPE_LIMITS.maxSignatures) {
    throw new ReleaseError("MalformedEnvelope", `more than ${ENVELOPE_LIMITS.maxSignatures} signatures`);
  }
  const sigs: EnvelopeSignature[] = [];
  for (const [i, s] of signatures.entries()) {
    if (!isPlainObject(s)) throw new ReleaseError("MalformedEnvelope", `signature ${i} is not an object`);
    if (typeof s.keyid !== "string" || s.keyid.length === 0 || s.keyid.length > ENVELOPE_LIMITS.maxKeyIdLength) {
      throw new ReleaseError("MalformedEnvelope", `signature ${i} has no valid keyid`);
    }
    if (typeof s.sig !== "string" || s.sig.length > 256) throw new ReleaseError("MalformedEnvelope", `signature ${i} has no valid sig`);
    decodeBase64(s.sig, `signature ${i}`);
    sigs.push({ keyid: s.keyid, sig: s.sig });
  }
  return { envelope: { payloadType, payload, signatures: sigs }, payload: bytes };
}

/** Signs payload bytes with each key: one signature per key, in order. */
export function signEnvelope(payloadType: string, payload: Buffer, keys: ReadonlyArray<{ keyId: string; privateKey: KeyObject }>): Envelope {
  const message = pae(payloadType, payload);
  return {
    payloadType,
    payload: payload.toString("base64"),
    signatures: keys.map((k) => ({ keyid: k.keyId, sig: edSign(null, message, k.privateKey).toString("base64") })),
  };
}

/** Whether `sig` is a valid Ed25519 signature of PAE(type, payload) by `publicKey`; never throws. */
export function signatureValid(payloadType: string, payload: Buffer, sig: string, publicKey: KeyObject): boolean {
  try {
    return edVerify(null, pae(payloadType, payload), publicKey, Buffer.from(sig, "base64"));
  } catch {
    return false;
  }
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
