/**
 * Benchmark: a rollout across 1,000 simulated nodes in 3 rings (100, 300,
 * 600 nodes) with a zero soak and maxUnavailable 100%, through the
 * ReleaseChannel controller's decision path against an embedded PostgreSQL
 * (fsync on): each tick reads the agents' `updates` reports
 * (node_status_reports), runs planRollout, and commits assignments + state
 * (fenced, audited, snapshot_dirty marks, node_release_assignments). The
 * simulated agents answer every assignment at once with a report (running
 * on it, or rolled_back for the bad version), written as one batch.
 *
 * Prints: time and ticks for 2.0.0 to complete over every ring; then for a
 * bad 3.0.0, the time from its failure reports landing in the first ring to
 * every node of that ring being assigned stable again in PostgreSQL.
 * Figures only; nothing is asserted.
 *
 *   npx tsx test/bench/rollout.bench.ts [--nodes 1000]
 */
import { rmSync } from "node:fs";
import { parseArgs } from "node:util";
import type pg from "pg";
import { emptyRolloutState, planRollout, type ChannelPolicy, type NodeObservation, type RolloutState } from "../../controllers/releasechannel/plan.js";
import { PgAuthority } from "../../controllers/runtime/index.js";
import { openDatabase } from "../../lib/db/database.js";
import { RolloutStore, type AssignmentRow } from "../../lib/state/rollouts.js";
import { tempStateDir } from "../support/controlplane.js";

const CHANNEL = "bench";
const CLUSTER = "bench";

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { nodes: { type: "string", default: "1000" } } });
  const total = Number(values.nodes);
  process.env.FABRIC_LOG_LEVEL ??= "warn";
  const stateDir = tempStateDir("afo-rollout-bench-");
  const db = await openDatabase({ stateDir, fsync: true });
  try {
    const authority = new PgAuthority(db.pool);
    await authority.acquire("bench");
    const store = new RolloutStore(db.pool, authority, "bench");
    const nodes = Array.from({ length: total }, (_, i) => `n${String(i).padStart(5, "0")}`);
    const sizes = [Math.round(total * 0.1), Math.round(total * 0.3)];
    const rings = [
      { name: "canary", nodes: nodes.slice(0, sizes[0]), version: "current" as const, soakMs: 0 },
      { name: "early", nodes: nodes.slice(sizes[0], (sizes[0] ?? 0) + (sizes[1] ?? 0)), version: "current" as const, soakMs: 0 },
      { name: "rest", nodes: nodes.slice((sizes[0] ?? 0) + (sizes[1] ?? 0)), version: "current" as const, soakMs: 0 },
    ];
    const policy = (current: string): ChannelPolicy => ({ current, rings, maxUnavailable: "100%", minHealthyPercent: 100, maxFailures: 1, paused: false, blocklist: [] });
    const verified = new Set(["1.0.0", "2.0.0", "3.0.0"]);
    const bad = new Set(["3.0.0"]);
    const row = (version: string, ring: string): AssignmentRow => ({
      version,
      releaseName: `bench-${version}`,
      artifact: { os: "linux", arch: "amd64", length: 1, sha256: version.replace(/\./g, "").padEnd(64, "a") },
      envelope: { payloadType: "x", payload: "", signatures: [] },
      ring,
    });
    const ringOf = new Map(rings.flatMap((r) => r.nodes.map((n) => [n, r.name] as const)));
    let reportVersion = 1;

    /** The simulated agents: each node reports on what it is assigned. */
    async function agentsAnswer(pool: pg.Pool): Promise<void> {
      const assigned = await store.assignments(CHANNEL);
      const rows = [...assigned].map(([node, a]) => ({
        node,
        body: { workloads: [{ workload: "svc", channel: CHANNEL, state: bad.has(a.version) ? "rolled_back" : "running", version: a.version, since: new Date().toISOString() }] },
      }));
      reportVersion++;
      await pool.query(
        `INSERT INTO node_status_reports (node, kind, cluster, version, body)
         SELECT x.node, 'updates', $1, $2, x.body FROM jsonb_to_recordset($3::jsonb) AS x(node text, body jsonb)
         ON CONFLICT (node, kind) DO UPDATE SET version = EXCLUDED.version, body = EXCLUDED.body WHERE node_status_reports.version < EXCLUDED.version`,
        [CLUSTER, reportVersion, JSON.stringify(rows)],
      );
    }

    /** One controller tick: read, plan, commit. */
    async function tick(current: string): Promise<{ phase: string; planMs: number; commitMs: number; readMs: number }> {
      const t0 = performance.now();
      const state = (await store.state<RolloutState>(CHANNEL)) ?? emptyRolloutState();
      const assigned = await store.assignments(CHANNEL);
      const reports = await store.updateReports(CLUSTER, nodes);
      const obs = new Map<string, NodeObservation>();
      for (const n of nodes) {
        const r = reports.get(n)?.[0];
        obs.set(n, { assigned: assigned.get(n)?.version, report: r === undefined ? undefined : { state: r.state, version: r.version }, nodeReady: true, instancesReady: true });
      }
      const t1 = performance.now();
      const out = planRollout({ policy: policy(current), verified, nodes: obs, state, now: Date.now() });
      const t2 = performance.now();
      const want = new Map<string, AssignmentRow>();
      for (const [n, v] of out.assignments) if (v !== undefined) want.set(n, row(v, ringOf.get(n) ?? ""));
      await store.commit(CHANNEL, CLUSTER, "svc", out.state, want, out.decisions.map((d) => ({ action: `rollout.${d.type.toLowerCase()}`, details: { ring: d.ring, version: d.version, nodes: d.nodes?.length } })));
      const t3 = performance.now();
      return { phase: out.phase, readMs: t1 - t0, planMs: t2 - t1, commitMs: t3 - t2 };
    }

    async function rollout(version: string, until: (phase: string) => boolean): Promise<{ ms: number; ticks: number; read: number; plan: number; commit: number }> {
      const start = performance.now();
      let ticks = 0;
      let read = 0;
      let plan = 0;
      let commit = 0;
      for (;;) {
        const t = await tick(version);
        ticks++;
        read += t.readMs;
        plan += t.planMs;
        commit += t.commitMs;
        if (until(t.phase)) break;
        await agentsAnswer(db.pool);
        if (ticks > 100) throw new Error(`${version}: no progress after 100 ticks`);
      }
      return { ms: performance.now() - start, ticks, read, plan, commit };
    }

    const fmt = (r: { ms: number; ticks: number; read: number; plan: number; commit: number }): string =>
      `${r.ms.toFixed(0)} ms in ${r.ticks} ticks (reads ${r.read.toFixed(0)} ms, plan ${r.plan.toFixed(0)} ms, commits ${r.commit.toFixed(0)} ms; agents' report batches the rest)`;
    const v1 = await rollout("1.0.0", (p) => p === "Complete");
    console.log(`nodes ${total}, rings ${rings.map((r) => `${r.name}=${r.nodes.length}`).join(" ")}, zero soak, maxUnavailable 100%`);
    console.log(`first rollout 1.0.0 to completion: ${fmt(v1)}`);
    const v2 = await rollout("2.0.0", (p) => p === "Complete");
    console.log(`rollout 2.0.0 (from stable 1.0.0) to completion: ${fmt(v2)}`);

    // The bad version: one tick assigns ring 1, the agents report rolled_back; measure from those reports to ring 1 back on stable.
    await tick("3.0.0");
    await agentsAnswer(db.pool);
    const failedAt = performance.now();
    const t = await tick("3.0.0");
    const back = await store.assignments(CHANNEL);
    const onStable = rings[0]?.nodes.filter((n) => back.get(n)?.version === "2.0.0").length ?? 0;
    const elsewhere = nodes.filter((n) => back.get(n)?.version === "3.0.0").length;
    console.log(
      `bad 3.0.0: failure reports of ring canary -> all its nodes assigned stable in PostgreSQL: ${(performance.now() - failedAt).toFixed(0)} ms (1 tick: read ${t.readMs.toFixed(0)} ms, plan ${t.planMs.toFixed(0)} ms, commit ${t.commitMs.toFixed(0)} ms); phase ${t.phase}; ${onStable}/${rings[0]?.nodes.length} canary nodes on 2.0.0, ${elsewhere} nodes anywhere on 3.0.0`,
    );
  } finally {
    await db.close();
    rmSync(stateDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
