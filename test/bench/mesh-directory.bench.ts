/**
 * The mesh peer directory at fleet scale (docs/mesh.md). Prints figures only.
 *
 * 1. The pure candidate selection (controllers/mesh/plan.ts) over N and
 *    10 x N members: prepare the rings and compute every node's set.
 * 2. Through the real contributor and builder: a control plane on the
 *    embedded PostgreSQL, N mesh nodes of one cluster inserted with SQL (3
 *    regions x 3 zones, every 10th a relay), a cluster-wide mark drained by
 *    the running leader's builder: full build time, bytes per node, and how
 *    often the contributor read the directory or reused the one it kept.
 *    Two figures are kept apart: (a) "candidate sets through the contributor":
 *    every node's set computed through the real mesh contributor from the
 *    PostgreSQL rows, cold (fresh contributor and sets cache: directory read,
 *    rings, every set and inbound list, every payload's mesh part, the sets
 *    recorded), in a transaction rolled back, nothing signed; (b) "full signed
 *    rebuild": the builder assembles, signs and stores every snapshot.
 * 3. One endpoint change through the state layer: snapshots re-signed and
 *    time until the builder is idle again.
 * 4. Beside it, from the same directory rows: the full-mesh alternative
 *    (every node receives every peer): time to compute and serialise the
 *    peer lists, bytes per node, bytes re-sent per change.
 *
 * 5. A renewal (the active identity's key fingerprint changes): snapshots
 *    re-signed on both sides (the nodes listing it, and the nodes holding it
 *    as an inbound entry) and time until the builder is idle.
 *
 * Bounded: every wait gives up after DEADLINE_MS (default 15 min), printing
 * what it waited for, and the control plane is stopped either way.
 *
 *   npx tsx test/bench/mesh-directory.bench.ts [nodes]          (default 10,000; 100000 for the large run)
 *   MESH_BENCH_CONTRIBUTOR_ONLY=1 npx tsx test/bench/mesh-directory.bench.ts 100000   (rows and (a) only)
 *   MESH_BENCH_REBUILD_ROUNDS=2 npx tsx test/bench/mesh-directory.bench.ts 100000     (rows, first build, then (b) twice)
 */
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { loadavg } from "node:os";
import path from "node:path";
import type pg from "pg";
import { runControlPlane } from "../../controlplane/controlplane.js";
import { inboundEntry, meshSetsOf, peerEntry, prepareDirectory } from "../../controllers/mesh/plan.js";
import { logger } from "../../lib/log.js";
import { canonicalize } from "../../lib/snapshot/canonical-json.js";
import { clusterSerials } from "../../lib/state/snapshots.js";
import { DEFAULT_PEER_POLICY, meshDirectoryOf, meshDirectoryVersion, writeMeshReports, type MeshMemberRow } from "../../lib/state/mesh.js";
import { createMeshContributor, type MeshContributor } from "../../controllers/mesh/snapshot.js";
import { MeshSetsCache } from "../../controllers/mesh/sets-cache.js";
import type { SnapshotNodeRef } from "../../lib/snapshot/contributors.js";
import type { SnapshotPayload } from "../../lib/snapshot/format.js";
import { tempStateDir } from "../support/controlplane.js";
import { applyCluster } from "../support/enrollment.js";

const N = Number(process.argv[2] ?? 10_000);
// Only the rows and (a): no controllers, so no builder and no sweeps (a 100,000-node first build takes minutes on a busy machine).
const CONTRIBUTOR_ONLY = process.env.MESH_BENCH_CONTRIBUTOR_ONLY === "1";
// Only the rows, the first build and this many full signed rebuilds (b): the side-by-side runs of docs/benchmarks.md.
const REBUILD_ROUNDS = Number(process.env.MESH_BENCH_REBUILD_ROUNDS ?? 0);
const CLUSTER = "mesh";
const ms = (t: bigint): string => `${(Number(process.hrtime.bigint() - t) / 1e6).toFixed(0)} ms`;
const DEADLINE_MS = Number(process.env.DEADLINE_MS ?? 15 * 60_000);
// Polls that read every node's row are spaced with N (50 ms at 10,000, 500 ms at 100,000): they load PostgreSQL themselves.
const SCAN_POLL_MS = Math.max(50, N / 200);
const deadline = Date.now() + DEADLINE_MS;
function inTime(what: string): void {
  if (Date.now() > deadline) throw new Error(`bench gave up after ${DEADLINE_MS} ms waiting for ${what}`);
}

/**
 * CPU milliseconds (user + system) of the embedded PostgreSQL: the postmaster,
 * its live children, and the children it has reaped (exited backends).
 */
function postgresCpuMs(stateDir: string): number {
  const ticks = (pid: string): number[] => {
    // Fields after the command name: state is [0], utime [11], stime [12], cutime [13], cstime [14].
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number);
  };
  const postmaster = readFileSync(path.join(stateDir, "postgres", "postmaster.pid"), "utf8").split("\n")[0] as string;
  const f = ticks(postmaster);
  let total = (f[11] ?? 0) + (f[12] ?? 0) + (f[13] ?? 0) + (f[14] ?? 0);
  for (const pid of readdirSync("/proc").filter((d) => /^[0-9]+$/.test(d))) {
    try {
      const c = ticks(pid);
      if (String(c[1]) === postmaster) total += (c[11] ?? 0) + (c[12] ?? 0);
    } catch {
      // exited meanwhile: its time is in the postmaster's cutime/cstime
    }
  }
  return (total * 1000) / 100;
}

/** Wall clock and CPU of this process and of PostgreSQL since `start()`. */
function cpuClock(stateDir: string): () => string {
  const t = process.hrtime.bigint();
  const own = process.cpuUsage();
  const pgStart = postgresCpuMs(stateDir);
  return () => {
    const u = process.cpuUsage(own);
    return `${ms(t)} (CPU: bench process ${((u.user + u.system) / 1000).toFixed(0)} ms, PostgreSQL ${(postgresCpuMs(stateDir) - pgStart).toFixed(0)} ms; load average ${loadavg()[0]?.toFixed(1)})`;
  };
}

function synthetic(n: number): MeshMemberRow[] {
  return Array.from({ length: n }, (_, i) => ({
    node: `${CLUSTER}.n-${i}`,
    nodeClass: i % 10 === 0 ? "relay" : "standard",
    region: `r${i % 3}`,
    zone: `z${Math.floor(i / 3) % 3}`,
    roles: [i % 10 === 0 ? "relay-node" : "entry-node"],
    endpoints: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:4433`],
    reachable: true,
    relayCapable: i % 10 === 0,
    publicKeyFingerprint: `sha256:${"ab".repeat(32)}`,
  }));
}

async function main(): Promise<void> {
  for (const n of REBUILD_ROUNDS > 0 ? [] : N >= 100_000 ? [N] : [N, 10 * N]) {
    const members = synthetic(n);
    const t = process.hrtime.bigint();
    const { sets, inbound } = meshSetsOf(prepareDirectory({ cluster: CLUSTER, policy: DEFAULT_PEER_POLICY, members }));
    let total = 0;
    for (const s of sets.values()) total += s.length;
    const ins = [...inbound.values()].map((l) => l.length).sort((x, y) => x - y);
    console.log(`pure plan: ${n} nodes: candidate sets and inbound entries in ${ms(t)}, ${(total / n).toFixed(1)} candidates per node; inbound per node median ${ins[Math.floor(ins.length / 2)] ?? 0}, p99 ${ins[Math.floor(ins.length * 0.99)] ?? 0}, max ${ins[ins.length - 1] ?? 0}`);
  }

  const stateDir = tempStateDir("fabric-bench-");
  const cp = await runControlPlane({ stateDir, host: "127.0.0.1", port: 0, metricsPort: 0, fsync: false, log: logger("bench"), ...(CONTRIBUTOR_ONLY ? {} : { controllers: { identity: "bench-mesh", sweepIntervalMs: 3_600_000 } }) });
  try {
    if (!CONTRIBUTOR_ONLY) await applyCluster(cp.api.kubeconfigPath, CLUSTER);
    const pool = cp.db.pool;
    let t = process.hrtime.bigint();
    await pool.query(`INSERT INTO nodes (name, cluster, node_name, host_fingerprint) SELECT $1 || '.n-' || i, $1, 'n-' || i, 'sha256:' || md5(i::text) FROM generate_series(0, $2 - 1) i`, [CLUSTER, N]);
    await pool.query(
      `INSERT INTO node_identities (serial, node, cluster, public_key_fingerprint, not_before, not_after, status)
       SELECT md5('s' || i), $1 || '.n-' || i, $1, 'sha256:' || md5('k' || i) || md5('l' || i), now(), now() + interval '1 day', 'active' FROM generate_series(0, $2 - 1) i`,
      [CLUSTER, N],
    );
    await pool.query(
      `INSERT INTO mesh_node_facts (node, cluster, node_class, region, zone)
       SELECT $1 || '.n-' || i, $1, CASE WHEN i % 10 = 0 THEN 'relay' ELSE 'standard' END, 'r' || (i % 3), 'z' || ((i / 3) % 3) FROM generate_series(0, $2 - 1) i`,
      [CLUSTER, N],
    );
    await pool.query(
      `INSERT INTO node_roles (assignment, node, cluster, role)
       SELECT CASE WHEN i % 10 = 0 THEN 'relays' ELSE 'entries' END, $1 || '.n-' || i, $1, CASE WHEN i % 10 = 0 THEN 'relay-node' ELSE 'entry-node' END FROM generate_series(0, $2 - 1) i`,
      [CLUSTER, N],
    );
    await writeMeshReports(pool, synthetic(N).map((m, i) => ({ node: m.node, cluster: CLUSTER, endpoints: m.endpoints, reachable: true, relayCapable: i % 10 === 0, load: 0.3 })));
    console.log(`setup: ${N} nodes with roles, facts, identities and endpoints in ${ms(t)}`);
    if (CONTRIBUTOR_ONLY) {
      await pool.query("ANALYZE");
      await throughContributor(pool, stateDir, 4, true);
      return;
    }

    const waitIdle = async (): Promise<void> => {
      for (;;) {
        // Oldest first, as the builder reads: an index scan, not a scan over the marks the builder deleted.
        const r = await pool.query("SELECT 1 FROM snapshot_dirty ORDER BY marked_at LIMIT 1");
        if (r.rowCount === 0) return;
        inTime("the builder to drain");
        await new Promise((res) => setTimeout(res, 20));
      }
    };
    // First build (snapshots did not exist: the builder's sweep and the mesh sweep mark them).
    const firstBuild = cpuClock(stateDir);
    for (;;) {
      const r = await pool.query<{ n: string }>("SELECT count(*) AS n FROM node_snapshots WHERE cluster = $1", [CLUSTER]);
      if (Number(r.rows[0]?.n) >= N) break;
      inTime("the first build");
      await new Promise((res) => setTimeout(res, SCAN_POLL_MS));
    }
    await waitIdle();
    console.log(`first build: ${N} snapshots with candidate sets in ${firstBuild()}`);

    // A cluster-wide rebuild: every payload assembled again (the mesh contributor included); forget the stored payload hashes so all are re-signed.
    const fullRebuild = async (): Promise<void> => {
      await pool.query("UPDATE node_snapshots SET payload_hash = 'x' WHERE cluster = $1", [CLUSTER]);
      // Clear the dead rows that update left, as autovacuum would: the build then meets the table as it is at rest.
      await pool.query("VACUUM node_snapshots");
      const fullBuild = cpuClock(stateDir);
      await pool.query("INSERT INTO snapshot_dirty (cluster, node) VALUES ($1, '*') ON CONFLICT (cluster, node) DO UPDATE SET marked_at = now()", [CLUSTER]);
      const mesh = cp.controllers?.snapshotContributors.find((c) => c.name === "mesh") as MeshContributor | undefined;
      const cacheBefore = { ...(mesh?.cache ?? { hits: 0, reads: 0 }) };
      await waitIdle();
      const cache = mesh === undefined ? "" : `; directory read and prepared ${mesh.cache.reads - cacheBefore.reads} times, kept one reused ${mesh.cache.hits - cacheBefore.hits} times`;
      console.log(`full signed rebuild: ${N} payloads assembled (contributor included), signed and stored in ${fullBuild()}${cache}`);
    };
    if (REBUILD_ROUNDS > 0) {
      for (let round = 0; round < REBUILD_ROUNDS; round++) await fullRebuild();
      return;
    }

    const dirT = process.hrtime.bigint();
    const dir = await meshDirectoryOf(pool, CLUSTER);
    const dirRead = ms(dirT);
    const planT = process.hrtime.bigint();
    const prepared = prepareDirectory(dir);
    const { sets, inbound } = meshSetsOf(prepared);
    const versionT = process.hrtime.bigint();
    await meshDirectoryVersion(pool);
    console.log(`directory read (${dir.members.length} members): ${dirRead}; its version alone: ${ms(versionT)}; candidate computation for all: ${ms(planT)}`);
    await throughContributor(pool, stateDir, 2, false);
    let bytes = 0;
    for (const [, s] of sets) bytes += canonicalize(s.map((n) => peerEntry(CLUSTER, prepared.members.get(n) as MeshMemberRow))).length;
    let inBytes = 0;
    for (const [, l] of inbound) inBytes += canonicalize(l.map((n) => inboundEntry(prepared.members.get(n) as MeshMemberRow))).length;
    console.log(`bounded: ${(bytes / N).toFixed(0)} bytes of meshPeers and ${(inBytes / N).toFixed(0)} bytes of meshInbound per node`);

    await fullRebuild();

    const before = await clusterSerials(pool, CLUSTER);
    t = process.hrtime.bigint();
    await writeMeshReports(pool, [{ node: `${CLUSTER}.n-7`, cluster: CLUSTER, endpoints: ["10.99.0.7:4433"], reachable: true, relayCapable: false, load: 0.3 }]);
    await new Promise((res) => setTimeout(res, 30));
    await waitIdle();
    const changeTime = ms(t);
    const after = await clusterSerials(pool, CLUSTER);
    const resigned = [...after].filter(([n, s]) => before.get(n) !== s).length;
    console.log(`one endpoint change: ${resigned} snapshots re-signed, builder idle after ${changeTime}; ~${((resigned * (bytes / N)) / 1024).toFixed(1)} KiB of meshPeers re-sent`);

    // A renewal: the pin changes in the entries on both sides of the node. Its wait reads every
    // node's serial per poll, itself a load at 100,000 nodes: measured at smaller sizes only.
    if (N >= 100_000) console.log("one renewal: not measured at this size (its poll reads every serial)");
    else await renewal();
    async function renewal(): Promise<void> {
      const renewed = `${CLUSTER}.n-7`;
      const holders = [...sets].filter(([n, l]) => l.includes(renewed) || (inbound.get(n) ?? []).includes(renewed)).length;
      const beforeRenewal = await clusterSerials(pool, CLUSTER);
      t = process.hrtime.bigint();
      await pool.query("UPDATE node_identities SET public_key_fingerprint = 'sha256:' || md5('renewed') || md5('pin') WHERE node = $1 AND status = 'active'", [renewed]);
      // The directory sweep (every 2 s) finds it; wait for the marks to appear, then for the builder.
      for (;;) {
        const after = await clusterSerials(pool, CLUSTER);
        if ([...after].some(([n, v]) => n !== renewed && beforeRenewal.get(n) !== v)) break;
        inTime("the renewal's re-signs");
        await new Promise((res) => setTimeout(res, SCAN_POLL_MS));
      }
      await waitIdle();
      const renewalTime = ms(t);
      const afterRenewal = await clusterSerials(pool, CLUSTER);
      const resignedRenewal = [...afterRenewal].filter(([n, v]) => beforeRenewal.get(n) !== v).length;
      console.log(`one renewal (new pin): ${resignedRenewal} snapshots re-signed (${holders} hold its entry on either side), builder idle after ${renewalTime} (includes up to one 2 s sweep period)`);
    }

    // Full mesh from the same rows: every node receives every other candidate.
    t = process.hrtime.bigint();
    // Every node's list is the others' entries: build and canonicalise a sample of them, extrapolate to N.
    const sample = N >= 100_000 ? 10 : 200;
    let perNode = 0;
    for (let i = 0; i < sample; i++) perNode = canonicalize(dir.members.filter((_, j) => j !== i).map((m) => peerEntry(CLUSTER, m))).length;
    const fullTime = (Number(process.hrtime.bigint() - t) / 1e6) * (N / sample);
    console.log(`full mesh: ${(perNode / 1024).toFixed(0)} KiB of peers per node (${(perNode / (bytes / N)).toFixed(0)}x), ~${(fullTime / 1000).toFixed(1)} s to serialise ${N} lists, ${((N * perNode) / 1024 / 1024).toFixed(0)} MiB re-sent per endpoint change (every node)`);
  } finally {
    await cp.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
}

/**
 * (a) Every node's candidate set through the real contributor from the real rows, cold: a fresh
 * contributor and sets cache read the directory, prepare it, compute every set and inbound list,
 * fill every payload's meshPeers, mesh and meshInbound and record the sets (unchanged rows are
 * compared, not rewritten), in one transaction, rolled back unless `commitFirst` (the first round
 * then records every set, as a first build does). No signing, no snapshot written.
 */
async function throughContributor(pool: pg.Pool, stateDir: string, rounds: number, commitFirst: boolean): Promise<void> {
  const names = (await pool.query<{ name: string }>("SELECT name FROM nodes WHERE cluster = $1 ORDER BY name", [CLUSTER])).rows.map((r) => r.name);
  for (let round = 0; round < rounds; round++) {
    const commit = commitFirst && round === 0;
    const refs: SnapshotNodeRef[] = names.map((node) => ({ cluster: CLUSTER, node, membership: "Active" }));
    const payloads = new Map(names.map((node): [string, SnapshotPayload] => [node, { identity: { name: node } as SnapshotPayload["identity"], roles: [], workloads: [], meshPeers: [], vpnAssignments: [], updates: [] }]));
    const client = await pool.connect();
    try {
      await client.query("BEGIN");
      const clock = cpuClock(stateDir);
      await createMeshContributor(new MeshSetsCache()).contributeMany?.(client, CLUSTER, refs, payloads);
      if (commit) await client.query("COMMIT");
      const took = clock();
      let listed = 0;
      for (const p of payloads.values()) listed += p.meshPeers.length;
      const what = commit ? "first: every set recorded, committed" : `cold, round ${round + 1}`;
      console.log(`candidate sets through the contributor (${what}): ${N} nodes' meshPeers/mesh/meshInbound from the PostgreSQL rows in ${took}; ${(listed / N).toFixed(1)} peers per node`);
    } finally {
      await client.query("ROLLBACK");
      client.release();
    }
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
