/**
 * The snapshot builder at cluster scale against a real control plane
 * (embedded PostgreSQL, the running leader's builder): a cluster-wide mark
 * over more nodes than one signing chunk holds is signed and stored in
 * pipelined parts within fenced transactions of at most one batch (a
 * cluster-wide mark over more nodes is split into per-node marks). Every stored snapshot
 * verifies with the cluster's public key and matches its stored hashes,
 * serials and validity window; a change moves every serial by one and every
 * row up the change feed, with one notification per batch to the agent API; nothing
 * changed moves nothing; a deleted snapshot's serial is never reused.
 * Nodes and identities are inserted with SQL (enrollment is tested
 * elsewhere), like test/bench/snapshot-builder.bench.ts.
 */
import assert from "node:assert/strict";
import { createHash, createPublicKey } from "node:crypto";
import { rmSync } from "node:fs";
import type pg from "pg";
import { runControlPlane, type ControlPlane } from "../../controlplane/controlplane.js";
import { logger } from "../../lib/log.js";
import { canonicalize } from "../../lib/snapshot/canonical-json.js";
import { verifySnapshot } from "../../lib/snapshot/verify.js";
import { changesSince, clusterSerials, currentChangeSeq, expandClusterMarks, readDirty, SNAPSHOT_CHANGED_CHANNEL } from "../../lib/state/snapshots.js";
import { eventually, tempStateDir } from "../support/controlplane.js";
import { applyCluster } from "../support/enrollment.js";

const N = 700; // more than two signing chunks of 256
const BATCH = 300; // fewer than N: a cluster-wide mark is drained as per-node marks in ceil(N / BATCH) transactions
const CLUSTER = "bulk";

function sha256(b: string | Buffer): string {
  return createHash("sha256").update(b).digest("hex");
}

describe("snapshot builder: cluster-wide builds", function () {
  this.timeout(180_000);
  let cp: ControlPlane;
  let stateDir: string;
  let pool: pg.Pool;
  let trustedKeys: Map<string, ReturnType<typeof createPublicKey>>;

  before(async () => {
    stateDir = tempStateDir();
    cp = await runControlPlane({ stateDir, host: "127.0.0.1", port: 0, metricsPort: 0, fsync: false, log: logger("test-controlplane"), controllers: { identity: "test-snapbuild", snapshots: { batchSize: BATCH } } });
    await applyCluster(cp.api.kubeconfigPath, CLUSTER);
    pool = cp.db.pool;
    const k = await pool.query<{ snapshot_public_key: string; snapshot_key_id: string }>("SELECT snapshot_public_key, snapshot_key_id FROM clusters WHERE name = $1", [CLUSTER]);
    const row = k.rows[0];
    assert.ok(row !== undefined);
    const key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(row.snapshot_public_key, "base64").toString("base64url") }, format: "jwk" });
    trustedKeys = new Map([[row.snapshot_key_id, key]]);
    await pool.query(
      `INSERT INTO nodes (name, cluster, node_name, host_fingerprint, node_group)
       SELECT $2 || '.n-' || i, $2, 'n-' || i, 'sha256:' || md5(i::text) || md5((i+1)::text), 'rack-' || (i % 7) FROM generate_series(1, $1) i`,
      [N, CLUSTER],
    );
    await pool.query(
      `INSERT INTO node_identities (serial, node, cluster, public_key_fingerprint, not_before, not_after, status)
       SELECT md5('s' || i), $2 || '.n-' || i, $2, 'sha256:' || md5('k' || i), now(), now() + interval '1 day', 'active' FROM generate_series(1, $1) i`,
      [N, CLUSTER],
    );
  });
  after(async () => {
    await cp?.stop();
    if (stateDir !== undefined) rmSync(stateDir, { recursive: true, force: true });
  });

  const serials = () => clusterSerials(pool, CLUSTER);
  const markAll = async (): Promise<void> => {
    await pool.query("INSERT INTO snapshot_dirty (cluster, node) VALUES ($1, '*') ON CONFLICT (cluster, node) DO UPDATE SET marked_at = now()", [CLUSTER]);
    await eventually(async () => (await pool.query("SELECT 1 FROM snapshot_dirty WHERE cluster = $1", [CLUSTER])).rowCount === 0, 60_000);
  };

  /** Checks every stored snapshot of the cluster against its row and the cluster key; returns the payloads by node. */
  async function checkAll(expectSerial: number): Promise<Map<string, { group?: string }>> {
    const r = await pool.query<{ node: string; serial: string; term: string; payload_hash: string; hash: string; bytes: Buffer; issued_at: Date; expires_at: Date; refresh_at: Date }>(
      "SELECT node, serial, term, payload_hash, hash, bytes, issued_at, expires_at, refresh_at FROM node_snapshots WHERE cluster = $1",
      [CLUSTER],
    );
    assert.equal(r.rows.length, N);
    const out = new Map<string, { group?: string }>();
    for (const x of r.rows) {
      const v = verifySnapshot(x.bytes, { trustedKeys, cluster: CLUSTER, node: x.node, now: new Date() });
      const { header, payload } = v.snapshot;
      assert.equal(header.serial, expectSerial, x.node);
      assert.equal(Number(x.serial), header.serial);
      assert.equal(Number(x.term), header.authorityTerm);
      assert.equal(x.hash, sha256(x.bytes));
      assert.equal(x.payload_hash, sha256(canonicalize(payload)));
      // The stored bytes are the canonical envelope.
      assert.equal(x.bytes.toString("utf8"), canonicalize(v.snapshot));
      assert.equal(x.issued_at.toISOString(), header.issuedAt);
      assert.equal(x.expires_at.toISOString(), header.expiresAt);
      assert.equal(x.refresh_at.getTime(), (x.issued_at.getTime() + x.expires_at.getTime()) / 2);
      assert.equal(payload.identity.name, x.node);
      out.set(x.node, { ...(payload.identity.group !== undefined ? { group: payload.identity.group } : {}) });
    }
    return out;
  }

  it("signs and stores every node of a cluster-wide mark, each verifying with the cluster key", async () => {
    await markAll();
    const payloads = await checkAll(1);
    assert.equal(payloads.get(`${CLUSTER}.n-8`)?.group, "rack-1");
    const seqs = await pool.query<{ n: string }>("SELECT count(DISTINCT change_seq)::text AS n FROM node_snapshots WHERE cluster = $1", [CLUSTER]);
    assert.equal(seqs.rows[0]?.n, String(N));
  });

  it("re-signs every node after a cluster-wide change: serial +1, every row up the change feed, one notification per batch", async () => {
    const seq = await currentChangeSeq(pool);
    const listener = await pool.connect();
    let notifications = 0;
    const onNotify = (m: pg.Notification): void => {
      if (m.channel === SNAPSHOT_CHANGED_CHANNEL) notifications++;
    };
    listener.on("notification", onNotify);
    try {
      await listener.query(`LISTEN ${SNAPSHOT_CHANGED_CHANNEL}`);
      await pool.query("UPDATE nodes SET node_group = 'rack-x' WHERE cluster = $1", [CLUSTER]);
      await markAll();
      const payloads = await checkAll(2);
      for (const p of payloads.values()) assert.equal(p.group, "rack-x");
      const changes = await changesSince(pool, seq);
      assert.equal(changes.length, N);
      assert.equal(new Set(changes.map((c) => c.node)).size, N);
      const batches = Math.ceil(N / BATCH);
      await eventually(() => notifications >= batches, 10_000);
      // One notification per batch transaction (PostgreSQL folds duplicates within one; the builder sends one).
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(notifications, batches);
    } finally {
      listener.off("notification", onNotify);
      await listener.query(`UNLISTEN ${SNAPSHOT_CHANGED_CHANNEL}`);
      listener.release();
    }
  });

  it("moves nothing when nothing changed", async () => {
    const before = await serials();
    const seq = await currentChangeSeq(pool);
    await markAll();
    assert.deepEqual(await serials(), before);
    assert.equal(await currentChangeSeq(pool), seq);
  });

  it("splits a cluster-wide mark into per-node marks: marked nodes keep their mark, a '*' re-marked since the read stays", async () => {
    const c = await pool.connect();
    try {
      // Inside a transaction that is rolled back: the running builder never sees these marks.
      await c.query("BEGIN");
      await c.query("INSERT INTO snapshot_dirty (cluster, node, marked_at) VALUES ($1, $2, now() - interval '1 hour')", [CLUSTER, `${CLUSTER}.n-3`]);
      await c.query("INSERT INTO snapshot_dirty (cluster, node, marked_at) VALUES ($1, '*', now() - interval '1 minute'), ('other', '*', now() - interval '1 minute')", [CLUSTER]);
      const read = await readDirty(c, 10);
      assert.deepEqual(read.map((m) => m.node).sort(), ["*", "*", `${CLUSTER}.n-3`]);
      // 'other' is re-marked after the read: its "*" covers a later change and must stay.
      await c.query("UPDATE snapshot_dirty SET marked_at = now() WHERE cluster = 'other'");
      await expandClusterMarks(c, read);
      const rows = await c.query<{ cluster: string; node: string; old: boolean }>("SELECT cluster, node, marked_at < now() - interval '30 minutes' AS old FROM snapshot_dirty");
      const bulk = rows.rows.filter((r) => r.cluster === CLUSTER);
      assert.equal(bulk.length, N, "one mark per node of the cluster, and no '*'");
      assert.ok(!bulk.some((r) => r.node === "*"));
      assert.deepEqual(bulk.filter((r) => r.old).map((r) => r.node), [`${CLUSTER}.n-3`], "an existing mark keeps its time");
      assert.deepEqual(rows.rows.filter((r) => r.cluster === "other").map((r) => r.node), ["*"]);
    } finally {
      await c.query("ROLLBACK");
      c.release();
    }
  });

  it("never reuses the serial of a deleted snapshot", async () => {
    const node = `${CLUSTER}.n-5`;
    const before = (await serials()).get(node);
    assert.equal(before, 2);
    await pool.query("UPDATE nodes SET membership = 'Revoked' WHERE name = $1", [node]);
    await pool.query("INSERT INTO snapshot_dirty (cluster, node) VALUES ($1, $2) ON CONFLICT (cluster, node) DO UPDATE SET marked_at = now()", [CLUSTER, node]);
    await eventually(async () => !(await serials()).has(node), 30_000);
    const kept = await pool.query<{ serial: string }>("SELECT serial FROM node_snapshot_serials WHERE node = $1", [node]);
    assert.equal(kept.rows[0]?.serial, "2");
    await pool.query("UPDATE nodes SET membership = 'Active' WHERE name = $1", [node]);
    await pool.query("INSERT INTO snapshot_dirty (cluster, node) VALUES ($1, $2) ON CONFLICT (cluster, node) DO UPDATE SET marked_at = now()", [CLUSTER, node]);
    const after = await eventually(async () => (await serials()).get(node), 30_000);
    assert.equal(after, 3);
  });
});
