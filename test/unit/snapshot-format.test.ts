import assert from "node:assert/strict";
import { createHash, generateKeyPairSync, verify as edVerify } from "node:crypto";
import { canonicalize } from "../../lib/snapshot/canonical-json.js";
import { ErrMalformed } from "../../lib/snapshot/errors.js";
import { sampleHeader, samplePayload } from "../../lib/snapshot/fixtures.js";
import { encodeSnapshot, keyIdOf, signAndEncodeCanonicalAsync, signAndEncodeSnapshot, signAndEncodeSnapshotAsync, SIGNATURE_DOMAIN, signedMessage, signSnapshot, type SnapshotHeader } from "../../lib/snapshot/format.js";
import { snapshotKeyIdentity } from "../../lib/crypto/cluster-keys.js";

describe("snapshot format", () => {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const keyId = keyIdOf(publicKey);

  describe("keyIdOf", () => {
    it("is the first 16 hex digits of the sha256 of the raw 32-byte public key", () => {
      const raw = publicKey.export({ format: "der", type: "spki" }).subarray(-32);
      assert.equal(keyId, createHash("sha256").update(raw).digest("hex").slice(0, 16));
    });

    it("matches the key id the cluster key generator publishes", () => {
      const raw = publicKey.export({ format: "der", type: "spki" }).subarray(-32);
      assert.equal(keyId, snapshotKeyIdentity(raw).keyId);
    });

    it("gives the public key's id for the private half", () => assert.equal(keyIdOf(privateKey), keyId));

    it("refuses a key that is not ed25519", () => {
      const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
      assert.throws(() => keyIdOf(ec.publicKey), TypeError);
    });
  });

  describe("signSnapshot", () => {
    it("signs the domain prefix plus the canonical header and payload", () => {
      const header = sampleHeader({ keyId });
      const payload = samplePayload(1);
      const s = signSnapshot(header, payload, privateKey);
      const message = Buffer.from(SIGNATURE_DOMAIN + canonicalize({ header, payload }), "utf8");
      assert.deepEqual(signedMessage(header, payload), message);
      assert.ok(edVerify(null, message, publicKey, Buffer.from(s.signature, "base64")));
      assert.equal(Buffer.from(s.signature, "base64").length, 64);
    });

    it("is deterministic: the same input gives the same bytes", () => {
      const a = encodeSnapshot(signSnapshot(sampleHeader({ keyId }), samplePayload(7, { node: "node-0001" }), privateKey));
      const b = encodeSnapshot(signSnapshot(sampleHeader({ keyId }), samplePayload(7, { node: "node-0001" }), privateKey));
      assert.deepEqual(a, b);
    });

    it("encodes as the canonical JSON of the envelope", () => {
      const s = signSnapshot(sampleHeader({ keyId }), samplePayload(2, { node: "node-0001" }), privateKey);
      const bytes = encodeSnapshot(s);
      assert.equal(bytes.toString("utf8"), canonicalize(s));
      assert.deepEqual(JSON.parse(bytes.toString("utf8")), s);
    });

    it("signs and encodes in one pass to exactly the bytes of encodeSnapshot(signSnapshot(...))", () => {
      for (const i of [1, 2, 3]) {
        const header = sampleHeader({ keyId, node: `node-000${i}`, serial: i });
        const payload = samplePayload(i);
        const once = signAndEncodeSnapshot(header, payload, privateKey);
        const twice = signSnapshot(header, payload, privateKey);
        assert.deepEqual(once.snapshot, twice);
        assert.deepEqual(once.bytes, encodeSnapshot(twice));
      }
    });

    it("signs on the thread pool to exactly the bytes of signAndEncodeSnapshot, with or without the canonical payload given", async () => {
      for (const i of [1, 2, 3]) {
        const header = sampleHeader({ keyId, node: `node-000${i}`, serial: i });
        const payload = samplePayload(i);
        const sync = signAndEncodeSnapshot(header, payload, privateKey);
        const plain = await signAndEncodeSnapshotAsync(header, payload, privateKey);
        const given = await signAndEncodeSnapshotAsync(header, payload, privateKey, canonicalize(payload));
        assert.deepEqual(plain.bytes, sync.bytes);
        assert.deepEqual(given.bytes, sync.bytes);
        assert.deepEqual(given.snapshot, sync.snapshot);
      }
      // Non-ASCII and escapes go through the same canonical form.
      const payload = samplePayload(1);
      payload.identity.group = "r\u00e4ck \"7\"\n\u{1F600}";
      const header = sampleHeader({ keyId });
      assert.deepEqual((await signAndEncodeSnapshotAsync(header, payload, privateKey, canonicalize(payload))).bytes, signAndEncodeSnapshot(header, payload, privateKey).bytes);
    });

    it("signs canonical payload bytes to exactly the bytes of signAndEncodeSnapshot, non-ASCII included", async () => {
      const payload = samplePayload(2);
      payload.identity.group = "r\u00e4ck \"7\"\n\u{1F600}";
      const header = sampleHeader({ keyId, node: "node-0002" });
      const bytes = await signAndEncodeCanonicalAsync(header, payload, privateKey, Buffer.from(canonicalize(payload), "utf8"));
      assert.deepEqual(bytes, signAndEncodeSnapshot(header, payload, privateKey).bytes);
      assert.throws(() => signAndEncodeCanonicalAsync({ ...header, serial: 1.5 }, payload, privateKey, Buffer.from(canonicalize(payload))), ErrMalformed);
    });

    it("checks a shared deep-frozen entry once and still refuses a bad one, frozen or not", () => {
      const header = sampleHeader({ keyId, node: "node-0003" });
      const shared = Object.freeze({ ...samplePayload(3).meshPeers[0], endpoints: Object.freeze(["10.0.0.1:4433"]), roles: Object.freeze(["relay-node"]) });
      for (const i of [1, 2]) {
        const payload = samplePayload(3);
        payload.meshPeers = [shared as (typeof payload.meshPeers)[0]];
        assert.doesNotThrow(() => signAndEncodeSnapshot(header, payload, privateKey), `payload ${i}`);
      }
      const bad = Object.freeze({ ...shared, nodeClass: "giant" });
      const withBad = samplePayload(3);
      withBad.meshPeers = [shared as (typeof withBad.meshPeers)[0], bad as unknown as (typeof withBad.meshPeers)[0]];
      assert.throws(() => signAndEncodeSnapshot(header, withBad, privateKey), /meshPeers\/1\/nodeClass/);
      // A thawed entry is checked every time: mutated after one good check, it is refused.
      const thawed = { ...samplePayload(3).meshPeers[0] } as Record<string, unknown>;
      const p = samplePayload(3);
      p.meshPeers = [thawed as unknown as (typeof p.meshPeers)[0]];
      signAndEncodeSnapshot(header, p, privateKey);
      thawed.endpoints = [7];
      assert.throws(() => signAndEncodeSnapshot(header, p, privateKey), /meshPeers\/0\/endpoints\/0/);
    });

    it("makes the same checks when signing on the thread pool, before queueing anything", () => {
      assert.throws(() => signAndEncodeSnapshotAsync(sampleHeader({ keyId: "0000000000000000" }), samplePayload(1), privateKey), /not the signing key's id/);
      assert.throws(() => signAndEncodeSnapshotAsync(sampleHeader({ keyId }), samplePayload(1), publicKey), TypeError);
      assert.throws(() => signAndEncodeSnapshotAsync({ ...sampleHeader({ keyId }), serial: 1.5 }, samplePayload(1), privateKey), ErrMalformed);
    });

    it("refuses a header whose keyId is not the signing key's", () => {
      assert.throws(() => signSnapshot(sampleHeader({ keyId: "0000000000000000" }), samplePayload(1), privateKey), /not the signing key's id/);
    });

    it("refuses a public key", () => {
      assert.throws(() => signSnapshot(sampleHeader({ keyId }), samplePayload(1), publicKey), TypeError);
    });

    const malformed: Array<{ name: string; header?: (h: SnapshotHeader) => unknown; payload?: (p: Record<string, unknown>) => void }> = [
      { name: "an unsupported format version", header: (h) => ({ ...h, formatVersion: 2 }) },
      { name: "an unknown header member", header: (h) => ({ ...h, notBefore: h.issuedAt }) },
      { name: "a fractional serial", header: (h) => ({ ...h, serial: 1.5 }) },
      { name: "a negative authority term", header: (h) => ({ ...h, authorityTerm: -1 }) },
      { name: "a timestamp with an offset instead of Z", header: (h) => ({ ...h, expiresAt: "2025-01-02T00:00:00+01:00" }) },
      { name: "expiresAt before issuedAt", header: (h) => ({ ...h, expiresAt: "2024-12-31T00:00:00.000Z" }) },
      { name: "a payload identity naming another node", payload: (p) => ((p.identity as { name: string }).name = "node-9999") },
      { name: "a container workload without an image", payload: (p) => delete (p.workloads as Array<Record<string, unknown>>)[1]?.image },
      { name: "a VPN assignment without hasCredentialRef", payload: (p) => delete (p.vpnAssignments as Array<Record<string, unknown>>)[0]?.hasCredentialRef },
      { name: "an artifact hash that is not hex sha256", payload: (p) => (((p.updates as Array<Record<string, unknown>>)[0]?.artifact as Record<string, unknown>).sha256 = "abc") },
    ];
    for (const c of malformed) {
      it(`refuses ${c.name} at build time`, () => {
        const header = (c.header ? c.header(sampleHeader({ keyId })) : sampleHeader({ keyId })) as SnapshotHeader;
        const payload = samplePayload(1);
        c.payload?.(payload as unknown as Record<string, unknown>);
        assert.throws(() => signSnapshot(header, payload, privateKey), ErrMalformed);
      });
    }
  });
});
