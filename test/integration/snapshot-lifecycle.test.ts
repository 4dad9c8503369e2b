/**
 * Snapshot lifecycle against a real control plane (embedded PostgreSQL, API
 * server, controllers with their real snapshot builder, agent API):
 *
 *  - re-issue before expiry: a cluster whose snapshots live 10 s (the
 *    shortest lifetime the builder accepts, plan.ts MIN_SNAPSHOT_LIFETIME_MS)
 *    under the controllers' default poll and sweep settings; an agent enrolled
 *    through the real flow long-polls with its own sync code (MembershipSync,
 *    which verifies with lib/snapshot/verify.ts). Every snapshot is
 *    re-issued once past half its lifetime and before it expires, again and
 *    again, and the agent never holds an expired snapshot meanwhile. (The
 *    periodic sweep alone, every 30 s, would let a 10 s snapshot expire: the
 *    builder also sweeps when the earliest stored snapshot reaches half its
 *    lifetime.);
 *  - term fencing: after the authority term moves to a new leader, the
 *    builder of the deposed one (the control plane's own, still believing it
 *    leads) is refused and writes nothing, and the new leader's snapshots
 *    carry the new term in their header, accepted by the agent-side verifier.
 *
 * Nothing here measures time: the assertions are on the stored and verified
 * data (serials, terms, issuedAt/expiresAt ordering) and on what the agent
 * holds when it looks.
 */
import assert from "node:assert/strict";
import { createHash, createPublicKey, type KeyObject } from "node:crypto";
import { rmSync } from "node:fs";
import type pg from "pg";
import { SnapshotBuilder } from "../../controllers/snapshots/builder.js";
import { PgAuthority } from "../../controllers/runtime/authority.js";
import { FencedError } from "../../controllers/runtime/errors.js";
import type { StoredIdentity } from "../../agent/enroll/identity-store.js";
import { join } from "../../agent/enroll/join.js";
import { MembershipSync } from "../../agent/sync/snapshot-sync.js";
import { SyncTransport } from "../../agent/sync/transport.js";
import { kekFileOf, loadKek } from "../../lib/crypto/kek.js";
import { logger } from "../../lib/log.js";
import type { SignedSnapshot } from "../../lib/snapshot/format.js";
import { markNodesDirty } from "../../lib/snapshot/contributors.js";
import { verifySnapshot } from "../../lib/snapshot/verify.js";
import { ClusterStore } from "../../lib/state/index.js";
import { eventually, kubectl, tempStateDir } from "../support/controlplane.js";
import { applyCluster, createToken, startEnrollmentPlane, type EnrollmentPlane } from "../support/enrollment.js";

const SHORT = "short";
const FENCE = "fence";
const LIFETIME_MS = 10_000;

/** Applies a FabricCluster with a snapshot lifetime and waits until Ready. */
async function applyClusterWithLifetime(kubeconfig: string, name: string, snapshotLifetime: string): Promise<void> {
  const spec = { enrollmentPolicy: { approval: "TokenAutoApprove" }, snapshotLifetime };
  const r = await kubectl(kubeconfig, ["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "accessfabric.io/v1alpha1", kind: "FabricCluster", metadata: { name }, spec }) });
  assert.equal(r.code, 0, r.stderr);
  const w = await kubectl(kubeconfig, ["wait", "--for=condition=Ready", `fabriccluster/${name}`, "--timeout=60s"]);
  assert.equal(w.code, 0, w.stderr);
}

interface StoredRow {
  node: string;
  serial: number;
  term: number;
  hash: string;
  payloadHash: string;
  changeSeq: number;
  bytes: Buffer;
}

async function rowsOf(pool: pg.Pool, cluster: string): Promise<Map<string, StoredRow>> {
  const r = await pool.query<{ node: string; serial: string; term: string; hash: string; payload_hash: string; change_seq: string; bytes: Buffer }>(
    "SELECT node, serial, term, hash, payload_hash, change_seq, bytes FROM node_snapshots WHERE cluster = $1",
    [cluster],
  );
  return new Map(r.rows.map((x) => [x.node, { node: x.node, serial: Number(x.serial), term: Number(x.term), hash: x.hash, payloadHash: x.payload_hash, changeSeq: Number(x.change_seq), bytes: x.bytes }]));
}

describe("snapshot lifecycle: re-issue before expiry, term-fenced builder", function () {
  this.timeout(180_000);
  let p: EnrollmentPlane;
  let pool: pg.Pool;
  let identity: StoredIdentity;
  const dirs: string[] = [];

  before(async () => {
    p = await startEnrollmentPlane();
    pool = p.cp.db.pool;
    await applyClusterWithLifetime(p.kubeconfig, SHORT, "10s");
    await applyCluster(p.kubeconfig, FENCE);
    const token = await createToken(p.kubeconfig, "short-join", { cluster: SHORT, maxUses: 1, autoApprove: true });
    const dir = tempStateDir("fabric-agent-");
    dirs.push(dir);
    identity = await join({ server: p.server, token, caHash: p.caHash, stateDir: dir, nodeName: "n-a", cluster: SHORT, pollIntervalMs: 200, timeoutMs: 60_000 });
  });
  after(async () => {
    await p?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("re-issues a snapshot past half its lifetime and before it expires, repeatedly; the agent never holds an expired one", async () => {
    const REISSUES = 4;
    const sync = new MembershipSync({ identity });
    await sync.boot();
    const transport = new SyncTransport(identity);
    const ac = new AbortController();
    const accepted: SignedSnapshot[] = [];
    // What the agent held each time it looked, and any moment it held an expired snapshot.
    let looks = 0;
    const expiredHeld: string[] = [];
    const look = (): void => {
      const h = sync.held();
      if (h === undefined) return;
      looks++;
      const now = new Date();
      const seen = `serial ${h.held.serial} (expires ${h.held.expiresAt}) held at ${now.toISOString()}`;
      if (Date.parse(h.held.expiresAt) <= now.getTime() && !expiredHeld.some((e) => e.startsWith(`serial ${h.held.serial} `))) expiredHeld.push(seen);
    };
    const watch = setInterval(look, 100);
    // The agent's loop: long poll for a newer serial, verify, apply.
    let failed: unknown;
    const loop = (async () => {
      while (!ac.signal.aborted) {
        const r = await transport.pollSnapshot(sync.afterSerial(), 5, 4 << 20, ac.signal);
        if (r.kind !== "snapshot") continue;
        const out = await sync.offer(r.bytes);
        if (out.kind === "rejected") throw out.error;
        if (out.kind === "accepted") accepted.push(out.snapshot);
        look();
      }
    })().catch((err: unknown) => {
      if (!ac.signal.aborted) failed = err;
    });
    try {
      await eventually(() => failed !== undefined || accepted.length > REISSUES, 120_000, 200);
    } finally {
      ac.abort();
      clearInterval(watch);
      await loop;
      transport.close();
    }
    if (failed !== undefined) throw failed;
    look();
    assert.deepEqual(expiredHeld, [], "the agent held an expired snapshot");
    assert.ok(looks > accepted.length, "the agent's held snapshot was looked at between re-issues");
    assert.deepEqual(sync.status.rejections, {});
    assert.equal(sync.status.snapshot?.stale, false);

    const payloadHashes = new Set<string>();
    for (let i = 0; i < accepted.length; i++) {
      const s = accepted[i];
      assert.ok(s !== undefined);
      const h = s.header;
      const issued = Date.parse(h.issuedAt);
      const expires = Date.parse(h.expiresAt);
      // The lifetime is the cluster's spec.snapshotLifetime.
      assert.equal(expires - issued, LIFETIME_MS, `serial ${h.serial}`);
      payloadHashes.add(createHash("sha256").update(JSON.stringify(s.payload)).digest("hex"));
      const prev = accepted[i - 1];
      if (prev === undefined) continue;
      const ph = prev.header;
      const prevIssued = Date.parse(ph.issuedAt);
      const prevExpires = Date.parse(ph.expiresAt);
      assert.equal(h.serial, ph.serial + 1, "every re-issue is the next serial, none skipped");
      assert.equal(h.authorityTerm, ph.authorityTerm);
      // Re-issued before the previous one expired, and not before half its lifetime.
      assert.ok(issued < prevExpires, `serial ${h.serial} issued at ${h.issuedAt}, serial ${ph.serial} expired at ${ph.expiresAt}`);
      assert.ok(issued >= prevIssued + (prevExpires - prevIssued) / 2, `serial ${h.serial} issued at ${h.issuedAt}, before half the lifetime of serial ${ph.serial} (${ph.issuedAt}..${ph.expiresAt})`);
      assert.ok(expires > prevExpires);
    }
    // Nothing changed but time: the same payload, re-signed.
    assert.equal(payloadHashes.size, 1);

    // The stored row is the last one the agent accepted.
    const row = (await rowsOf(pool, SHORT)).get(identity.info.node);
    const last = accepted[accepted.length - 1];
    assert.ok(row !== undefined && last !== undefined);
    assert.ok(row.serial >= last.header.serial);
  });

  it("refuses the builder of a deposed leader (nothing written); the new leader's snapshots carry its term", async () => {
    const controllers = p.cp.controllers;
    assert.ok(controllers !== undefined);
    // Nodes of the second cluster, inserted with SQL (enrollment is shown above and elsewhere).
    const nodes = ["f-1", "f-2", "f-3"].map((n) => `${FENCE}.${n}`);
    for (const [i, name] of nodes.entries()) {
      await pool.query("INSERT INTO nodes (name, cluster, node_name, host_fingerprint, node_group) VALUES ($1, $2, $3, $4, 'rack-a')", [
        name,
        FENCE,
        name.slice(FENCE.length + 1),
        `sha256:${createHash("sha256").update(name).digest("hex")}`,
      ]);
      await pool.query(
        "INSERT INTO node_identities (serial, node, cluster, public_key_fingerprint, not_before, not_after, status) VALUES ($1, $2, $3, $4, now(), now() + interval '1 day', 'active')",
        [`fence-${i}`, name, FENCE, `sha256:${createHash("sha256").update(`k${name}`).digest("hex")}`],
      );
    }
    await markNodesDirty(pool as unknown as pg.ClientBase, FENCE, nodes);
    const oldTerm = controllers.term();
    assert.ok(oldTerm !== undefined);
    const first = await eventually(async () => {
      const m = await rowsOf(pool, FENCE);
      return m.size === nodes.length ? m : undefined;
    }, 30_000);

    const k = await pool.query<{ snapshot_public_key: string; snapshot_key_id: string }>("SELECT snapshot_public_key, snapshot_key_id FROM clusters WHERE name = $1", [FENCE]);
    const keyRow = k.rows[0];
    assert.ok(keyRow !== undefined);
    const trustedKeys = new Map<string, KeyObject>([
      [keyRow.snapshot_key_id, createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(keyRow.snapshot_public_key, "base64").toString("base64url") }, format: "jwk" })],
    ]);
    // What an agent of each node holds: the old leader's snapshots, header term = the term they were fenced on.
    const held = new Map<string, { term: number; serial: number }>();
    for (const [node, row] of first) {
      const v = verifySnapshot(row.bytes, { trustedKeys, cluster: FENCE, node, now: new Date() });
      assert.equal(v.snapshot.header.authorityTerm, oldTerm);
      assert.equal(row.term, oldTerm);
      held.set(node, { term: v.snapshot.header.authorityTerm, serial: v.snapshot.header.serial });
    }

    // A new leader takes the authority term. The control plane's controllers
    // still hold the old term and believe they lead (no lease here): a deposed
    // leader that has not noticed yet.
    const authority = new PgAuthority(pool, { log: logger("test-new-leader") });
    const newTerm = await authority.acquire("test-new-leader");
    assert.ok(newTerm > oldTerm);
    assert.equal(controllers.term(), oldTerm);
    const newLeader = new SnapshotBuilder({
      pool,
      fence: authority,
      clusters: new ClusterStore(pool, authority, "test-new-leader"),
      kek: loadKek({ file: kekFileOf(p.stateDir) }),
      contributors: controllers.snapshotContributors,
      isLeader: () => true,
      log: logger("test-new-leader"),
    });

    // A change to one node: the deposed builder is refused and writes nothing.
    const changed = nodes[0] as string;
    await pool.query("UPDATE nodes SET node_group = 'rack-b' WHERE name = $1", [changed]);
    await markNodesDirty(pool as unknown as pg.ClientBase, FENCE, [changed]);
    const serialsBefore = await pool.query<{ node: string; serial: string }>("SELECT node, serial FROM node_snapshot_serials WHERE node = ANY($1) ORDER BY node", [nodes]);
    await assert.rejects(controllers.snapshots.drainOnce(), (err: unknown) => err instanceof FencedError && err.heldTerm === oldTerm && err.currentTerm === newTerm);
    assert.deepEqual(await rowsOf(pool, FENCE), first, "the deposed builder wrote a snapshot");
    assert.deepEqual((await pool.query("SELECT node, serial FROM node_snapshot_serials WHERE node = ANY($1) ORDER BY node", [nodes])).rows, serialsBefore.rows);
    const marks = await pool.query<{ node: string }>("SELECT node FROM snapshot_dirty WHERE cluster = $1", [FENCE]);
    assert.deepEqual(
      marks.rows.map((r) => r.node),
      [changed],
      "the refused batch kept its dirty mark",
    );

    // The new leader builds it: header term = its fenced term, next serial.
    const r = await newLeader.drainAll();
    assert.ok(r.signed >= 1);
    const second = await rowsOf(pool, FENCE);
    for (const [node, row] of second) {
      const h = held.get(node);
      assert.ok(h !== undefined);
      const v = verifySnapshot(row.bytes, { trustedKeys, cluster: FENCE, node, lastTerm: h.term, lastSerial: h.serial, now: new Date() });
      if (node === changed) {
        assert.equal(v.status, "accepted");
        assert.equal(v.snapshot.header.authorityTerm, newTerm);
        assert.equal(row.term, newTerm);
        assert.equal(v.snapshot.header.serial, h.serial + 1);
        assert.equal(v.snapshot.payload.identity.group, "rack-b");
        held.set(node, { term: newTerm, serial: v.snapshot.header.serial });
      } else {
        // Untouched: same bytes, same serial, still the term they were signed under.
        assert.equal(v.status, "unchanged");
        assert.deepEqual(row, first.get(node));
      }
    }

    // A cluster-wide change: every next snapshot carries the new term; the deposed builder still cannot store.
    await pool.query("UPDATE nodes SET node_group = 'rack-c' WHERE cluster = $1", [FENCE]);
    await markNodesDirty(pool as unknown as pg.ClientBase, FENCE, nodes);
    await assert.rejects(controllers.snapshots.drainOnce(), FencedError);
    assert.deepEqual(await rowsOf(pool, FENCE), second);
    await newLeader.drainAll();
    const third = await rowsOf(pool, FENCE);
    for (const [node, row] of third) {
      const h = held.get(node);
      assert.ok(h !== undefined);
      const v = verifySnapshot(row.bytes, { trustedKeys, cluster: FENCE, node, lastTerm: h.term, lastSerial: h.serial, now: new Date() });
      assert.equal(v.status, "accepted");
      assert.equal(v.snapshot.header.authorityTerm, newTerm);
      assert.equal(row.term, newTerm);
      assert.equal(v.snapshot.header.serial, h.serial + 1);
      assert.equal(v.snapshot.payload.identity.group, "rack-c");
    }
  });
});
