/**
 * The agent's verified sync state (agent/sync/snapshot-sync.ts) against
 * crafted snapshots signed with real Ed25519 keys: every rejection leaves the
 * last good snapshot in force (checkpoint bytes, trust floor, subscribers)
 * and is visible in the status file and the metrics text.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateNodeKey, type StoredIdentity } from "../../agent/enroll/identity-store.js";
import { MembershipSync } from "../../agent/sync/snapshot-sync.js";
import { metricsText, readStatus } from "../../agent/sync/status.js";
import { sampleHeader, samplePayload, signedSnapshotWithNesting } from "../../lib/snapshot/fixtures.js";
import { keyIdOf, signAndEncodeSnapshot } from "../../lib/snapshot/format.js";

const CLUSTER = "eu-1";
const NODE = "eu-1.node-a";
const T0 = new Date("2025-01-01T00:00:00.000Z");

function rawPublic(key: KeyObject): string {
  const jwk = key.export({ format: "jwk" });
  return Buffer.from(String(jwk.x), "base64url").toString("base64");
}

function identityIn(dir: string, publicKey: KeyObject): StoredIdentity {
  const k = generateNodeKey();
  return {
    dir,
    info: { server: "https://127.0.0.1:1", cluster: CLUSTER, node: NODE, joinRequest: "jr", snapshotKey: { keyId: keyIdOf(publicKey), publicKey: rawPublic(publicKey) }, serial: "01", notBefore: T0.toISOString(), notAfter: "2030-01-01T00:00:00.000Z" },
    key: k.privateKey,
    keyPem: "",
    certPem: "",
    caPem: "",
    serverCaPem: "",
  };
}

describe("agent sync: a rejected snapshot changes nothing and is reported", () => {
  const cluster = generateKeyPairSync("ed25519");
  const other = generateKeyPairSync("ed25519");
  const keyId = keyIdOf(cluster.publicKey);
  let dir: string;
  let now: Date;
  let sync: MembershipSync;
  let seen: number[];

  function snap(o: { serial?: number; term?: number; node?: string; cluster?: string; issuedAt?: Date; lifetimeMs?: number; key?: KeyObject; payloadNode?: string } = {}): Buffer {
    const key = o.key ?? cluster.privateKey;
    const node = o.node ?? NODE;
    const header = sampleHeader({ keyId: keyIdOf(key), cluster: o.cluster ?? CLUSTER, node, serial: o.serial ?? 5, authorityTerm: o.term ?? 3, issuedAt: o.issuedAt ?? T0, lifetimeMs: o.lifetimeMs });
    return signAndEncodeSnapshot(header, samplePayload(1, { node: o.payloadNode ?? node }), key).bytes;
  }

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "agent-sync-"));
    now = new Date(T0.getTime() + 60_000);
    seen = [];
    sync = new MembershipSync({ identity: identityIn(dir, cluster.publicKey), now: () => now, maxBytes: 64 * 1024 });
    sync.subscribe((s) => seen.push(s.header.serial));
    assert.equal(await sync.boot(), undefined);
    assert.deepEqual(seen, [], "nothing is handed out before the first verified snapshot");
    const first = await sync.offer(snap({ serial: 5, term: 3 }));
    assert.equal(first.kind, "accepted");
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** Serial 6, validly signed; the payload carries a member `depth` arrays deep (envelope and payload add 2). */
  const nested = (depth: number): Buffer => {
    const header = sampleHeader({ keyId, cluster: CLUSTER, node: NODE, serial: 6, authorityTerm: 3, issuedAt: T0 });
    return signedSnapshotWithNesting(header, samplePayload(1, { node: NODE }), cluster.privateKey, depth);
  };

  it("accepts a validly signed snapshot nested exactly at the depth limit", async () => {
    assert.equal((await sync.offer(nested(62))).kind, "accepted");
    assert.equal(sync.held()?.held.serial, 6);
  });

  const tampered = (): Buffer => {
    const b = snap({ serial: 6 });
    const s = b.toString("utf8").replace('"LOG_LEVEL":"info"', '"LOG_LEVEL":"warn"');
    assert.notEqual(s, b.toString("utf8"));
    return Buffer.from(s, "utf8");
  };

  const cases: Array<[string, () => Buffer, string]> = [
    ["a tampered payload", tampered, "BadSignature"],
    ["a snapshot signed by an unknown key", () => snap({ serial: 6, key: other.privateKey }), "UnknownKey"],
    ["a valid signature from another cluster's key, for another cluster", () => snap({ serial: 6, key: other.privateKey, cluster: "us-1" }), "UnknownKey"],
    ["a replayed older serial", () => snap({ serial: 4 }), "Rollback"],
    ["an expired snapshot", () => snap({ serial: 6, issuedAt: new Date(T0.getTime() - 3 * 86_400_000), lifetimeMs: 86_400_000 }), "Expired"],
    ["a snapshot of another node", () => snap({ serial: 6, node: "eu-1.node-b" }), "WrongNode"],
    ["a snapshot from an older authority term", () => snap({ serial: 9, term: 2 }), "OlderTerm"],
    ["an oversized body", () => Buffer.concat([snap({ serial: 6 }), Buffer.alloc(70 * 1024, 0x20)]), "Malformed"],
    ["a validly signed snapshot whose payload nests an array 10,000 deep", () => nested(10_000), "Malformed"],
    ["a validly signed snapshot nested one level above the limit", () => nested(63), "Malformed"],
    ["a 10,000-deep array as the whole body", () => Buffer.from("[".repeat(10_000) + "]".repeat(10_000)), "Malformed"],
  ];

  for (const [what, make, code] of cases) {
    it(`rejects ${what} (${code}) and keeps serial 5 in force`, async () => {
      const checkpoint = readFileSync(join(dir, "snapshot.json"));
      const trust = readFileSync(join(dir, "trust.json"), "utf8");
      const out = await sync.offer(make());
      assert.equal(out.kind, "rejected");
      assert.equal(out.kind === "rejected" ? out.error.code : "", code);
      assert.deepEqual(readFileSync(join(dir, "snapshot.json")), checkpoint, "checkpoint unchanged");
      assert.equal(readFileSync(join(dir, "trust.json"), "utf8"), trust, "trust floor unchanged");
      assert.equal(sync.held()?.held.serial, 5);
      assert.deepEqual(seen, [5], "subscribers saw only the good snapshot");
      const st = await readStatus(dir);
      assert.equal(st?.snapshot?.serial, 5);
      assert.equal(st?.lastRejection?.code, code);
      assert.equal(st?.rejections[code as keyof typeof st.rejections], 1);
      assert.match(metricsText([sync.status], now), new RegExp(`fabric_agent_snapshot_rejections_total\\{cluster="eu-1",node="eu-1.node-a",code="${code}"\\} 1`));
    });
  }

  it("treats the same serial as a no-op and accepts a newer one", async () => {
    assert.equal((await sync.offer(snap({ serial: 5 }))).kind, "unchanged");
    assert.equal((await sync.offer(snap({ serial: 7 }))).kind, "accepted");
    assert.deepEqual(seen, [5, 7]);
  });

  it("boots from its checkpoint after a restart, and still refuses the old serial", async () => {
    await sync.offer(snap({ serial: 8 }));
    const again = new MembershipSync({ identity: identityIn(dir, cluster.publicKey), now: () => now });
    const held = await again.boot();
    assert.equal(held?.serial, 8);
    assert.equal(held?.source, "checkpoint");
    assert.equal(again.status.bootedFromCheckpoint, true);
    assert.equal((await again.offer(snap({ serial: 6 }))).kind, "rejected");
  });
});
