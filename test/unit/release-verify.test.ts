/**
 * Release verification with real Ed25519 keys: every refusal TUF's attack
 * list asks for, each with its reason code, and the trust-set rotation rule.
 */
import assert from "node:assert/strict";
import {
  generateSigningKey,
  pae,
  ReleaseError,
  signEnvelope,
  signRelease,
  signTrustRotation,
  spkiBase64,
  verifyEnvelope,
  verifyTrustRotation,
  RELEASE_PAYLOAD_TYPE,
  TRUST_PAYLOAD_TYPE,
  compareSemver,
  selectArtifact,
  type Envelope,
  type ReleaseManifest,
  type TrustSet,
} from "../../lib/release/index.js";

const k1 = generateSigningKey();
const k2 = generateSigningKey();
const k3 = generateSigningKey();
const stranger = generateSigningKey();
const trustOf = (threshold: number, ...keys: Array<typeof k1>): TrustSet => ({
  threshold,
  keys: keys.map((k) => ({ keyId: k.keyId, publicKey: spkiBase64(k.publicKey) })),
});
const NOW = new Date("2026-12-05T00:00:00Z");
const manifest = (over: Partial<ReleaseManifest> = {}): ReleaseManifest => ({
  _type: "release",
  specVersion: 1,
  component: "rdp-worker",
  version: "1.4.0",
  expires: "2027-01-01T00:00:00Z",
  artifacts: [{ os: "linux", arch: "amd64", length: 3, sha256: "a".repeat(64) }],
  ...over,
});

function refused(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ReleaseError, `not a ReleaseError: ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

describe("release envelopes (DSSE, Ed25519)", () => {
  it("PAE is the DSSE v1 encoding", () => {
    assert.equal(pae("a/b", Buffer.from("hello")).toString(), "DSSEv1 3 a/b 5 hello");
    assert.equal(pae("", Buffer.alloc(0)).toString(), "DSSEv1 0  0 ");
  });

  it("verifies a 2-of-3 release and reports the keys that counted", () => {
    const env = signRelease(manifest(), [k1, k3]);
    const v = verifyEnvelope(env, trustOf(2, k1, k2, k3), { component: "rdp-worker", now: NOW });
    assert.equal(v.manifest.version, "1.4.0");
    assert.deepEqual(v.keyIds, [k1.keyId, k3.keyId]);
    assert.deepEqual(selectArtifact(v.manifest, "linux", "amd64").sha256, "a".repeat(64));
    refused(() => selectArtifact(v.manifest, "darwin", "arm64"), "NoArtifact");
  });

  it("refuses a payload with one changed byte (BadSignature)", () => {
    const env = signRelease(manifest(), [k1]);
    const bytes = Buffer.from(env.payload, "base64");
    bytes[bytes.indexOf("1.4.0")] = "2".charCodeAt(0);
    refused(() => verifyEnvelope({ ...env, payload: bytes.toString("base64") }, trustOf(1, k1), { now: NOW }), "BadSignature");
  });

  it("refuses a release signed only by an unknown key (UnknownKey)", () => {
    refused(() => verifyEnvelope(signRelease(manifest(), [stranger]), trustOf(1, k1), { now: NOW }), "UnknownKey");
  });

  it("refuses an unknown key that borrows a trusted key id (BadSignature)", () => {
    const env = signRelease(manifest(), [{ keyId: k1.keyId, privateKey: stranger.privateKey }]);
    refused(() => verifyEnvelope(env, trustOf(1, k1), { now: NOW }), "BadSignature");
  });

  it("refuses fewer signatures than the threshold (ThresholdNotMet)", () => {
    refused(() => verifyEnvelope(signRelease(manifest(), [k1, stranger]), trustOf(2, k1, k2, k3), { now: NOW }), "ThresholdNotMet");
  });

  it("counts one key id once, however often it signs", () => {
    const env = signRelease(manifest(), [k1, k1, k1]);
    refused(() => verifyEnvelope(env, trustOf(2, k1, k2), { now: NOW }), "ThresholdNotMet");
  });

  it("refuses an expired manifest (Expired)", () => {
    const env = signRelease(manifest({ expires: "2026-12-04T23:59:59Z" }), [k1]);
    refused(() => verifyEnvelope(env, trustOf(1, k1), { now: NOW }), "Expired");
  });

  it("refuses an older version offered as newer (RollbackRefused), accepts the same or a newer one", () => {
    const env = signRelease(manifest({ version: "1.3.9" }), [k1]);
    refused(() => verifyEnvelope(env, trustOf(1, k1), { now: NOW, lastTrustedVersion: "1.4.0" }), "RollbackRefused");
    refused(() => verifyEnvelope(signRelease(manifest({ version: "1.4.0-rc.1" }), [k1]), trustOf(1, k1), { now: NOW, lastTrustedVersion: "1.4.0" }), "RollbackRefused");
    verifyEnvelope(signRelease(manifest({ version: "1.4.0" }), [k1]), trustOf(1, k1), { now: NOW, lastTrustedVersion: "1.4.0" });
    verifyEnvelope(signRelease(manifest({ version: "1.10.0" }), [k1]), trustOf(1, k1), { now: NOW, lastTrustedVersion: "1.9.0" });
  });

  it("refuses another component's release (MismatchedComponent, mix-and-match)", () => {
    const env = signRelease(manifest({ component: "update-cache" }), [k1]);
    refused(() => verifyEnvelope(env, trustOf(1, k1), { component: "rdp-worker", now: NOW }), "MismatchedComponent");
  });

  it("refuses a correctly signed document of another payload type (WrongPayloadType)", () => {
    const env = signEnvelope(TRUST_PAYLOAD_TYPE, Buffer.from(JSON.stringify(manifest())), [k1]);
    refused(() => verifyEnvelope(env, trustOf(1, k1), { now: NOW }), "WrongPayloadType");
    const relabelled: Envelope = { ...signRelease(manifest(), [k1]), payloadType: TRUST_PAYLOAD_TYPE };
    refused(() => verifyEnvelope({ ...relabelled, payloadType: RELEASE_PAYLOAD_TYPE + "x" }, trustOf(1, k1), { now: NOW }), "WrongPayloadType");
  });

  it("parses the payload only after the signatures verify, and refuses a signed but malformed manifest", () => {
    const env = signEnvelope(RELEASE_PAYLOAD_TYPE, Buffer.from('{"_type":"release","specVersion":1,"extra":1}'), [k1]);
    refused(() => verifyEnvelope(env, trustOf(1, k1), { now: NOW }), "MalformedManifest");
    const unsigned = signEnvelope(RELEASE_PAYLOAD_TYPE, Buffer.from("[[[[[[[[[[[[[[["), [stranger]);
    refused(() => verifyEnvelope(unsigned, trustOf(1, k1), { now: NOW }), "UnknownKey");
  });

  it("refuses malformed envelopes and trust sets", () => {
    const env = signRelease(manifest(), [k1]);
    refused(() => verifyEnvelope(null, trustOf(1, k1)), "MalformedEnvelope");
    refused(() => verifyEnvelope({ ...env, payload: env.payload + "!" }, trustOf(1, k1)), "MalformedEnvelope");
    refused(() => verifyEnvelope({ ...env, signatures: "x" }, trustOf(1, k1)), "MalformedEnvelope");
    refused(() => verifyEnvelope({ ...env, signatures: Array(17).fill(env.signatures[0]) }, trustOf(1, k1)), "MalformedEnvelope");
    refused(() => verifyEnvelope(env, { keys: [], threshold: 1 }), "BadTrust");
    refused(() => verifyEnvelope(env, trustOf(2, k1)), "BadTrust");
    refused(() => verifyEnvelope(env, { threshold: 1, keys: [{ keyId: "a", publicKey: "bm90IGEga2V5" }] }), "BadTrust");
    const same = spkiBase64(k1.publicKey);
    refused(() => verifyEnvelope(env, { threshold: 2, keys: [{ keyId: "a", publicKey: same }, { keyId: "b", publicKey: same }] }), "BadTrust");
  });

  it("orders semantic versions", () => {
    const sorted = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.10.0", "v2.0.0"];
    for (let i = 1; i < sorted.length; i++) assert.ok(compareSemver(sorted[i - 1]!, sorted[i]!) < 0, `${sorted[i - 1]} < ${sorted[i]}`);
    assert.equal(compareSemver("1.0.0+build.1", "1.0.0"), 0);
  });
});

describe("release trust rotation", () => {
  const old = trustOf(2, k1, k2, k3);
  const next = trustOf(1, k3, stranger);

  it("accepts a new set signed by the old threshold", () => {
    const rotated = verifyTrustRotation(old, next, signTrustRotation(next, [k1, k2]));
    assert.deepEqual([...rotated.keys.keys()].sort(), [k3.keyId, stranger.keyId].sort());
  });

  it("refuses a new set signed below the old threshold or by the new keys only", () => {
    refused(() => verifyTrustRotation(old, next, signTrustRotation(next, [k1])), "RotationRefused");
    refused(() => verifyTrustRotation(old, next, signTrustRotation(next, [stranger])), "RotationRefused");
  });

  it("refuses a rotation envelope signed for another set, or a release envelope used as one", () => {
    const other = trustOf(1, stranger);
    refused(() => verifyTrustRotation(old, next, signTrustRotation(other, [k1, k2])), "RotationRefused");
    refused(() => verifyTrustRotation(old, next, signRelease(manifest(), [k1, k2])), "RotationRefused");
    refused(() => verifyTrustRotation(old, next, { nonsense: true }), "RotationRefused");
  });
});
