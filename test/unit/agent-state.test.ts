import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CHECKPOINT_FILE, loadCheckpoint, saveCheckpoint, type CheckpointContext, type CheckpointEvent } from "../../agent/state/checkpoint.js";
import { advanceTrust, loadTrustState, saveTrustState, TRUST_FILE, type TrustEvent, type TrustState } from "../../agent/state/trust.js";
import { sampleHeader, samplePayload, type SampleHeaderOptions } from "../../lib/snapshot/fixtures.js";
import { encodeSnapshot, keyIdOf, signSnapshot } from "../../lib/snapshot/format.js";
import { ErrRollback, verifySnapshot, type SnapshotErrorCode } from "../../lib/snapshot/verify.js";

const keys = generateKeyPairSync("ed25519");
const keyId = keyIdOf(keys.publicKey);
const issuedAt = new Date("2025-01-01T00:00:00.000Z");
const NOW = new Date("2025-01-01T06:00:00.000Z");

function snapshotBytes(o: Partial<SampleHeaderOptions> = {}): Buffer {
  const header = sampleHeader({ issuedAt, keyId, ...o });
  return encodeSnapshot(signSnapshot(header, samplePayload(1, { node: header.node }), keys.privateKey));
}

function ctx(events: CheckpointEvent[], o: Partial<CheckpointContext> = {}): CheckpointContext {
  return {
    trustedKeys: new Map([[keyId, keys.publicKey]]),
    cluster: "eu-1",
    node: "node-0001",
    now: NOW,
    report: (e) => events.push(e),
    ...o,
  };
}

describe("agent state", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "fabric-agent-state-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  describe("snapshot checkpoint", () => {
    it("saves the exact bytes with mode 0600 and leaves no temporary file", async () => {
      const bytes = snapshotBytes();
      await saveCheckpoint(dir, bytes);
      assert.deepEqual(await readFile(join(dir, CHECKPOINT_FILE)), bytes);
      assert.equal((await stat(join(dir, CHECKPOINT_FILE))).mode & 0o777, 0o600);
      assert.deepEqual(await readdir(dir), [CHECKPOINT_FILE]);
    });

    it("creates a missing state directory with mode 0700", async () => {
      const nested = join(dir, "memberships", "eu-1");
      await saveCheckpoint(nested, snapshotBytes());
      assert.equal((await stat(nested)).mode & 0o777, 0o700);
    });

    it("replaces the previous checkpoint", async () => {
      await saveCheckpoint(dir, snapshotBytes({ serial: 1 }));
      await saveCheckpoint(dir, snapshotBytes({ serial: 2 }));
      const loaded = await loadCheckpoint(dir, ctx([]));
      assert.equal(loaded?.snapshot.header.serial, 2);
    });

    it("boots from the checkpoint after a restart", async () => {
      const bytes = snapshotBytes({ serial: 4 });
      const { snapshot } = verifySnapshot(bytes, ctx([]));
      await saveCheckpoint(dir, bytes);
      // "Restart": nothing in memory survives but the directory.
      const events: CheckpointEvent[] = [];
      const loaded = await loadCheckpoint(dir, ctx(events, { lastSerial: 4, lastTerm: 1 }));
      assert.deepEqual(loaded, { snapshot, stale: false });
      assert.deepEqual(events, []);
    });

    it("returns nothing when there is no checkpoint or no directory yet", async () => {
      assert.equal(await loadCheckpoint(dir, ctx([])), undefined);
      assert.equal(await loadCheckpoint(join(dir, "missing"), ctx([])), undefined);
    });

    it("ignores and sweeps the temporary file of a save that crashed before rename", async () => {
      const good = snapshotBytes({ serial: 3 });
      await saveCheckpoint(dir, good);
      // A crash mid-write: a torn temporary file next to the intact checkpoint.
      const torn = snapshotBytes({ serial: 4 }).subarray(0, 100);
      await writeFile(join(dir, `.${CHECKPOINT_FILE}.tmp-12345-abcdef`), torn, { mode: 0o600 });
      const events: CheckpointEvent[] = [];
      const loaded = await loadCheckpoint(dir, ctx(events));
      assert.equal(loaded?.snapshot.header.serial, 3);
      assert.deepEqual(events, [{ kind: "temp-removed", files: [`.${CHECKPOINT_FILE}.tmp-12345-abcdef`] }]);
      assert.deepEqual(await readdir(dir), [CHECKPOINT_FILE]);
    });

    it("ignores a crashed save's temporary file when no checkpoint was ever completed", async () => {
      await writeFile(join(dir, `.${CHECKPOINT_FILE}.tmp-1-00`), snapshotBytes());
      assert.equal(await loadCheckpoint(dir, ctx([])), undefined);
    });

    it("boots an expired checkpoint in stale mode and reports it", async () => {
      await saveCheckpoint(dir, snapshotBytes({ serial: 2, lifetimeMs: 3600_000 }));
      const events: CheckpointEvent[] = [];
      const loaded = await loadCheckpoint(dir, ctx(events));
      assert.equal(loaded?.stale, true);
      assert.equal(loaded?.snapshot.header.serial, 2);
      assert.deepEqual(events, [{ kind: "stale", file: join(dir, CHECKPOINT_FILE), expiresAt: "2025-01-01T01:00:00.000Z", serial: 2 }]);
      assert.deepEqual(await readdir(dir), [CHECKPOINT_FILE], "a stale checkpoint stays in place");
    });

    describe("moves a checkpoint it cannot use aside, reports it, and never throws", () => {
      const cases: Array<{ name: string; write: () => Buffer; ctx?: Partial<CheckpointContext>; code: SnapshotErrorCode }> = [
        { name: "garbage bytes", write: () => Buffer.from("\x00\x01 not a snapshot"), code: "Malformed" },
        { name: "a truncated file", write: () => snapshotBytes().subarray(0, 200), code: "Malformed" },
        { name: "an empty file", write: () => Buffer.alloc(0), code: "Malformed" },
        {
          name: "an edited payload",
          write: () => Buffer.from(snapshotBytes().toString("utf8").replace('"rack-1"', '"rack-2"')),
          code: "BadSignature",
        },
        { name: "a checkpoint signed by a key no longer trusted", write: () => snapshotBytes(), ctx: { trustedKeys: new Map() }, code: "UnknownKey" },
        { name: "another node's snapshot copied in", write: () => snapshotBytes({ node: "node-0002" }), code: "WrongNode" },
        { name: "a checkpoint older than the trust floor (restored backup)", write: () => snapshotBytes({ serial: 3 }), ctx: { lastSerial: 5, lastTerm: 1 }, code: "Rollback" },
        { name: "a checkpoint from an older authority term", write: () => snapshotBytes({ serial: 9 }), ctx: { lastSerial: 5, lastTerm: 2 }, code: "OlderTerm" },
        { name: "a checkpoint over the size limit", write: () => snapshotBytes(), ctx: { maxBytes: 512 }, code: "Malformed" },
      ];
      for (const c of cases) {
        it(`moves aside ${c.name}`, async () => {
          await writeFile(join(dir, CHECKPOINT_FILE), c.write(), { mode: 0o600 });
          const events: CheckpointEvent[] = [];
          const loaded = await loadCheckpoint(dir, ctx(events, c.ctx));
          assert.equal(loaded, undefined);
          assert.equal(events.length, 1);
          const e = events[0];
          assert.ok(e?.kind === "corrupt");
          assert.equal(e.error.code, c.code);
          assert.equal(e.movedTo, `${CHECKPOINT_FILE}.corrupt-2025-01-01T060000.000Z`);
          assert.deepEqual(await readdir(dir), [`${CHECKPOINT_FILE}.corrupt-2025-01-01T060000.000Z`]);
        });
      }
    });

    it("boots cleanly again after a corrupt checkpoint was moved aside", async () => {
      await writeFile(join(dir, CHECKPOINT_FILE), "{");
      await loadCheckpoint(dir, ctx([]));
      const events: CheckpointEvent[] = [];
      assert.equal(await loadCheckpoint(dir, ctx(events, { now: new Date(NOW.getTime() + 1000) })), undefined);
      assert.deepEqual(events, []);
    });
  });

  describe("trust state", () => {
    const membership = { cluster: "eu-1", node: "node-0001", now: NOW };
    const header = (serial: number, authorityTerm: number) => sampleHeader({ issuedAt, keyId, serial, authorityTerm });

    it("round-trips through the state directory with mode 0600", async () => {
      const state = advanceTrust(undefined, header(7, 2), NOW);
      await saveTrustState(dir, state);
      assert.deepEqual(await loadTrustState(dir, membership), state);
      assert.equal((await stat(join(dir, TRUST_FILE))).mode & 0o777, 0o600);
    });

    it("starts empty", async () => {
      assert.equal(await loadTrustState(dir, membership), undefined);
    });

    const advances: Array<{ name: string; prev?: [number, number]; next: [number, number]; want: [number, number] }> = [
      { name: "takes the first snapshot's term and serial", next: [3, 1], want: [3, 1] },
      { name: "moves forward with a newer serial", prev: [3, 1], next: [4, 1], want: [4, 1] },
      { name: "moves forward with a newer term", prev: [3, 1], next: [4, 2], want: [4, 2] },
      { name: "never lowers the serial", prev: [9, 1], next: [4, 1], want: [9, 1] },
      { name: "never lowers the term", prev: [3, 5], next: [4, 2], want: [4, 5] },
    ];
    for (const c of advances) {
      it(`advancing ${c.name}`, () => {
        const prev = c.prev ? advanceTrust(undefined, header(c.prev[0], c.prev[1]), NOW) : undefined;
        const next = advanceTrust(prev, header(c.next[0], c.next[1]), NOW);
        assert.deepEqual([next.lastSerial, next.lastTerm], c.want);
      });
    }

    it("refuses to advance another membership's trust", () => {
      const prev = advanceTrust(undefined, header(1, 1), NOW);
      assert.throws(() => advanceTrust(prev, sampleHeader({ issuedAt, keyId, node: "node-0002" }), NOW), /advancing trust/);
    });

    const corrupt: Array<{ name: string; content: string }> = [
      { name: "a file that is not JSON", content: "{ torn" },
      { name: "another cluster's trust", content: JSON.stringify({ formatVersion: 1, cluster: "us-1", node: "node-0001", lastTerm: 1, lastSerial: 1, updatedAt: "" }) },
      { name: "a negative serial", content: JSON.stringify({ formatVersion: 1, cluster: "eu-1", node: "node-0001", lastTerm: 1, lastSerial: -1, updatedAt: "" }) },
      { name: "an unknown format version", content: JSON.stringify({ formatVersion: 9 }) },
    ];
    for (const c of corrupt) {
      it(`moves aside ${c.name} and reports it`, async () => {
        await writeFile(join(dir, TRUST_FILE), c.content);
        const events: TrustEvent[] = [];
        assert.equal(await loadTrustState(dir, { ...membership, report: (e) => events.push(e) }), undefined);
        assert.equal(events[0]?.kind, "corrupt");
        assert.deepEqual(await readdir(dir), [`${TRUST_FILE}.corrupt-2025-01-01T060000.000Z`]);
      });
    }
  });

  it("keeps rejecting a replayed snapshot across a restart (checkpoint, then trust, then boot)", async () => {
    const apply = async (bytes: Buffer, trust: TrustState | undefined): Promise<TrustState> => {
      const { snapshot } = verifySnapshot(bytes, ctx([], { lastSerial: trust?.lastSerial, lastTerm: trust?.lastTerm }));
      await saveCheckpoint(dir, bytes);
      const next = advanceTrust(trust, snapshot.header, NOW);
      await saveTrustState(dir, next);
      return next;
    };
    const old = snapshotBytes({ serial: 1 });
    let trust = await apply(old, undefined);
    trust = await apply(snapshotBytes({ serial: 2, authorityTerm: 2 }), trust);

    // Restart.
    const booted = await loadTrustState(dir, { cluster: "eu-1", node: "node-0001", now: NOW });
    assert.deepEqual(booted, trust);
    const checkpoint = await loadCheckpoint(dir, ctx([], { lastSerial: booted?.lastSerial, lastTerm: booted?.lastTerm }));
    assert.equal(checkpoint?.snapshot.header.serial, 2);
    assert.equal(checkpoint?.stale, false);
    assert.throws(() => verifySnapshot(old, ctx([], { lastSerial: booted?.lastSerial, lastTerm: 1 })), ErrRollback);
  });
});
