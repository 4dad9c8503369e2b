/**
 * Seeded fuzz of release envelopes: mutated envelopes, signed garbage
 * payloads and wrong-typed fields are refused with a ReleaseError, never
 * accepted and never another exception. The seed is printed; rerun one with
 * RELEASE_FUZZ_SEED=<seed>.
 */
import assert from "node:assert/strict";
import { generateSigningKey, ReleaseError, RELEASE_PAYLOAD_TYPE, signEnvelope, signRelease, spkiBase64, verifyEnvelope } from "../../lib/release/index.js";
import { seeded } from "../support/random.js";

const seed = Number(process.env.RELEASE_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const key = generateSigningKey();
const trust = { threshold: 1, keys: [{ keyId: key.keyId, publicKey: spkiBase64(key.publicKey) }] };
const NOW = new Date("2026-12-05T00:00:00Z");
const good = signRelease(
  { _type: "release", specVersion: 1, component: "rdp-worker", version: "2.0.0", expires: "2027-01-01T00:00:00Z", artifacts: [{ os: "linux", arch: "amd64", length: 10, sha256: "b".repeat(64) }] },
  [key],
);

describe(`release envelope fuzz (seed ${seed})`, () => {
  before(() => console.log(`      release fuzz seed: ${seed}`));
  const rnd = seeded(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const junk = (): unknown =>
    pick([null, 0, -1, 1e308, "", "x".repeat(Math.floor(rnd() * 300)), [], {}, [[[[]]]], true, { keyid: 1 }, "AAAA", "====", "\u0000"]);

  function mutate(): { value: unknown; signed: boolean } {
    const env = JSON.parse(JSON.stringify(good)) as Record<string, unknown> & { signatures: Array<Record<string, unknown>> };
    switch (Math.floor(rnd() * 8)) {
      case 0: {
        const bytes = Buffer.from(good.payload, "base64");
        const i = Math.floor(rnd() * bytes.length);
        bytes[i] = (bytes[i]! + 1 + Math.floor(rnd() * 255)) & 0xff;
        env.payload = bytes.toString("base64");
        return { value: env, signed: false };
      }
      case 1: {
        const sig = Buffer.from(good.signatures[0]!.sig, "base64");
        sig[Math.floor(rnd() * sig.length)] ^= 1 << Math.floor(rnd() * 8);
        env.signatures[0]!.sig = sig.toString("base64");
        return { value: env, signed: false };
      }
      case 2:
        env[pick(["payloadType", "payload", "signatures"])] = junk();
        return { value: env, signed: false };
      case 3:
        env.signatures[0]![pick(["keyid", "sig"])] = junk();
        return { value: env, signed: false };
      case 4:
        return { value: junk(), signed: false };
      case 5: {
        // garbage signed by the trusted key: only the manifest checks stand between it and use
        const len = Math.floor(rnd() * 200);
        const bytes = Buffer.from(Array.from({ length: len }, () => Math.floor(rnd() * 256)));
        return { value: signEnvelope(RELEASE_PAYLOAD_TYPE, bytes, [key]), signed: true };
      }
      case 6: {
        const m = JSON.parse(Buffer.from(good.payload, "base64").toString()) as Record<string, unknown>;
        m[pick(["component", "version", "expires", "artifacts", "specVersion", "_type", "migration", "healthCheck", "minAgentVersion"])] = junk();
        return { value: signEnvelope(RELEASE_PAYLOAD_TYPE, Buffer.from(JSON.stringify(m)), [key]), signed: true };
      }
      default: {
        const m = JSON.parse(Buffer.from(good.payload, "base64").toString()) as { artifacts: Array<Record<string, unknown>> };
        m.artifacts[0]![pick(["os", "arch", "length", "sha256", "url"])] = junk();
        return { value: signEnvelope(RELEASE_PAYLOAD_TYPE, Buffer.from(JSON.stringify(m)), [key]), signed: true };
      }
    }
  }

  it("accepts the unmutated envelope", () => {
    assert.equal(verifyEnvelope(good, trust, { now: NOW }).manifest.version, "2.0.0");
  });

  it("refuses 3,000 mutated envelopes with a ReleaseError (a validly signed, well-formed mutation may pass)", () => {
    for (let i = 0; i < 3000; i++) {
      const { value, signed } = mutate();
      try {
        const { manifest } = verifyEnvelope(value, trust, { now: NOW, component: "rdp-worker" });
        if (signed) {
          for (const a of manifest.artifacts) assert.ok(Number.isSafeInteger(a.length) && a.length >= 0 && /^[a-f0-9]{64}$/.test(a.sha256));
          continue;
        }
      } catch (err) {
        if (err instanceof ReleaseError) continue;
        assert.fail(`case ${i} (seed ${seed}) threw ${String(err)} for ${JSON.stringify(value)?.slice(0, 300)}`);
      }
      assert.fail(`case ${i} (seed ${seed}) was accepted: ${JSON.stringify(value)?.slice(0, 300)}`);
    }
  });
});
