/**
 * Group-committed VPN lease renewals (lib/state/vpn.ts) against real
 * PostgreSQL under a real PgAuthority term: renewals queued together are
 * written by one fenced statement, yet each succeeds or fails on its own
 * holder, token, database-clock expiry and eligibility; grants queued
 * together are decided one by one in one transaction; a deposed store
 * renews nothing.
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { PgAuthority } from "../../controllers/runtime/authority.js";
import { openDatabase, type Database } from "../../lib/db/database.js";
import { verifyChain } from "../../lib/audit/chain.js";
import { logger } from "../../lib/log.js";
import { seedStateDir } from "../support/pg-template.js";
import { VpnStore } from "../../lib/state/vpn.js";
import { tempStateDir } from "../support/controlplane.js";

const CLUSTER = "rb";
const N = 8;
const node = (i: number): string => `${CLUSTER}.n-${i}`;
const conn = (i: number): string => `org/c-${i}`;

describe("VPN lease renewals in one batch succeed or fail individually", function () {
  this.timeout(120_000);
  let stateDir: string;
  let db: Database;
  let authority: PgAuthority;
  let store: VpnStore;
  const tokens: number[] = [];

  const leaseRow = async (i: number): Promise<{ holder: string | null; token: string; renewals: number; expires_at: Date | null }> =>
    (await db.pool.query("SELECT holder, token, renewals, expires_at FROM vpn_leases WHERE connection = $1", [conn(i)])).rows[0];

  before(async () => {
    stateDir = tempStateDir("fabric-vpn-renew-");
    const log = logger("vpn-renew-batch");
    await seedStateDir(stateDir);
    db = await openDatabase({ stateDir, fsync: false, log, maxConnections: 4 });
    const pool = db.pool;
    await pool.query(`INSERT INTO nodes (name, cluster, node_name, host_fingerprint) SELECT $1 || '.n-' || i, $1, 'n-' || i, 'sha256:' || md5(i::text) FROM generate_series(0, $2 - 1) i`, [CLUSTER, N]);
    await pool.query(`INSERT INTO node_health (node, cluster, health) SELECT $1 || '.n-' || i, $1, 'Healthy' FROM generate_series(0, $2 - 1) i`, [CLUSTER, N]);
    await pool.query(`INSERT INTO node_roles (assignment, node, cluster, role) SELECT 'rb', $1 || '.n-' || i, $1, 'vpn-connector' FROM generate_series(0, $2 - 1) i`, [CLUSTER, N]);
    await pool.query(
      `INSERT INTO vpn_connections (connection, namespace, name, cluster, mode, allowed_nodes, lease_ttl_ms, enabled, eligible_nodes)
       SELECT 'org/c-' || i, 'org', 'c-' || i, $1, 'Connector', ARRAY[$1 || '.n-' || i, $1 || '.n-' || ((i + 1) % $2)], 60000, true, ARRAY[$1 || '.n-' || i] FROM generate_series(0, $2 - 1) i`,
      [CLUSTER, N],
    );
    authority = new PgAuthority(pool, { log });
    await authority.acquire("rb");
    store = new VpnStore(pool, authority, "rb");
    for (let i = 0; i < N; i++) {
      const r = await store.acquire(conn(i), node(i));
      assert.equal(r.kind, "granted", `c-${i}`);
      if (r.kind === "granted") tokens[i] = r.token;
    }
  });
  after(async () => {
    await db?.close();
    if (stateDir !== undefined) rmSync(stateDir, { recursive: true, force: true });
  });

  it("renews the current holders and refuses a stale token, another node, a lapsed lease and an ineligible holder, in one statement", async () => {
    // c-3 lapsed by the database clock; c-4's holder is no longer healthy.
    await db.pool.query("UPDATE vpn_leases SET expires_at = clock_timestamp() - interval '1 second' WHERE connection = $1", [conn(3)]);
    await db.pool.query("UPDATE node_health SET health = 'Unhealthy' WHERE node = $1", [node(4)]);
    const before = await Promise.all(Array.from({ length: N }, (_, i) => leaseRow(i)));
    const batchesBefore = store.renewBatches;
    const calls: Array<[number, string, number]> = [
      [0, node(0), tokens[0]!],
      [1, node(1), tokens[1]! + 1], // a token that was never granted
      [2, node(3), tokens[2]!], // another allowed node, the holder's token
      [3, node(3), tokens[3]!],
      [4, node(4), tokens[4]!],
      [5, node(5), tokens[5]!],
      [0, node(0), tokens[0]!], // the same renewal twice in one batch
      [6, node(6), tokens[6]!],
    ];
    const out = await Promise.all(calls.map(([i, n, t]) => store.renew(conn(i), n, t)));
    assert.equal(store.renewBatches - batchesBefore, 1, "the renewals queued together were written as one batch");
    const ok = out.map((r) => r !== undefined);
    assert.deepEqual(ok, [true, false, false, false, false, true, true, true]);
    for (const [k, [i]] of calls.entries()) {
      const r = out[k];
      if (r === undefined) continue;
      assert.equal(r.token, tokens[i]);
      assert.equal(r.ttlMs, 60000);
      assert.ok(r.expiresAt.getTime() > before[i]!.expires_at!.getTime(), `c-${i}: the expiry moved forward`);
    }
    const after = await Promise.all(Array.from({ length: N }, (_, i) => leaseRow(i)));
    assert.deepEqual(
      after.map((r) => r.renewals),
      [1, 0, 0, 0, 0, 1, 1, 0],
      "each renewed lease counted once, the refused ones untouched",
    );
    for (const i of [1, 2, 3, 4, 7]) assert.deepEqual(after[i]!.expires_at, before[i]!.expires_at, `c-${i} not extended`);
    // A lapsed lease stays lapsed: the holder must acquire again (a new token).
    const again = await store.acquire(conn(3), node(3));
    assert.equal(again.kind, "granted");
    if (again.kind === "granted") assert.equal(again.token, tokens[3]! + 1);
    await db.pool.query("UPDATE node_health SET health = 'Healthy' WHERE node = $1", [node(4)]);
  });

  it("grants queued together: one of two contenders for a connection, each outcome on its own, every grant audited once", async () => {
    await db.pool.query(
      `INSERT INTO vpn_connections (connection, namespace, name, cluster, mode, allowed_nodes, lease_ttl_ms, enabled, eligible_nodes)
       VALUES ('org/d-0', 'org', 'd-0', $1, 'Connector', ARRAY[$1 || '.n-0', $1 || '.n-1'], 60000, true, '{}'),
              ('org/d-1', 'org', 'd-1', $1, 'Connector', ARRAY[$1 || '.n-2'], 60000, true, '{}')`,
      [CLUSTER],
    );
    const out = await Promise.all([store.acquire("org/d-0", node(0)), store.acquire("org/d-1", node(5)), store.acquire("org/d-0", node(1)), store.acquire("org/none", node(0)), store.acquire("org/d-1", node(2))]);
    const kinds = out.map((o) => o.kind);
    assert.deepEqual([kinds[0], kinds[2]].sort(), ["busy", "granted"], "exactly one contender for d-0 is granted");
    assert.deepEqual([kinds[1], kinds[3], kinds[4]], ["ineligible", "ineligible", "granted"]);
    const grants = await db.pool.query<{ connection: string; n: string }>("SELECT connection, count(*) AS n FROM vpn_grants WHERE connection LIKE 'org/d-%' AND ended_at IS NULL GROUP BY connection ORDER BY connection");
    assert.deepEqual(grants.rows.map((r) => [r.connection, Number(r.n)]), [["org/d-0", 1], ["org/d-1", 1]]);
    const audited = await db.pool.query<{ object_name: string; n: string }>("SELECT object_name, count(*) AS n FROM audit_events WHERE action = 'vpn.lease.granted' AND object_name LIKE 'org/d-%' GROUP BY object_name ORDER BY object_name");
    assert.deepEqual(audited.rows.map((r) => [r.object_name, Number(r.n)]), [["org/d-0", 1], ["org/d-1", 1]]);
    assert.equal((await verifyChain(db.pool)).ok, true);
  });

  it("a deposed store renews nothing: the whole batch fails with FencedError and no row moves", async () => {
    const before = await leaseRow(6);
    // Another instance takes the authority over: this store's term is no longer current.
    await new PgAuthority(db.pool, { log: logger("vpn-renew-batch-other") }).acquire("rb-2");
    const out = await Promise.allSettled([store.renew(conn(6), node(6), tokens[6]!), store.renew(conn(7), node(7), tokens[7]!)]);
    for (const r of out) {
      assert.equal(r.status, "rejected");
      if (r.status === "rejected") assert.equal((r.reason as Error).name, "FencedError");
    }
    assert.deepEqual(await leaseRow(6), before);
  });
});
