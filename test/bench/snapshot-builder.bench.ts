/**
 * Full re-snapshot of a 10,000-node cluster through the real builder
 * (controllers/snapshots/builder.ts) against the embedded PostgreSQL:
 * compute (identity + the contributors the kinds hand it), canonicalise, sign, store.
 * Nodes and identities are inserted with SQL (enrolling 10,000 hosts is the
 * enrollment benchmark's job); then every node is marked dirty ("*") and the
 * running leader's builder drains it. Prints figures only.
 *
 * The cluster-wide change is repeated (default 3 rounds, the group flipping
 * each time) because it is the figure that matters and the machine is shared.
 * The data set is inserted right before the runs, so PostgreSQL's statistics
 * are stale (as after a burst of enrollments): the builder must not depend on
 * autovacuum having run.
 *
 *   npx tsx test/bench/snapshot-builder.bench.ts [nodes] [change rounds]
 */
import { loadavg } from "node:os";
import { performance } from "node:perf_hooks";
import { logger } from "../../lib/log.js";
import { runControlPlane } from "../../controlplane/controlplane.js";
import { tempStateDir } from "../support/controlplane.js";
import { applyCluster } from "../support/enrollment.js";
import { rmSync } from "node:fs";

const N = Number(process.argv[2] ?? 10_000);
const ROUNDS = Number(process.argv[3] ?? 3);
process.env.FABRIC_LOG_LEVEL ??= "warn";
const stateDir = tempStateDir("fabric-bench-");
const cp = await runControlPlane({ stateDir, host: "127.0.0.1", port: 0, metricsPort: 0, fsync: false, log: logger("bench"), controllers: { identity: "bench" } });
try {
  await applyCluster(cp.api.kubeconfigPath, "bench");
  const pool = cp.db.pool;
  await pool.query(
    `INSERT INTO nodes (name, cluster, node_name, host_fingerprint, node_group)
     SELECT 'bench.n-' || i, 'bench', 'n-' || i, 'sha256:' || md5(i::text) || md5((i+1)::text), 'rack-' || (i % 40) FROM generate_series(1, $1) i`,
    [N],
  );
  await pool.query(
    `INSERT INTO node_identities (serial, node, cluster, public_key_fingerprint, not_before, not_after, status)
     SELECT md5('s' || i), 'bench.n-' || i, 'bench', 'sha256:' || md5('k' || i), now(), now() + interval '1 day', 'active' FROM generate_series(1, $1) i`,
    [N],
  );
  const run = async (label: string): Promise<void> => {
    const before = await pool.query<{ s: string }>("SELECT coalesce(sum(serial),0)::text AS s FROM node_snapshots WHERE cluster = 'bench'");
    const t = performance.now();
    await pool.query("INSERT INTO snapshot_dirty (cluster, node) VALUES ('bench', '*') ON CONFLICT (cluster, node) DO UPDATE SET marked_at = now()");
    for (;;) {
      const r = await pool.query<{ d: string }>("SELECT count(*)::text AS d FROM snapshot_dirty WHERE cluster = 'bench'");
      if (r.rows[0]?.d === "0") break;
      await new Promise((res) => setTimeout(res, 20));
    }
    const ms = performance.now() - t;
    const after = await pool.query<{ n: string; s: string; avg: string }>("SELECT count(*)::text AS n, sum(serial)::text AS s, avg(length(bytes))::int::text AS avg FROM node_snapshots WHERE cluster = 'bench'");
    const a = after.rows[0];
    console.log(`${label}: ${N} nodes in ${ms.toFixed(0)} ms (${((ms * 1000) / N).toFixed(0)} µs/node); snapshots ${a?.n}, serials moved by ${Number(a?.s ?? 0) - Number(before.rows[0]?.s ?? 0)}, ${a?.avg} bytes/snapshot`);
  };
  await run("first full snapshot (sign + store all)");
  await run("full re-mark, nothing changed (hash compare, no re-sign)");
  for (let i = 1; i <= ROUNDS; i++) {
    await pool.query("UPDATE nodes SET node_group = $1 WHERE cluster = 'bench'", [i % 2 === 1 ? "rack-x" : "rack-y"]);
    await run(`full re-snapshot after a cluster-wide change #${i} (re-sign + store all)`);
  }
  const v = await pool.query<{ v: string }>("SELECT current_setting('server_version') AS v");
  console.log(`node ${process.version}, PostgreSQL ${v.rows[0]?.v}, load average ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);
} finally {
  await cp.stop();
  rmSync(stateDir, { recursive: true, force: true });
}
