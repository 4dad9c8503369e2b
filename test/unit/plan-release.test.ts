/** The release controller's pure decisions: trust acceptance and rotation, and the outcome of one Release. */
import assert from "node:assert/strict";
import { generateSigningKey, signRelease, signTrustRotation, spkiBase64, type ReleaseManifest, type TrustSet } from "../../lib/release/index.js";
import { MAX_RECHECK_MS, payloadDigest, planRelease, planTrust, type ReleaseInput } from "../../controllers/release/plan.js";

const [a, b, c] = [generateSigningKey(), generateSigningKey(), generateSigningKey()];
const set = (threshold: number, ...ks: Array<typeof a>): TrustSet => ({ threshold, keys: ks.map((k) => ({ keyId: k.keyId, publicKey: spkiBase64(k.publicKey) })) });
const NOW = new Date("2026-12-05T00:00:00Z");
const sha = "e".repeat(64);
const manifest = (over: Partial<ReleaseManifest> = {}): ReleaseManifest => ({
  _type: "release",
  specVersion: 1,
  component: "rdp-worker",
  version: "2.0.0",
  expires: "2027-01-01T00:00:00Z",
  artifacts: [{ os: "linux", arch: "amd64", length: 10, sha256: sha }],
  ...over,
});
const input = (over: Partial<ReleaseInput> = {}, m: Partial<ReleaseManifest> = {}): ReleaseInput => ({
  spec: { cluster: "c", component: "rdp-worker", version: m.version ?? "2.0.0", envelope: signRelease(manifest(m), [a, b]) },
  trust: { trust: set(2, a, b, c) },
  highWater: undefined,
  trustedPayload: undefined,
  twinVerified: false,
  present: new Set([sha]),
  now: NOW,
  ...over,
});

describe("release controller plan", () => {
  describe("trust", () => {
    it("accepts the first set as written, and uses an unchanged one", () => {
      const d = planTrust(undefined, set(2, a, b));
      assert.equal(d.kind, "accept");
      assert.equal(d.kind === "accept" && d.how, "initial");
      assert.equal(planTrust(set(2, a, b), { ...set(2, b, a), keys: [...set(2, b, a).keys] }).kind, "use");
    });

    it("keeps the accepted set when the spec changes without a rotation, or with one below the threshold", () => {
      const next = set(1, c);
      assert.equal(planTrust(set(2, a, b), next).kind, "keep");
      assert.equal(planTrust(set(2, a, b), { ...next, rotation: signTrustRotation(next, [a]) }).kind, "keep");
      assert.equal(planTrust(set(2, a, b), { ...next, rotation: signTrustRotation(next, [c]) }).kind, "keep");
    });

    it("accepts a rotation signed by the accepted threshold", () => {
      const next = set(1, c);
      const d = planTrust(set(2, a, b), { ...next, rotation: signTrustRotation(next, [a, b]) });
      assert.equal(d.kind, "accept");
      assert.equal(d.kind === "accept" && d.how, "rotation");
    });

    it("trusts nothing without releaseTrust, and nothing from an invalid first set", () => {
      assert.deepEqual(planTrust(set(1, a), undefined).kind, "none");
      assert.equal(planTrust(undefined, { keys: [], threshold: 1 }).kind, "none");
      assert.equal(planTrust(set(1, a), { keys: [], threshold: 1 }).kind, "keep");
    });
  });

  describe("release", () => {
    it("verifies a release with every artifact stored and raises the high-water version", () => {
      const p = planRelease(input({ highWater: "1.0.0" }));
      assert.equal(p.verified, true);
      assert.equal(p.reason, "Verified");
      assert.equal(p.newHighWater, "2.0.0");
      assert.deepEqual(p.signedBy, [a.keyId, b.keyId]);
      assert.ok(p.requeueAfterMs !== undefined && p.requeueAfterMs <= MAX_RECHECK_MS);
    });

    it("waits as ArtifactMissing (signatures accepted) while an artifact is not stored", () => {
      const p = planRelease(input({ present: new Set() }));
      assert.equal(p.verified, false);
      assert.equal(p.reason, "ArtifactMissing");
      assert.equal(p.signedBy.length, 2);
      assert.equal(p.newHighWater, "2.0.0");
    });

    it("refuses a lower version than the high water unless this payload was trusted before", () => {
      const i = input({ highWater: "3.0.0" });
      assert.equal(planRelease(i).reason, "RollbackRefused");
      assert.equal(planRelease({ ...i, trustedPayload: payloadDigest(i.spec.envelope) }).reason, "Verified");
    });

    it("rejects differing spec copies, a duplicate version, a missing cluster or trust", () => {
      assert.equal(planRelease({ ...input(), spec: { ...input().spec, version: "2.0.1" } }).reason, "MismatchedVersion");
      assert.equal(planRelease({ ...input(), spec: { ...input().spec, component: "other" } }).reason, "MismatchedComponent");
      assert.equal(planRelease(input({ twinVerified: true })).reason, "DuplicateVersion");
      assert.equal(planRelease(input({ trust: { reason: "ClusterNotFound", message: "x" } })).reason, "ClusterNotFound");
      assert.equal(planRelease(input({ trust: { reason: "NoTrust", message: "x" } })).verified, false);
    });

    it("turns an expired release down even after it was verified", () => {
      const i = input();
      assert.equal(planRelease({ ...i, trustedPayload: payloadDigest(i.spec.envelope), now: new Date("2027-01-01T00:00:00Z") }).reason, "Expired");
    });
  });
});
