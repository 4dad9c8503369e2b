/**
 * VPN lease load on the database path the agent API uses (lib/state/vpn.ts
 * under a real PgAuthority term, embedded PostgreSQL with fsync on as in
 * production): N connections (default 10,000), each with one eligible node
 * (synthetic node, health and role rows), are acquired once, then every
 * holder renews every TTL/3 (TTL 30 s: 1 renewal per connection per 10 s,
 * N/10 renewals per second) for a bounded run, group-committed by the store
 * (batched) or one transaction per renewal from 8 callers (unbatched). Prints acquire and renew
 * latency p50/p99, the renewal rate achieved against the rate asked, and
 * CPU: this process (the control plane's side of each call: the store code
 * and the pg driver) and PostgreSQL's processes. Prints figures only.
 *
 *   npx tsx test/bench/vpn-leases.bench.ts [connections] [seconds] [batched|unbatched]   (default 10000 30 batched)
 */
import { readFileSync, rmSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { PgAuthority } from "../../controllers/runtime/authority.js";
import { openDatabase } from "../../lib/db/database.js";
import { logger } from "../../lib/log.js";
import { VpnStore } from "../../lib/state/vpn.js";
import { tempStateDir } from "../support/controlplane.js";
import { CLK_TCK, descendants, percentile } from "./proc-stats.js";

const N = Number(process.argv[2] ?? 10_000);
const SECONDS = Number(process.argv[3] ?? 30);
const MODE = process.argv[4] ?? "batched";
if (MODE !== "batched" && MODE !== "unbatched") throw new Error("mode must be batched or unbatched");
const TTL_MS = 30_000;
const CLUSTER = "bench";

/**
 * CPU seconds of a process and of its children it has reaped (utime, stime,
 * cutime, cstime): PostgreSQL backends that exit while the run goes on (the
 * pool closes idle connections) stay counted in the postmaster's cutime.
 */
function cpuWithReaped(pid: number): number {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / CLK_TCK;
  } catch {
    return 0;
  }
}

async function main(): Promise<void> {
  const stateDir = tempStateDir("fabric-vpn-bench-");
  const log = logger("bench");
  const db = await openDatabase({ stateDir, fsync: true, log, maxConnections: 8 });
  try {
    const pool = db.pool;
    await pool.query(`INSERT INTO nodes (name, cluster, node_name, host_fingerprint) SELECT $1 || '.n-' || i, $1, 'n-' || i, 'sha256:' || md5(i::text) FROM generate_series(0, $2 - 1) i`, [CLUSTER, N]);
    await pool.query(`INSERT INTO node_health (node, cluster, health) SELECT $1 || '.n-' || i, $1, 'Healthy' FROM generate_series(0, $2 - 1) i`, [CLUSTER, N]);
    await pool.query(`INSERT INTO node_roles (assignment, node, cluster, role) SELECT 'bench', $1 || '.n-' || i, $1, 'vpn-connector' FROM generate_series(0, $2 - 1) i`, [CLUSTER, N]);
    await pool.query(
      `INSERT INTO vpn_connections (connection, namespace, name, cluster, mode, allowed_nodes, lease_ttl_ms, enabled, eligible_nodes)
       SELECT 'org/c-' || i, 'org', 'c-' || i, $1, 'Connector', ARRAY[$1 || '.n-' || i], $3, true, ARRAY[$1 || '.n-' || i] FROM generate_series(0, $2 - 1) i`,
      // Stored TTL 1 h: acquiring 10,000 leases takes longer than 30 s on a small machine and none may lapse
      // before its renewals are measured; the renewal schedule below is that of a 30 s TTL.
      [CLUSTER, N, 3_600_000],
    );
    await pool.query("ANALYZE");
    const authority = new PgAuthority(pool, { log });
    await authority.acquire("bench");
    const store = new VpnStore(pool, authority, "bench");
    const pgPids = (): number[] => descendants(process.pid);
    const cpu = (): { self: number; pg: number } => {
      const u = process.cpuUsage();
      return { self: (u.user + u.system) / 1e6, pg: pgPids().reduce((s, p) => s + cpuWithReaped(p), 0) };
    };

    // Acquire every connection, 8 at a time (the agent API's pool size).
    const acquire: number[] = [];
    const tokens = new Array<number>(N);
    let next = 0;
    const t0 = performance.now();
    const c0 = cpu();
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        for (let i = next++; i < N; i = next++) {
          const s = performance.now();
          const r = await store.acquire(`org/c-${i}`, `${CLUSTER}.n-${i}`);
          acquire.push(performance.now() - s);
          if (r.kind !== "granted") throw new Error(`c-${i}: ${r.kind}`);
          tokens[i] = r.token;
        }
      }),
    );
    const acquireSec = (performance.now() - t0) / 1000;
    const c1 = cpu();

    // Renewals: connection i is due at (i / N) * TTL/3 into each period. Batched (the default), every
    // renewal is sent at its due time as 10,000 agents would, without waiting for earlier answers, and
    // the store group-commits what is outstanding; unbatched, 8 callers each write one renewal per
    // transaction (the path before group commit).
    const period = TTL_MS / 3;
    const renew: number[] = [];
    const lag: number[] = [];
    let failed = 0;
    const start = performance.now();
    const end = start + SECONDS * 1000;
    const dueAt = (k: number): number => start + Math.floor(k / N) * period + ((k % N) / N) * period;
    const b0 = store.renewBatches;
    const c2 = cpu();
    const one = async (k: number): Promise<void> => {
      const i = k % N;
      const s = performance.now();
      lag.push(s - dueAt(k));
      const r = MODE === "batched" ? await store.renew(`org/c-${i}`, `${CLUSTER}.n-${i}`, tokens[i] ?? 0) : (await store.renewMany([{ connection: `org/c-${i}`, node: `${CLUSTER}.n-${i}`, token: tokens[i] ?? 0 }]))[0];
      renew.push(performance.now() - s);
      if (r === undefined) failed++;
    };
    if (MODE === "batched") {
      const inflight: Array<Promise<void>> = [];
      for (let k = 0; dueAt(k) < end; ) {
        const now = performance.now();
        for (; dueAt(k) <= now && dueAt(k) < end; k++) inflight.push(one(k));
        await new Promise((r) => setTimeout(r, 2));
      }
      await Promise.all(inflight);
    } else {
      let due = 0;
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          for (;;) {
            const k = due++;
            if (dueAt(k) >= end) return;
            const wait = dueAt(k) - performance.now();
            if (wait > 0) await new Promise((r) => setTimeout(r, wait));
            await one(k);
          }
        }),
      );
    }
    const runSec = (performance.now() - start) / 1000;
    const c3 = cpu();
    acquire.sort((a, b) => a - b);
    renew.sort((a, b) => a - b);
    lag.sort((a, b) => a - b);
    const batches = store.renewBatches - b0;
    const f = (x: number): string => x.toFixed(2);
    console.log(`connections ${N}, TTL ${TTL_MS / 1000} s, renew every ${period / 1000} s (asked ${f(N / (period / 1000))}/s), ${MODE}, fsync on`);
    console.log(`acquire: ${acquire.length} in ${f(acquireSec)} s (${f(acquire.length / acquireSec)}/s), p50 ${f(percentile(acquire, 50))} ms, p99 ${f(percentile(acquire, 99))} ms; CPU self ${f(c1.self - c0.self)} s, postgres ${f(c1.pg - c0.pg)} s`);
    console.log(
      `renew: ${renew.length} in ${f(runSec)} s (${f(renew.length / runSec)}/s), failed ${failed}, p50 ${f(percentile(renew, 50))} ms, p99 ${f(percentile(renew, 99))} ms; CPU self ${f(c3.self - c2.self)} s (${f((100 * (c3.self - c2.self)) / runSec)} % of a core), postgres ${f(c3.pg - c2.pg)} s (${f((100 * (c3.pg - c2.pg)) / runSec)} % of a core)`,
    );
    console.log(`renew send lag behind schedule p50 ${f(percentile(lag, 50))} ms, p99 ${f(percentile(lag, 99))} ms; ${MODE === "batched" ? `${batches} batches, ${f(renew.length / Math.max(1, batches))} renewals per batch` : "one transaction per renewal"}`);
  } finally {
    await db.close();
    rmSync(stateDir, { recursive: true, force: true });
  }
}

await main();
