/**
 * The update cache's certificate-change trigger (migrations/027,
 * update_cache_identity_dirty) against real PostgreSQL (embedded, every
 * migration applied, no snapshot builder running so the marks stay to be
 * read): when a cache node's certificate changes (renewal: the old identity
 * superseded and a new one active; or revocation), exactly the nodes of its
 * cluster that have release assignments are marked dirty, and rebuilding
 * their releaseUpdates part (the contributor the snapshot builder runs)
 * gives them the new SPKI pin. A certificate change of a node without the
 * update-cache role marks nothing. Rows are inserted with SQL, as in
 * test/integration/snapshot-builder.test.ts.
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import type pg from "pg";
import { releaseUpdatesContributor } from "../../controllers/releasechannel/snapshot.js";
import { openDatabase, type Database } from "../../lib/db/database.js";
import { withTransaction } from "../../lib/db/pool.js";
import { logger } from "../../lib/log.js";
import type { SnapshotPayload } from "../../lib/snapshot/format.js";
import { tempStateDir } from "../support/controlplane.js";

const UC = "uc";
const UX = "ux";
/** Nodes of uc and ux; `fetcher`: has a release assignment (and the workload bound to its channel). */
const NODES: Array<{ cluster: string; name: string; fetcher: boolean; cache?: boolean }> = [
  { cluster: UC, name: "uc.cache", fetcher: false, cache: true },
  { cluster: UC, name: "uc.f1", fetcher: true },
  { cluster: UC, name: "uc.f2", fetcher: true },
  { cluster: UC, name: "uc.idle", fetcher: false },
  { cluster: UX, name: "ux.f1", fetcher: true },
  { cluster: UX, name: "ux.cache", fetcher: false, cache: true },
];
const fp = (c: string): string => `sha256:${c.repeat(64)}`;

describe("update cache: a cache node's certificate change rebuilds the fetching nodes' snapshots with the new pin", function () {
  this.timeout(120_000);
  let stateDir = "";
  let db: Database | undefined;
  let pool: pg.Pool;
  let serial = 0;

  /** The snapshot_dirty marks, sorted, as "cluster/node". */
  async function marks(): Promise<string[]> {
    const r = await pool.query<{ cluster: string; node: string }>("SELECT cluster, node FROM snapshot_dirty ORDER BY cluster, node");
    return r.rows.map((x) => `${x.cluster}/${x.node}`);
  }
  /** Runs `change` on a clean slate of marks and returns the marks it made. */
  async function marksOf(change: (c: pg.PoolClient) => Promise<unknown>): Promise<string[]> {
    await pool.query("DELETE FROM snapshot_dirty");
    await withTransaction(pool, change);
    return marks();
  }
  /** A renewal as the agent API stores it: the active identity superseded, a new one active. */
  const renew = (node: string, fingerprint: string) => async (c: pg.PoolClient) => {
    await c.query("UPDATE node_identities SET status = 'superseded', superseded_at = now() WHERE node = $1 AND status = 'active'", [node]);
    await c.query("INSERT INTO node_identities (serial, node, cluster, public_key_fingerprint, not_before, not_after, status) VALUES ($1, $2, $3, $4, now(), now() + interval '1 day', 'active')", [
      `s${++serial}`,
      node,
      NODES.find((n) => n.name === node)?.cluster,
      fingerprint,
    ]);
  };
  /** The caches the releaseUpdates contributor puts in a node's payload now. */
  async function cachesOf(cluster: string, node: string): Promise<unknown> {
    const payload = {} as SnapshotPayload;
    const c = await pool.connect();
    try {
      await releaseUpdatesContributor.contributeMany?.(c, cluster, [{ cluster, node, membership: "Active" }], new Map([[node, payload]]));
    } finally {
      c.release();
    }
    assert.ok(payload.releaseUpdates !== undefined, `${node} has no releaseUpdates part`);
    return payload.releaseUpdates.caches;
  }

  before(async () => {
    stateDir = tempStateDir("afst-pin-");
    db = await openDatabase({ stateDir, fsync: false, log: logger("test-db") });
    pool = db.pool;
    for (const n of NODES) {
      await pool.query("INSERT INTO nodes (name, cluster, node_name, host_fingerprint) VALUES ($1, $2, $3, $4)", [n.name, n.cluster, n.name.split(".")[1], fp("a")]);
      await pool.query("INSERT INTO node_identities (serial, node, cluster, public_key_fingerprint, not_before, not_after, status) VALUES ($1, $2, $3, $4, now(), now() + interval '1 day', 'active')", [
        `s${++serial}`,
        n.name,
        n.cluster,
        fp(n.cache === true ? "1" : "9"),
      ]);
      if (n.cache === true) {
        await pool.query("INSERT INTO node_roles (assignment, node, cluster, role) VALUES ('cache', $1, $2, 'update-cache')", [n.name, n.cluster]);
        await pool.query("INSERT INTO node_status_reports (node, kind, cluster, version, body) VALUES ($1, 'update-cache', $2, 1, $3)", [n.name, n.cluster, { endpoint: n.cluster === UC ? "127.0.0.1:8450" : "127.0.0.1:8451" }]);
      } else {
        await pool.query("INSERT INTO node_roles (assignment, node, cluster, role) VALUES ('work', $1, $2, 'rdp-worker')", [n.name, n.cluster]);
      }
      if (n.fetcher) {
        await pool.query("INSERT INTO node_workloads (workload, node, cluster, generation, spec) VALUES ('svc', $1, $2, 1, $3)", [n.name, n.cluster, { releaseChannel: "svc" }]);
        await pool.query(
          `INSERT INTO rollout_assignments (channel, node, cluster, component, version, release_name, artifact, envelope)
           VALUES ('svc', $1, $2, 'svc', '1.0.0', 'svc-1-0-0', $3, '{}')`,
          [n.name, n.cluster, { os: "linux", arch: "amd64", length: 1, sha256: "e".repeat(64) }],
        );
      }
    }
    for (const c of [UC, UX]) await pool.query("INSERT INTO rollout_trust (cluster, trust) VALUES ($1, $2)", [c, { keys: [], threshold: 1 }]);
  });
  after(async () => {
    await db?.close();
    if (stateDir !== "") rmSync(stateDir, { recursive: true, force: true });
  });

  it("before any change, the fetchers' snapshots pin the cache's current key", async () => {
    assert.deepEqual(await cachesOf(UC, "uc.f1"), [{ node: "uc.cache", endpoint: "127.0.0.1:8450", certificateFingerprint: fp("1") }]);
  });

  it("a renewal of the cache's certificate marks exactly its cluster's fetching nodes, whose rebuilt part pins the new key", async () => {
    assert.deepEqual(await marksOf(renew("uc.cache", fp("2"))), ["uc/uc.f1", "uc/uc.f2"]);
    for (const n of ["uc.f1", "uc.f2"]) assert.deepEqual(await cachesOf(UC, n), [{ node: "uc.cache", endpoint: "127.0.0.1:8450", certificateFingerprint: fp("2") }]);
    // The other cluster's cache is untouched and still listed for its own fetcher only.
    assert.deepEqual(await cachesOf(UX, "ux.f1"), [{ node: "ux.cache", endpoint: "127.0.0.1:8451", certificateFingerprint: fp("1") }]);
  });

  it("a revocation of the cache's certificate marks the same nodes, whose rebuilt part lists no cache", async () => {
    assert.deepEqual(
      await marksOf((c) => c.query("UPDATE node_identities SET status = 'revoked', revoked_at = now() WHERE node = 'uc.cache' AND status = 'active'")),
      ["uc/uc.f1", "uc/uc.f2"],
    );
    assert.equal(await cachesOf(UC, "uc.f1"), undefined);
    // A new certificate for the cache (re-enrolment): listed again with its pin.
    assert.deepEqual(await marksOf(renew("uc.cache", fp("3"))), ["uc/uc.f1", "uc/uc.f2"]);
    assert.deepEqual(await cachesOf(UC, "uc.f1"), [{ node: "uc.cache", endpoint: "127.0.0.1:8450", certificateFingerprint: fp("3") }]);
  });

  it("a certificate change of a node without the update-cache role marks nothing", async () => {
    for (const n of ["uc.f1", "uc.idle", "ux.f1"]) assert.deepEqual(await marksOf(renew(n, fp("4"))), [], n);
  });
});
