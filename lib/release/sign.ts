/** Signing a release manifest or a trust rotation with one or more Ed25519 keys. */
import type { KeyObject } from "node:crypto";
import { RELEASE_PAYLOAD_TYPE, signEnvelope, TRUST_PAYLOAD_TYPE, type Envelope } from "./envelope.js";
import { normalizeTrust, parseTrust, type TrustSet } from "./keys.js";
import { checkManifest, type ReleaseManifest } from "./manifest.js";

export type SigningKey = { keyId: string; privateKey: KeyObject };

/** Checks the manifest, then signs its JSON bytes with each key. */
export function signRelease(manifest: ReleaseManifest, keys: readonly SigningKey[]): Envelope {
  const checked = checkManifest(manifest);
  return signEnvelope(RELEASE_PAYLOAD_TYPE, Buffer.from(JSON.stringify(checked), "utf8"), keys);
}

/** Signs a new trust set with the current set's keys (a rotation envelope). */
export function signTrustRotation(next: TrustSet, keys: readonly SigningKey[]): Envelope {
  const normalized = normalizeTrust(parseTrust(next));
  return signEnvelope(TRUST_PAYLOAD_TYPE, Buffer.from(JSON.stringify(normalized), "utf8"), keys);
}
