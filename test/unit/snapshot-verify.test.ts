import assert from "node:assert/strict";
import { generateKeyPairSync, sign as edSign, type KeyObject } from "node:crypto";
import { sampleHeader, samplePayload, type SampleHeaderOptions } from "../../lib/snapshot/fixtures.js";
import { encodeSnapshot, keyIdOf, signedMessage, signSnapshot, type SignedSnapshot, type SnapshotPayload } from "../../lib/snapshot/format.js";
import {
  DEFAULT_MAX_SNAPSHOT_DEPTH,
  ErrBadSignature,
  ErrExpired,
  ErrMalformed,
  ErrOlderTerm,
  ErrRollback,
  ErrUnknownKey,
  ErrWrongCluster,
  ErrWrongNode,
  SnapshotError,
  inspectSnapshot,
  verifySnapshot,
  type SnapshotErrorCode,
  type VerifyContext,
} from "../../lib/snapshot/verify.js";

const ours = generateKeyPairSync("ed25519");
const otherCluster = generateKeyPairSync("ed25519");
const ourKeyId = keyIdOf(ours.publicKey);
const issuedAt = new Date("2025-01-01T00:00:00.000Z");
const NOW = new Date("2025-01-01T06:00:00.000Z");

/** A signed snapshot for node-0001 of eu-1 unless told otherwise. */
function snapshot(o: Partial<SampleHeaderOptions> & { key?: KeyObject } = {}): SignedSnapshot {
  const key = o.key ?? ours.privateKey;
  const header = sampleHeader({ issuedAt, ...o, keyId: o.keyId ?? keyIdOf(key) });
  return signSnapshot(header, samplePayload(1, { node: header.node }), key);
}

function bytes(s: SignedSnapshot): Buffer {
  return encodeSnapshot(s);
}

/** Re-serialises a (possibly modified) envelope without re-signing. */
function tamper(s: SignedSnapshot, edit: (copy: SignedSnapshot) => void): Buffer {
  const copy = structuredClone(s);
  edit(copy);
  return Buffer.from(JSON.stringify(copy), "utf8");
}

function ctx(o: Partial<VerifyContext> = {}): VerifyContext {
  return { trustedKeys: new Map([[ourKeyId, ours.publicKey]]), cluster: "eu-1", node: "node-0001", now: NOW, ...o };
}

function rejectsWith(code: SnapshotErrorCode) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof SnapshotError, `expected a SnapshotError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  };
}

describe("snapshot verification", () => {
  it("accepts a snapshot signed by a trusted key for this node (sign → verify round trip)", () => {
    const s = snapshot({ serial: 5 });
    const r = verifySnapshot(bytes(s), ctx());
    assert.equal(r.status, "accepted");
    assert.deepEqual(r.snapshot, s);
  });

  it("accepts a newer serial than the last applied one", () => {
    assert.equal(verifySnapshot(bytes(snapshot({ serial: 6 })), ctx({ lastSerial: 5, lastTerm: 1 })).status, "accepted");
  });

  it("accepts a newer authority term with a newer serial", () => {
    assert.equal(verifySnapshot(bytes(snapshot({ serial: 6, authorityTerm: 2 })), ctx({ lastSerial: 5, lastTerm: 1 })).status, "accepted");
  });

  it("reports the same serial under the same term as unchanged, not as an error", () => {
    const r = verifySnapshot(bytes(snapshot({ serial: 5 })), ctx({ lastSerial: 5, lastTerm: 1 }));
    assert.equal(r.status, "unchanged");
  });

  it("accepts the same serial under a newer term (the new authority supersedes)", () => {
    assert.equal(verifySnapshot(bytes(snapshot({ serial: 5, authorityTerm: 2 })), ctx({ lastSerial: 5, lastTerm: 1 })).status, "accepted");
  });

  it("verifies what was signed even when the bytes are not canonical (whitespace, member order)", () => {
    const s = snapshot();
    const pretty = Buffer.from(JSON.stringify({ signature: s.signature, payload: s.payload, header: s.header }, null, 2));
    assert.equal(verifySnapshot(pretty, ctx()).status, "accepted");
  });

  it("accepts a payload member added by a later v1 builder, covered by the signature", () => {
    const s = snapshot();
    const payload = { ...s.payload, routeCache: [{ to: "node-0002", via: "node-0003" }] };
    const signed = signSnapshot(s.header, payload, ours.privateKey);
    assert.equal(verifySnapshot(bytes(signed), ctx()).status, "accepted");
  });

  describe("rejects, each for its own reason", () => {
    const good = snapshot({ serial: 10, authorityTerm: 3 });
    const trust = { lastSerial: 10, lastTerm: 3 };
    const cases: Array<{ name: string; bytes: () => Uint8Array; ctx: VerifyContext; code: SnapshotErrorCode; type: new (...a: never[]) => SnapshotError }> = [
      {
        name: "an oversized body, before parsing it",
        bytes: () => Buffer.concat([bytes(good), Buffer.alloc(64, 0x20)]),
        ctx: ctx({ maxBytes: bytes(good).length + 63 }),
        code: "Malformed",
        type: ErrMalformed,
      },
      { name: "bytes that are not JSON", bytes: () => Buffer.from("{not json"), ctx: ctx(), code: "Malformed", type: ErrMalformed },
      { name: "bytes that are not UTF-8", bytes: () => Buffer.from([0x7b, 0xff, 0x7d]), ctx: ctx(), code: "Malformed", type: ErrMalformed },
      { name: "an envelope without a signature", bytes: () => tamper(good, (c) => delete (c as Partial<SignedSnapshot>).signature), ctx: ctx(), code: "Malformed", type: ErrMalformed },
      { name: "an envelope of an unknown format version", bytes: () => tamper(good, (c) => ((c.header as { formatVersion: number }).formatVersion = 2)), ctx: ctx(), code: "Malformed", type: ErrMalformed },
      {
        name: "a signature that is not 64 bytes of base64",
        bytes: () => tamper(good, (c) => (c.signature = c.signature.slice(4))),
        ctx: ctx(),
        code: "Malformed",
        type: ErrMalformed,
      },
      {
        name: "a string with an escaped lone surrogate",
        bytes: () => Buffer.from(bytes(good).toString("utf8").replace('"rack-1"', '"rack-\\ud800"')),
        ctx: ctx(),
        code: "Malformed",
        type: ErrMalformed,
      },
      {
        name: "a valid signature from another cluster's key (a key this node does not trust)",
        bytes: () => bytes(snapshot({ key: otherCluster.privateKey, cluster: "us-1", serial: 11, authorityTerm: 3 })),
        ctx: ctx(trust),
        code: "UnknownKey",
        type: ErrUnknownKey,
      },
      {
        name: "a tampered payload",
        bytes: () =>
          tamper(good, (c) => {
            const w = c.payload.workloads[1];
            if (w === undefined) throw new Error("fixture has no second workload");
            w.image = "registry.evil.example/backdoor:latest";
          }),
        ctx: ctx(trust),
        code: "BadSignature",
        type: ErrBadSignature,
      },
      {
        name: "a signature over another snapshot",
        bytes: () => tamper(good, (c) => (c.signature = snapshot({ serial: 99 }).signature)),
        ctx: ctx(trust),
        code: "BadSignature",
        type: ErrBadSignature,
      },
      {
        name: "the trusted key's signature on a header naming another cluster",
        bytes: () => bytes(snapshot({ cluster: "us-1", serial: 11, authorityTerm: 3 })),
        ctx: ctx(trust),
        code: "WrongCluster",
        type: ErrWrongCluster,
      },
      {
        name: "another node's snapshot",
        bytes: () => bytes(snapshot({ node: "node-0002", serial: 11, authorityTerm: 3 })),
        ctx: ctx(trust),
        code: "WrongNode",
        type: ErrWrongNode,
      },
      {
        name: "a signed payload whose identity is another node's under this node's header",
        bytes: () => {
          const header = sampleHeader({ issuedAt, keyId: ourKeyId, serial: 11, authorityTerm: 3 });
          const payload = samplePayload(2, { node: "node-0002" });
          // Signed by hand: signSnapshot refuses this inconsistency at build time.
          const signature = edSign(null, signedMessage(header, payload), ours.privateKey).toString("base64");
          return bytes({ header, payload, signature });
        },
        ctx: ctx(trust),
        code: "WrongNode",
        type: ErrWrongNode,
      },
      {
        name: "an older authority term (a fenced ex-leader), even with a newer serial",
        bytes: () => bytes(snapshot({ serial: 11, authorityTerm: 2 })),
        ctx: ctx(trust),
        code: "OlderTerm",
        type: ErrOlderTerm,
      },
      {
        name: "a replayed older serial",
        bytes: () => bytes(snapshot({ serial: 9, authorityTerm: 3 })),
        ctx: ctx(trust),
        code: "Rollback",
        type: ErrRollback,
      },
      {
        name: "an older serial under a newer term",
        bytes: () => bytes(snapshot({ serial: 9, authorityTerm: 4 })),
        ctx: ctx(trust),
        code: "Rollback",
        type: ErrRollback,
      },
      {
        name: "an expired snapshot",
        bytes: () => bytes(snapshot({ serial: 11, authorityTerm: 3, lifetimeMs: 3600_000 })),
        ctx: ctx(trust),
        code: "Expired",
        type: ErrExpired,
      },
      {
        name: "a snapshot that expires exactly now",
        bytes: () => bytes(snapshot({ serial: 11, authorityTerm: 3, lifetimeMs: NOW.getTime() - issuedAt.getTime() })),
        ctx: ctx(trust),
        code: "Expired",
        type: ErrExpired,
      },
      {
        name: "an expired re-send of the current serial (not unchanged)",
        bytes: () => bytes(snapshot({ serial: 10, authorityTerm: 3, lifetimeMs: 3600_000 })),
        ctx: ctx(trust),
        code: "Expired",
        type: ErrExpired,
      },
    ];
    for (const c of cases) {
      it(`rejects ${c.name} with ${c.type.name}`, () => {
        const b = c.bytes();
        assert.throws(() => verifySnapshot(b, c.ctx), rejectsWith(c.code));
        assert.throws(() => verifySnapshot(b, c.ctx), c.type);
      });
    }
  });

  describe("checks in a fixed order: the first failing check wins", () => {
    const trust = { lastSerial: 10, lastTerm: 3 };
    const cases: Array<{ name: string; bytes: () => Uint8Array; ctx: VerifyContext; code: SnapshotErrorCode }> = [
      {
        name: "an oversized body is Malformed even if it would verify",
        bytes: () => bytes(snapshot({ serial: 11, authorityTerm: 3 })),
        ctx: ctx({ ...trust, maxBytes: 100 }),
        code: "Malformed",
      },
      {
        name: "an unknown key is reported before its header's wrong cluster, node, term and serial",
        bytes: () => bytes(snapshot({ key: otherCluster.privateKey, cluster: "us-1", node: "node-0002", serial: 1, authorityTerm: 1, lifetimeMs: 1 })),
        ctx: ctx(trust),
        code: "UnknownKey",
      },
      {
        name: "a tampered header naming another node fails the signature, not the node check",
        bytes: () => tamper(snapshot({ serial: 11, authorityTerm: 3 }), (c) => (c.header.node = "node-0002")),
        ctx: ctx(trust),
        code: "BadSignature",
      },
      {
        name: "a tampered header lowering the serial fails the signature, not the rollback check",
        bytes: () => tamper(snapshot({ serial: 11, authorityTerm: 3 }), (c) => (c.header.serial = 1)),
        ctx: ctx(trust),
        code: "BadSignature",
      },
      {
        name: "a tampered payload smuggled as a duplicate JSON member fails the signature",
        bytes: () => {
          const s = snapshot({ serial: 11, authorityTerm: 3 });
          const evil = { ...s.payload, workloads: [] };
          const text = bytes(s).toString("utf8");
          return Buffer.from(`${text.slice(0, -1)},"payload":${JSON.stringify(evil)}}`);
        },
        ctx: ctx(trust),
        code: "BadSignature",
      },
      {
        name: "another cluster is reported before another node",
        bytes: () => bytes(snapshot({ cluster: "us-1", node: "node-0002", serial: 11, authorityTerm: 3 })),
        ctx: ctx(trust),
        code: "WrongCluster",
      },
      {
        name: "another node is reported before an older term",
        bytes: () => bytes(snapshot({ node: "node-0002", serial: 11, authorityTerm: 2 })),
        ctx: ctx(trust),
        code: "WrongNode",
      },
      {
        name: "an older term is reported before a rollback",
        bytes: () => bytes(snapshot({ serial: 9, authorityTerm: 2 })),
        ctx: ctx(trust),
        code: "OlderTerm",
      },
      {
        name: "a rollback is reported before expiry",
        bytes: () => bytes(snapshot({ serial: 9, authorityTerm: 3, lifetimeMs: 1000 })),
        ctx: ctx(trust),
        code: "Rollback",
      },
    ];
    for (const c of cases) {
      it(c.name, () => assert.throws(() => verifySnapshot(c.bytes(), c.ctx), rejectsWith(c.code)));
    }
  });

  describe("hostile nesting: a typed Malformed, never a stack overflow", () => {
    const nestedArray = (n: number): unknown => {
      let v: unknown = [];
      for (let i = 1; i < n; i++) v = [v];
      return v;
    };
    const nestedObject = (n: number): unknown => {
      let v: unknown = "leaf";
      for (let i = 0; i < n; i++) v = { k: v };
      return v;
    };
    /** Validly signed by the trusted key (by hand: signSnapshot checks the shape first), so the nesting is what is wrong with it. */
    const signedWith = (extra: Record<string, unknown>, serial = 11): Buffer => {
      const header = sampleHeader({ issuedAt, keyId: ourKeyId, serial, authorityTerm: 3 });
      const payload = { ...samplePayload(1, { node: header.node }), ...extra } as SnapshotPayload;
      const signature = edSign(null, signedMessage(header, payload), ours.privateKey).toString("base64");
      return bytes({ header, payload, signature });
    };
    const trust = { lastSerial: 10, lastTerm: 3 };

    it("keeps the limit well above the depth of a real snapshot", () => {
      // envelope > payload > workloads > workload > healthProbe > command: 6.
      assert.equal(DEFAULT_MAX_SNAPSHOT_DEPTH, 64);
    });

    const malformed: Array<{ name: string; bytes: () => Uint8Array }> = [
      { name: "a signed payload holding a 10,000-deep array", bytes: () => signedWith({ deep: nestedArray(10_000) }) },
      { name: "a signed payload holding a 10,000-deep object", bytes: () => signedWith({ deep: nestedObject(10_000) }) },
      { name: "a signed payload nested one level above the limit", bytes: () => signedWith({ deep: nestedArray(DEFAULT_MAX_SNAPSHOT_DEPTH - 1) }) },
      { name: "a signed workload whose env holds a 10,000-deep array", bytes: () => signedWith({ workloads: [{ ...samplePayload(1).workloads[0], env: { X: nestedArray(10_000) } }] }) },
      { name: "an unsigned 10,000-deep array as the whole body", bytes: () => Buffer.from("[".repeat(10_000) + "]".repeat(10_000)) },
      { name: "a 100,000-deep unterminated array", bytes: () => Buffer.from("[".repeat(100_000)) },
      { name: "4 MiB of opening brackets", bytes: () => Buffer.alloc(4 * 1024 * 1024, 0x5b) },
      {
        name: "a deep array appended to a genuine envelope (a closed member it may not have)",
        bytes: () => {
          const text = bytes(snapshot({ serial: 11, authorityTerm: 3 })).toString("utf8");
          return Buffer.from(`${text.slice(0, -1)},"x":${"[".repeat(10_000)}${"]".repeat(10_000)}}`);
        },
      },
      { name: "JSON null", bytes: () => Buffer.from("null") },
      { name: "a JSON string", bytes: () => Buffer.from('"snapshot"') },
      { name: "an empty body", bytes: () => Buffer.alloc(0) },
      { name: "a payload that is an array", bytes: () => tamper(snapshot(), (c) => ((c as unknown as { payload: unknown }).payload = [])) },
      { name: "a payload member holding NaN-like junk that JSON cannot hold", bytes: () => Buffer.from(bytes(snapshot()).toString("utf8").replace('"generation":', '"generation":1e999,"g":')) },
    ];
    for (const c of malformed) {
      it(`rejects ${c.name} as Malformed`, () => {
        const b = c.bytes();
        assert.throws(() => verifySnapshot(b, ctx(trust)), rejectsWith("Malformed"));
        assert.throws(() => inspectSnapshot(b, ctx(trust)), ErrMalformed);
      });
    }

    it("names the limit in the rejection", () => {
      assert.throws(() => verifySnapshot(signedWith({ deep: nestedArray(10_000) }), ctx(trust)), /malformed snapshot: nested deeper than 64 levels/);
    });

    it("accepts a signed snapshot nested exactly at the limit", () => {
      // Envelope (1) and payload (2) hold the member: 2 + 62 = 64.
      const r = verifySnapshot(signedWith({ deep: nestedArray(DEFAULT_MAX_SNAPSHOT_DEPTH - 2) }), ctx(trust));
      assert.equal(r.status, "accepted");
    });

    it("accepts deep-looking nesting inside a string", () => {
      const w = samplePayload(1).workloads[0];
      assert.ok(w !== undefined);
      const brackets = "[".repeat(10_000) + "{".repeat(10_000) + '\\"[';
      const r = verifySnapshot(signedWith({ workloads: [{ ...w, env: { ...w.env, WEIRD: brackets }, args: [brackets] }] }), ctx(trust));
      assert.equal(r.status, "accepted");
      assert.equal(r.snapshot.payload.workloads[0]?.env.WEIRD, brackets);
    });

    it("throws nothing but a SnapshotError for byte-level damage anywhere in a genuine snapshot", () => {
      const genuine = bytes(snapshot({ serial: 11, authorityTerm: 3 }));
      let seed = 7;
      const rand = (n: number): number => {
        seed = (seed * 1103515245 + 12345) >>> 0;
        return seed % n;
      };
      const junk = [0x5b, 0x5d, 0x7b, 0x7d, 0x22, 0x5c, 0x00, 0xff, 0x2c, 0x3a, 0x30, 0x65];
      for (let k = 0; k < 300; k++) {
        const b = Buffer.from(genuine);
        for (let e = 0; e < 1 + rand(4); e++) b[rand(b.length)] = junk[rand(junk.length)] ?? 0;
        try {
          verifySnapshot(b, ctx(trust));
        } catch (err) {
          assert.ok(err instanceof SnapshotError, `mutation ${k}: ${String(err)}`);
        }
      }
    });
  });

  it("defaults the size limit to 4 MiB", () => {
    const big = Buffer.alloc(4 * 1024 * 1024 + 1, 0x20);
    assert.throws(() => verifySnapshot(big, ctx()), /exceeds the limit of 4194304/);
  });

  it("reports expiry instead of throwing it when inspecting", () => {
    const r = inspectSnapshot(bytes(snapshot({ lifetimeMs: 1000 })), ctx());
    assert.equal(r.expired, true);
    assert.equal(r.status, "accepted");
  });

  it("treats a trusted key of the wrong type as a configuration error, not a snapshot rejection", () => {
    const s = snapshot();
    assert.throws(() => verifySnapshot(bytes(s), ctx({ trustedKeys: new Map([[ourKeyId, ours.privateKey]]) })), TypeError);
  });

  it("refuses an invalid clock rather than treating every snapshot as fresh", () => {
    assert.throws(() => verifySnapshot(bytes(snapshot()), ctx({ now: new Date(Number.NaN) })), TypeError);
  });

  it("carries the facts of the rejection on the error", () => {
    try {
      verifySnapshot(bytes(snapshot({ serial: 3 })), ctx({ lastSerial: 7 }));
      assert.fail("expected a rollback");
    } catch (err) {
      assert.ok(err instanceof ErrRollback);
      assert.equal(err.serial, 3);
      assert.equal(err.lastSerial, 7);
      assert.equal(err.message, "snapshot serial 3 is lower than last applied serial 7");
    }
  });
});
