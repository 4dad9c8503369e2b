/**
 * The mesh peer directory against a real control plane (embedded
 * PostgreSQL, the running leader's snapshot builder, the mesh contributor
 * and directory sweep): nodes with a mesh role receive bounded candidate
 * sets of their own cluster in their signed snapshots, a node without one
 * receives none; an endpoint change re-signs exactly the snapshots that list
 * the node, and a load change re-signs nothing. Nodes, identities, grants
 * and node facts are inserted with SQL (enrollment, RoleAssignment and the
 * FabricNode projection are tested elsewhere); reports go through the state
 * layer the agent API's heartbeat batcher uses.
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import type pg from "pg";
import { runControlPlane, type ControlPlane } from "../../controlplane/controlplane.js";
import { RELAY_CANDIDATES, WARM_CANDIDATES } from "../../controllers/mesh/plan.js";
import { createMeshContributor } from "../../controllers/mesh/snapshot.js";
import { logger } from "../../lib/log.js";
import type { SignedSnapshot, SnapshotPayload } from "../../lib/snapshot/format.js";
import { clusterSerials } from "../../lib/state/snapshots.js";
import { DEFAULT_PEER_POLICY, meshDirectoryOf, meshDirectoryVersion, writeMeshReports } from "../../lib/state/mesh.js";
import { eventually, tempStateDir } from "../support/controlplane.js";
import { applyCluster } from "../support/enrollment.js";

const REGIONS = ["eu", "us"];

async function addNodes(pool: pg.Pool, cluster: string, n: number, role: (i: number) => string | undefined): Promise<string[]> {
  const names = Array.from({ length: n }, (_, i) => `${cluster}.n-${i}`);
  await pool.query(
    `INSERT INTO nodes (name, cluster, node_name, host_fingerprint) SELECT $1 || '.n-' || i, $1, 'n-' || i, 'sha256:' || md5($1 || i) FROM generate_series(0, $2 - 1) i`,
    [cluster, n],
  );
  await pool.query(
    `INSERT INTO node_identities (serial, node, cluster, public_key_fingerprint, not_before, not_after, status)
     SELECT md5($1 || 's' || i), $1 || '.n-' || i, $1, 'sha256:' || md5($1 || 'k' || i), now(), now() + interval '1 day', 'active' FROM generate_series(0, $2 - 1) i`,
    [cluster, n],
  );
  for (const [i, name] of names.entries()) {
    const r = role(i);
    await pool.query("INSERT INTO mesh_node_facts (node, cluster, node_class, region, zone) VALUES ($1, $2, $3, $4, $5)", [
      name, cluster, r === "relay-node" ? "relay" : "standard", REGIONS[i % 2], `z${i % 3}`,
    ]);
    if (r !== undefined) await pool.query("INSERT INTO node_roles (assignment, node, cluster, role) VALUES ($1, $2, $3, $4)", [`ra-${r}`, name, cluster, r]);
  }
  return names;
}

describe("mesh peer directory: candidate sets in signed snapshots", function () {
  this.timeout(180_000);
  let cp: ControlPlane;
  let stateDir: string;
  let pool: pg.Pool;
  let m1: string[];
  let m2: string[];
  // m1: 24 entry nodes, 6 relays, 6 without a mesh role; m2: 8 entry nodes.
  const roleM1 = (i: number): string | undefined => (i < 24 ? "entry-node" : i < 30 ? "relay-node" : undefined);

  const snapshots = async (cluster: string): Promise<Map<string, SignedSnapshot>> => {
    const r = await pool.query<{ node: string; bytes: Buffer }>("SELECT node, bytes FROM node_snapshots WHERE cluster = $1", [cluster]);
    return new Map(r.rows.map((x) => [x.node, JSON.parse(x.bytes.toString("utf8")) as SignedSnapshot]));
  };
  const settled = async (): Promise<void> => {
    // Two quiet looks a sweep period apart: the directory sweep has nothing left to mark, the builder nothing to build.
    await eventually(async () => (await pool.query("SELECT 1 FROM snapshot_dirty")).rowCount === 0, 60_000, 100);
    await new Promise((r) => setTimeout(r, 2500));
    await eventually(async () => (await pool.query("SELECT 1 FROM snapshot_dirty")).rowCount === 0, 60_000, 100);
  };

  before(async () => {
    stateDir = tempStateDir();
    cp = await runControlPlane({ stateDir, host: "127.0.0.1", port: 0, metricsPort: 0, fsync: false, log: logger("test-controlplane"), controllers: { identity: "test-mesh", sweepIntervalMs: 3_600_000 } });
    await applyCluster(cp.api.kubeconfigPath, "m1");
    await applyCluster(cp.api.kubeconfigPath, "m2");
    pool = cp.db.pool;
    m1 = await addNodes(pool, "m1", 36, roleM1);
    m2 = await addNodes(pool, "m2", 8, () => "entry-node");
    const report = (name: string, cluster: string, i: number, relay: boolean) => ({ node: name, cluster, endpoints: [`10.${cluster === "m1" ? 1 : 2}.0.${i + 1}:4433`], reachable: true, relayCapable: relay, load: 0.2 });
    await writeMeshReports(pool, [...m1.map((n, i) => report(n, "m1", i, roleM1(i) === "relay-node")), ...m2.map((n, i) => report(n, "m2", i, false))]);
    await eventually(async () => (await snapshots("m1")).size === 36 && (await snapshots("m2")).size === 8, 60_000, 200);
    await settled();
  });
  after(async () => {
    await cp?.stop();
    if (stateDir !== undefined) rmSync(stateDir, { recursive: true, force: true });
  });

  it("gives every mesh node a bounded set of its own cluster's mesh nodes, spread over regions, with relays", async () => {
    const snaps = await snapshots("m1");
    for (const [i, name] of m1.entries()) {
      const p = (snaps.get(name) as SignedSnapshot).payload;
      if (roleM1(i) === undefined) continue;
      const max = roleM1(i) === "relay-node" ? DEFAULT_PEER_POLICY.relay.max : DEFAULT_PEER_POLICY.standard.max;
      assert.ok(p.meshPeers.length >= Math.min(29, max + WARM_CANDIDATES) && p.meshPeers.length <= max + WARM_CANDIDATES + RELAY_CANDIDATES, `${name}: ${p.meshPeers.length}`);
      assert.deepEqual(p.mesh?.activePeers, roleM1(i) === "relay-node" ? DEFAULT_PEER_POLICY.relay : DEFAULT_PEER_POLICY.standard);
      const peers = new Set(p.meshPeers.map((x) => x.node));
      assert.ok(!peers.has(name), `${name} lists itself`);
      for (const x of p.meshPeers) {
        assert.ok(x.node.startsWith("m1.") && m1.indexOf(x.node) < 30, `${name} lists ${x.node}`);
        assert.ok(x.endpoints.length === 1 && x.certificateFingerprint.startsWith("sha256:") && x.serverName === `${x.node}.m1.fabric.internal`);
      }
      assert.deepEqual(new Set(p.meshPeers.map((x) => x.region)), new Set(REGIONS), name);
      assert.ok(p.meshPeers.filter((x) => x.relayCapable === true).length >= RELAY_CANDIDATES, name);
    }
  });

  it("gives a node without a mesh role no peers and no mesh settings, and never lists it", async () => {
    const snaps = await snapshots("m1");
    for (const name of m1.slice(30)) {
      const p = (snaps.get(name) as SignedSnapshot).payload;
      assert.deepEqual(p.meshPeers, []);
      assert.equal(p.mesh, undefined);
    }
  });

  it("never lists a node of another cluster", async () => {
    for (const [name, s] of await snapshots("m2")) {
      assert.ok(s.payload.meshPeers.length === 7, `${name}: ${s.payload.meshPeers.length}`);
      for (const x of s.payload.meshPeers) assert.ok(x.node.startsWith("m2."), `${name} lists ${x.node}`);
    }
  });

  it("authorises links from either side: the listed node's meshPeers or meshInbound names every lister with its pin", async () => {
    const check = async (cluster: string): Promise<number> => {
      const snaps = await snapshots(cluster);
      const pins = new Map((await pool.query<{ node: string; fp: string }>("SELECT node, public_key_fingerprint AS fp FROM node_identities WHERE cluster = $1 AND status = 'active'", [cluster])).rows.map((r) => [r.node, r.fp]));
      let oneSided = 0;
      for (const [a, s] of snaps) {
        for (const x of s.payload.meshPeers) {
          const other = (snaps.get(x.node) as SignedSnapshot).payload;
          const back = [...other.meshPeers, ...(other.meshInbound ?? [])].find((y) => y.node === a);
          assert.ok(back !== undefined, `${a} lists ${x.node}, which does not authorise it`);
          assert.equal(back.certificateFingerprint, pins.get(a));
          if (!other.meshPeers.some((y) => y.node === a)) oneSided++;
        }
        for (const y of s.payload.meshInbound ?? []) {
          assert.ok(y.node.startsWith(`${cluster}.`), `${a} accepts ${y.node} of another cluster`);
          assert.ok((snaps.get(y.node) as SignedSnapshot).payload.meshPeers.some((z) => z.node === a), `${a} accepts ${y.node}, which does not list it`);
          assert.ok(!s.payload.meshPeers.some((z) => z.node === y.node), "inbound entries are only the one-sided ones");
        }
      }
      return oneSided;
    };
    assert.ok((await check("m1")) > 0, "m1 has one-sided listings to cover");
    await check("m2");
    for (const name of m1.slice(30)) assert.equal((await snapshots("m1")).get(name)?.payload.meshInbound, undefined, "no mesh role, no inbound entries");
  });

  it("publishes a renewed key to the nodes on both sides of the renewed node, and drops a revoked node from both", async () => {
    const snaps = await snapshots("m1");
    // A node that lists someone one-sidedly, so its pin sits in another node's meshInbound.
    const renewed = m1.slice(0, 24).find((a) => (snaps.get(a) as SignedSnapshot).payload.meshPeers.some((x) => !(snaps.get(x.node) as SignedSnapshot).payload.meshPeers.some((y) => y.node === a)));
    assert.ok(renewed !== undefined);
    const holders = (all: Map<string, SignedSnapshot>, node: string): string[] =>
      [...all].filter(([, s]) => [...s.payload.meshPeers, ...(s.payload.meshInbound ?? [])].some((x) => x.node === node)).map(([n]) => n).sort();
    const before = holders(snaps, renewed);
    const serials = await clusterSerials(pool, "m1");
    await pool.query("UPDATE node_identities SET public_key_fingerprint = 'sha256:renewed' WHERE node = $1 AND status = 'active'", [renewed]);
    await eventually(async () => {
      const now = await snapshots("m1");
      return before.every((h) => [...(now.get(h) as SignedSnapshot).payload.meshPeers, ...((now.get(h) as SignedSnapshot).payload.meshInbound ?? [])].some((x) => x.node === renewed && x.certificateFingerprint === "sha256:renewed"));
    }, 30_000, 200);
    await settled();
    const after = await clusterSerials(pool, "m1");
    const resigned = [...after].filter(([n, v]) => serials.get(n) !== v).map(([n]) => n).sort();
    assert.deepEqual(resigned, before, "exactly the nodes holding its entry, on either side");
    // Revoked: gone from every snapshot, on both sides.
    await pool.query("UPDATE nodes SET membership = 'Revoked' WHERE name = $1", [renewed]);
    await eventually(async () => holders(await snapshots("m1"), renewed).length === 0, 30_000, 200);
  });

  it("re-signs exactly the snapshots listing a node when its endpoints change, and nothing for a load change", async () => {
    const target = m1[3] as string;
    const before = await clusterSerials(pool, "m1");
    const listing = [...(await snapshots("m1"))].filter(([, s]) => s.payload.meshPeers.some((x) => x.node === target)).map(([n]) => n).sort();
    assert.ok(listing.length > 0 && listing.length < 30, `${listing.length} list ${target}`);
    const moved = await writeMeshReports(pool, [{ node: target, cluster: "m1", endpoints: ["10.9.9.9:4433"], reachable: true, relayCapable: false, load: 0.2 }]);
    assert.deepEqual(moved.directoryChanged, [target]);
    await settled();
    const after = await clusterSerials(pool, "m1");
    const changed = [...after].filter(([n, s]) => before.get(n) !== s).map(([n]) => n).sort();
    assert.deepEqual(changed, listing);
    for (const n of listing) {
      const peer = (await snapshots("m1")).get(n)?.payload.meshPeers.find((x) => x.node === target);
      assert.deepEqual(peer?.endpoints, ["10.9.9.9:4433"]);
    }
    const loaded = await writeMeshReports(pool, [{ node: target, cluster: "m1", endpoints: ["10.9.9.9:4433"], reachable: true, relayCapable: false, load: 0.9 }]);
    assert.deepEqual(loaded, { directoryChanged: [], loadChanged: [target], marked: 0 });
    await settled();
    assert.deepEqual(await clusterSerials(pool, "m1"), after);
  });

  it("reuses a kept directory only while the directory version has not moved: a removed node never reaches a snapshot from the cache", async () => {
    const mesh = createMeshContributor();
    const build = async (nodes: string[]): Promise<Map<string, string[]>> => {
      const payloads = new Map(nodes.map((n) => [n, { roles: [], workloads: [], meshPeers: [], vpnAssignments: [], updates: [] } as unknown as SnapshotPayload]));
      const c = await pool.connect();
      try {
        await c.query("BEGIN");
        await mesh.contributeMany?.(c, "m2", nodes.map((node) => ({ cluster: "m2", node, membership: "Active" as const })), payloads);
        await c.query("ROLLBACK");
      } finally {
        c.release();
      }
      return new Map([...payloads].map(([n, p]) => [n, p.meshPeers.map((x) => x.node)]));
    };
    // A read carries the directory version it saw; a load-only report does not move it.
    const read = await meshDirectoryOf(pool, "m2");
    assert.match(read.version, /^[0-9]+$/);
    assert.equal(await meshDirectoryVersion(pool), read.version);
    const loadOnly = await writeMeshReports(pool, [{ node: m2[3] as string, cluster: "m2", endpoints: (read.members.find((m) => m.node === m2[3])?.endpoints ?? []), reachable: true, relayCapable: false, load: 0.9 }]);
    assert.deepEqual(loadOnly.directoryChanged, []);
    assert.equal(await meshDirectoryVersion(pool), read.version);
    // Two "batches" of one drain: the second reuses the prepared directory.
    const first = await build(m2.slice(0, 4));
    const second = await build(m2.slice(4));
    assert.deepEqual(mesh.cache, { hits: 1, reads: 1 });
    const gone = m2[7] as string;
    for (const [n, peers] of [...first, ...second]) assert.ok(n === gone || peers.includes(gone), `${n} lists every other m2 node (8 nodes)`);
    // Revoke the grant of one node: the next batch must read again and list it nowhere.
    await pool.query("DELETE FROM node_roles WHERE node = $1", [gone]);
    try {
      assert.ok(BigInt(await meshDirectoryVersion(pool)) > BigInt(read.version), "revoking a mesh role moves the directory version");
      const after = await build(m2.slice(0, 7));
      assert.deepEqual(mesh.cache, { hits: 1, reads: 2 });
      for (const [n, peers] of after) assert.ok(!peers.includes(gone) && peers.length === 6, `${n} lists ${peers.join(",")}`);
      // An endpoint change (not a membership change) also misses the cache: peer entries carry endpoints.
      await writeMeshReports(pool, [{ node: m2[0] as string, cluster: "m2", endpoints: ["10.2.9.9:4433"], reachable: true, relayCapable: false, load: 0.2 }]);
      const moved = await build([m2[1] as string]);
      assert.deepEqual(mesh.cache, { hits: 1, reads: 3 });
      assert.ok(moved.get(m2[1] as string)?.includes(m2[0] as string));
      const c = await build([m2[2] as string]);
      assert.deepEqual(mesh.cache, { hits: 2, reads: 3 });
      assert.ok(c.get(m2[2] as string)?.includes(m2[0] as string));
    } finally {
      await pool.query("INSERT INTO node_roles (assignment, node, cluster, role) VALUES ('ra-entry-node', $1, 'm2', 'entry-node')", [gone]);
    }
  });
  it("moves the directory version once per committing transaction that changes what the read returns, and not for a no-op write", async () => {
    const node = m2[5] as string;
    const v = async (): Promise<bigint> => BigInt(await meshDirectoryVersion(pool));
    const start = await v();
    await pool.query("UPDATE nodes SET membership = membership WHERE name = $1", [node]);
    await pool.query("UPDATE node_identities SET public_key_fingerprint = public_key_fingerprint WHERE node = $1", [node]);
    await pool.query("UPDATE clusters SET spec = spec WHERE name = 'm2'");
    assert.equal(await v(), start, "rewriting the same values decides nothing");
    const c = await pool.connect();
    try {
      await c.query("BEGIN");
      await c.query("UPDATE mesh_node_facts SET zone = zone || '-moved' WHERE node = $1", [node]);
      await c.query("UPDATE mesh_endpoints SET endpoints = ARRAY['10.2.7.7:4433'] WHERE node = $1", [node]);
      assert.equal(await v(), start, "not visible before commit");
      await c.query("COMMIT");
    } finally {
      c.release();
    }
    assert.equal(await v(), start + 1n, "two changes in one transaction: one bump");
    await pool.query("UPDATE mesh_node_facts SET zone = replace(zone, '-moved', '') WHERE node = $1", [node]);
    assert.equal(await v(), start + 2n);
    const rolledBack = await pool.connect();
    try {
      await rolledBack.query("BEGIN");
      await rolledBack.query("UPDATE nodes SET membership = 'Disabled' WHERE name = $1", [node]);
      await rolledBack.query("ROLLBACK");
    } finally {
      rolledBack.release();
    }
    assert.equal(await v(), start + 2n, "a rolled-back change does not move it");
  });
});
