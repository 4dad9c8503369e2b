/**
 * Verification of a release envelope against a cluster's trust set, in the
 * order TUF's attacks ask for, used by the release controller and by the
 * agent alike:
 *
 * 1. the envelope's shape and its payload type (a trust rotation or any other
 *    signed document is never taken for a release);
 * 2. signatures: only key ids in the trust set count, each key id at most
 *    once (a key signing twice is one signature), a signature counts only
 *    when it verifies over PAE(type, payload); the threshold must be met;
 * 3. only then the payload is parsed (no unsigned bytes reach the parser);
 * 4. component: the manifest must be for the component asked for
 *    (mix-and-match: another component's artifact under this name);
 * 5. expiry in the future (freeze: an old, still-signed manifest replayed);
 * 6. version not lower than the last one trusted for this component
 *    (rollback: an older version offered as newer).
 *
 * Every refusal is a ReleaseError with a code; anything the untrusted input
 * makes go wrong surfaces as one, never as another exception.
 */
import { ReleaseError } from "./errors.js";
import { parseEnvelope, RELEASE_PAYLOAD_TYPE, signatureValid, TRUST_PAYLOAD_TYPE, type Envelope } from "./envelope.js";
import { parseTrust, sameTrust, type ParsedTrust, type TrustSet } from "./keys.js";
import { parseManifest, type ReleaseManifest } from "./manifest.js";
import { compareSemver } from "./semver.js";
import { parseJsonWithLimits } from "../json-limits.js";

export interface VerifyOptions {
  /** The component the caller expects; a manifest for another one is refused. */
  component?: string;
  /** The highest version already trusted for (cluster, component); a lower one is refused. */
  lastTrustedVersion?: string;
  /** Time of the check (defaults to now). */
  now?: Date;
}

export interface VerifiedRelease {
  manifest: ReleaseManifest;
  /** The distinct trusted key ids whose signatures counted. */
  keyIds: string[];
  /** The payload bytes that were verified. */
  payload: Buffer;
}

/**
 * Counts distinct trusted key ids with a valid signature, stopping at the
 * threshold. Throws UnknownKey when no signature comes from a trusted key,
 * BadSignature when a trusted key's signature does not verify and the
 * threshold is not met, ThresholdNotMet otherwise.
 */
export function checkSignatures(envelope: Envelope, payload: Buffer, trust: ParsedTrust): string[] {
  const counted: string[] = [];
  let known = 0;
  let invalid = 0;
  for (const s of envelope.signatures) {
    if (counted.length >= trust.threshold) break;
    const key = trust.keys.get(s.keyid);
    if (!key) continue;
    known++;
    if (counted.includes(s.keyid)) continue;
    if (signatureValid(envelope.payloadType, payload, s.sig, key)) counted.push(s.keyid);
    else invalid++;
  }
  if (counted.length >= trust.threshold) return counted;
  if (known === 0) throw new ReleaseError("UnknownKey", `no signature is by a trusted key (${envelope.signatures.length} signatures)`);
  if (invalid > 0) throw new ReleaseError("BadSignature", `${invalid} signature(s) by trusted keys do not verify`);
  throw new ReleaseError("ThresholdNotMet", `${counted.length} distinct trusted key(s) signed, ${trust.threshold} needed`);
}

/** Verifies a release envelope; returns the manifest or throws a ReleaseError. */
export function verifyEnvelope(envelopeValue: unknown, trustValue: ParsedTrust | TrustSet, options: VerifyOptions = {}): VerifiedRelease {
  const trust = isParsed(trustValue) ? trustValue : parseTrust(trustValue);
  const { envelope, payload } = parseEnvelope(envelopeValue);
  if (envelope.payloadType !== RELEASE_PAYLOAD_TYPE) {
    throw new ReleaseError("WrongPayloadType", `payload type is not ${RELEASE_PAYLOAD_TYPE}`);
  }
  const keyIds = checkSignatures(envelope, payload, trust);
  const manifest = parseManifest(payload);
  if (options.component !== undefined && manifest.component !== options.component) {
    throw new ReleaseError("MismatchedComponent", `manifest is for component ${manifest.component}, not ${options.component}`);
  }
  const now = options.now ?? new Date();
  if (Date.parse(manifest.expires) <= now.getTime()) {
    throw new ReleaseError("Expired", `manifest expired at ${manifest.expires}`);
  }
  if (options.lastTrustedVersion !== undefined && compareSemver(manifest.version, options.lastTrustedVersion) < 0) {
    throw new ReleaseError("RollbackRefused", `version ${manifest.version} is lower than the last trusted ${options.lastTrustedVersion}`);
  }
  return { manifest, keyIds, payload };
}

/**
 * Verifies a trust rotation: `rotation` is an envelope of TRUST_PAYLOAD_TYPE
 * whose payload is the new trust set, signed by the old set's threshold. The
 * new set must equal the one being installed (`next`). Returns the new set.
 */
export function verifyTrustRotation(current: ParsedTrust | TrustSet, next: ParsedTrust | TrustSet, rotation: unknown): ParsedTrust {
  const old = isParsed(current) ? current : parseTrust(current);
  const wanted = isParsed(next) ? next : parseTrust(next);
  let parsed: { envelope: Envelope; payload: Buffer };
  try {
    parsed = parseEnvelope(rotation);
  } catch (err) {
    throw new ReleaseError("RotationRefused", `rotation envelope: ${(err as Error).message}`, { cause: err });
  }
  if (parsed.envelope.payloadType !== TRUST_PAYLOAD_TYPE) {
    throw new ReleaseError("RotationRefused", `rotation payload type is not ${TRUST_PAYLOAD_TYPE}`);
  }
  try {
    checkSignatures(parsed.envelope, parsed.payload, old);
  } catch (err) {
    throw new ReleaseError("RotationRefused", `rotation is not signed by the current threshold: ${(err as Error).message}`, { cause: err });
  }
  let signed: ParsedTrust;
  try {
    signed = parseTrust(parseJsonWithLimits(parsed.payload, { maxBytes: 65536, maxDepth: 4, wellFormedStrings: true }));
  } catch (err) {
    throw new ReleaseError("RotationRefused", `rotation payload is not a trust set: ${(err as Error).message}`, { cause: err });
  }
  if (!sameTrust(signed, wanted)) throw new ReleaseError("RotationRefused", "the signed trust set differs from the one being installed");
  return wanted;
}

function isParsed(t: ParsedTrust | TrustSet): t is ParsedTrust {
  return t.keys instanceof Map;
}
