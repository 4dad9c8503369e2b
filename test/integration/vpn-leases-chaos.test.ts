/**
 * 50 contending lease clients (the agent's own lease code, agent/vpn/
 * lease-client.ts, each with its node's real mTLS identity) over 5
 * connections of a control plane running as a child process on a
 * PostgreSQL this test owns. Clients pause longer than the TTL now and then
 * (a stalled process), write to a fenced sink while they believe they hold
 * the lease, and send one deliberately late write after losing it. In the
 * middle the control plane is SIGKILLed and restarted, later PostgreSQL is
 * restarted under it. The history checker (test/support/history-checker.ts)
 * then finds 0 overlapping holders, unique and growing tokens, grants that
 * start only after the previous one ended by the database clock, and a sink
 * that never accepted a lower token (and refused the stale writes).
 *
 * Negative control: a broken client that trusts its own clock (deadline =
 * the answer's arrival + TTL + 150 ms, no margin, no renewals) among correct
 * contenders is caught by the same checker.
 */
import assert from "node:assert/strict";
import http from "node:http";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type pg from "pg";
import type { AgentApiClient } from "../../agent/http/client.js";
import { leaseLive, renewDueAt, VpnLeaseClient, type HeldLease } from "../../agent/vpn/lease-client.js";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "../../lib/db/embedded-postgres.js";
import { createPool } from "../../lib/db/pool.js";
import { eventually, kubectl, spawnControlPlane, tempStateDir, type ChildControlPlane } from "../support/controlplane.js";
import { createToken } from "../support/enrollment.js";
import { checkLeaseHistory, History, type DbGrant } from "../support/history-checker.js";
import { sinkWrite, startFencedSink, type FencedSink } from "../support/fenced-sink.js";
import { freePort } from "../support/tcp-proxy.js";
import { apply, ensureNamespace, heartbeat, joinFleet, nodeClient, vpnConnection, waitHealthy, type Fleet } from "../support/vpn-fleet.js";
import { seedPostgres } from "../support/pg-template.js";

const CLUSTER = "vpn-chaos";
const CLIENTS = 50;
const CONNECTIONS = 5;
const TTL_MS = 3000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe("vpn leases under contention, control-plane SIGKILL and PostgreSQL restart", function () {
  this.timeout(600_000);
  const stateDir = tempStateDir("fabric-vpn-chaos-");
  const pgDir = tempStateDir("fabric-vpn-chaos-pg-");
  let db: EmbeddedDatabase;
  let pool: pg.Pool;
  let cp: ChildControlPlane;
  let apiPort: number;
  let agentPort: number;
  let server: string;
  let fleet: Fleet;
  let sink: FencedSink;
  const clients = new Map<string, AgentApiClient>();
  let heartbeats = true;
  /** Last message per acquire outcome that was not a grant (diagnostics for a failing run). */
  const outcomes = new Map<string, string>();
  let heartbeatLoop: Promise<void> | undefined;

  // Shorter Lease election timings: the restarted process takes over 8 s after the SIGKILL, not 15 s (a 6 s renew
  // deadline still rides out the stalls of a loaded machine; 4/3 s lost leadership in the contention phase).
  const spawn = async (): Promise<ChildControlPlane> =>
    spawnControlPlane(stateDir, ["--port", String(apiPort), "--agent-port", String(agentPort), "--leader-elect-lease-duration", "8", "--leader-elect-renew-deadline", "6", "--leader-elect-retry-period", "1"], { DATABASE_URL: db.url });
  const grants = async (): Promise<DbGrant[]> =>
    (
      await pool.query<{ connection: string; token: string; holder: string; granted_at: Date; ended_at: Date | null; end_reason: string | null }>(
        "SELECT connection, token, holder, granted_at, ended_at, end_reason FROM vpn_grants ORDER BY connection, token",
      )
    ).rows.map((r) => ({ connection: r.connection, token: Number(r.token), holder: r.holder, grantedAt: r.granted_at, ...(r.ended_at !== null ? { endedAt: r.ended_at } : {}), ...(r.end_reason !== null ? { endReason: r.end_reason } : {}) }));

  before(async () => {
    await seedPostgres(join(pgDir, "postgres"));
    db = await startEmbeddedPostgres({ dataDir: join(pgDir, "postgres"), fsync: false });
    pool = createPool(db.url, { max: 4 });
    apiPort = await freePort();
    agentPort = await freePort();
    cp = await spawn();
    const ready = cp.output().split("\n").find((l) => l.includes('"control plane ready"'));
    const info = JSON.parse(ready ?? "{}") as { agentApi?: string; agentApiCaHash?: string };
    server = info.agentApi ?? "";
    assert.ok(server.startsWith("https://") && info.agentApiCaHash !== undefined, cp.output());
    await apply(cp.kubeconfig, { apiVersion: "accessfabric.io/v1alpha1", kind: "FabricCluster", metadata: { name: CLUSTER }, spec: { enrollmentPolicy: { approval: "TokenAutoApprove" } } });
    const w = await kubectl(cp.kubeconfig, ["wait", "--for=condition=Ready", `fabriccluster/${CLUSTER}`, "--timeout=60s"]);
    assert.equal(w.code, 0, w.stderr);
    const token = await createToken(cp.kubeconfig, "vpn-chaos-join", { cluster: CLUSTER, maxUses: 100, autoApprove: true });
    const names = Array.from({ length: CLIENTS + 5 }, (_, i) => `c-${i}`);
    fleet = await joinFleet({ server, caHash: info.agentApiCaHash ?? "", token, cluster: CLUSTER, names, parallel: 8 });
    for (const [n, id] of fleet.ids) clients.set(n, nodeClient(server, id));
    let seq = 0;
    const beat = async (): Promise<void> => {
      seq++;
      await Promise.all([...clients.values()].map((c) => heartbeat(c, seq).catch(() => undefined)));
    };
    await beat();
    heartbeatLoop = (async () => {
      while (heartbeats) {
        await sleep(5000);
        await beat();
      }
    })();
    await waitHealthy((sql, params) => pool.query(sql, params), names.map((n) => `${CLUSTER}.${n}`), 120_000);
    await ensureNamespace(cp.kubeconfig, "org-chaos");
    await apply(cp.kubeconfig, { apiVersion: "accessfabric.io/v1alpha1", kind: "RoleAssignment", metadata: { name: "chaos-connectors" }, spec: { cluster: CLUSTER, role: "vpn-connector", nodeNames: names.map((n) => `${CLUSTER}.${n}`) } });
    for (let k = 0; k < CONNECTIONS; k++) {
      const allowed = names.slice(0, CLIENTS).filter((_, i) => i % CONNECTIONS === k);
      await apply(cp.kubeconfig, vpnConnection("org-chaos", `conn-${k}`, { cluster: CLUSTER, mode: "Connector", allowedNodes: allowed.map((n) => `${CLUSTER}.${n}`), leaseDuration: `${TTL_MS / 1000}s` }));
    }
    await apply(cp.kubeconfig, vpnConnection("org-chaos", "negative", { cluster: CLUSTER, mode: "Connector", allowedNodes: names.slice(CLIENTS).map((n) => `${CLUSTER}.${n}`), leaseDuration: `${TTL_MS / 1000}s` }));
    await eventually(async () => Number((await pool.query<{ n: string }>("SELECT count(*) AS n FROM vpn_connections WHERE cardinality(eligible_nodes) > 0")).rows[0]?.n) === CONNECTIONS + 1, 60_000, 200);
    sink = await startFencedSink();
  });
  after(async () => {
    heartbeats = false;
    await heartbeatLoop;
    await sink?.close();
    if (cp !== undefined && cp.child.exitCode === null) {
      cp.child.kill("SIGTERM");
      await cp.exited;
    }
    await pool?.end();
    await db?.stop();
    fleet?.cleanup();
    rmSync(stateDir, { recursive: true, force: true });
    rmSync(pgDir, { recursive: true, force: true });
  });

  /** A correct client: contends, renews every TTL/3, stops at its deadline, pauses now and then longer than the TTL. */
  const correctClient = (h: History, name: string, conn: string, stop: () => boolean, rand: () => number, late: Array<Promise<number>>, httpAgent: http.Agent): Promise<void> =>
    (async () => {
      const lc = new VpnLeaseClient(clients.get(name)!, { timeoutMs: 2000 });
      let held: HeldLease | undefined;
      while (!stop()) {
        if (held !== undefined && !leaseLive(held, performance.now())) {
          // The deadline passed: the lease is gone. One deliberately late write with the old token (a delayed packet).
          const t = held;
          late.push(sleep(TTL_MS * 1.5).then(() => sinkWrite(sink.url, t.connection, t.token, httpAgent)));
          held = undefined;
          continue;
        }
        if (held === undefined) {
          const id = h.invoke(name, "acquire", conn);
          const r = await lc.acquire(conn);
          if (r.kind === "granted") {
            h.ok(id, { token: r.lease.token, deadline: r.lease.deadline });
            held = r.lease;
          } else if (r.kind === "busy" || r.kind === "refused") {
            outcomes.set(r.kind, r.kind === "busy" ? r.reason : `${r.code}: ${r.message}`);
            h.fail(id);
            await sleep(40 + rand() * 120);
          } else {
            outcomes.set(r.kind, r.message);
            h.info(id);
            await sleep(100 + rand() * 200);
          }
          continue;
        }
        if (rand() < 0.01) {
          await sleep(TTL_MS * (1 + rand())); // a stall longer than the TTL: no renewal, no write
          continue;
        }
        if (rand() < 0.01) {
          const id = h.invoke(name, "release", conn, held.token);
          const ok = await lc.release(held);
          if (ok) h.ok(id);
          else h.info(id);
          held = undefined;
          continue;
        }
        if (performance.now() >= renewDueAt(held)) {
          const id = h.invoke(name, "renew", conn, held.token);
          const r = await lc.renew(held);
          if (r.kind === "renewed") {
            h.ok(id, { token: r.lease.token, deadline: r.lease.deadline });
            held = r.lease;
          } else if (r.kind === "lost") {
            h.fail(id);
            held = undefined;
          } else {
            h.info(id);
            await sleep(100);
          }
          continue;
        }
        // Write only while the local deadline has not passed (the sink still fences a write that arrives late).
        if (leaseLive(held, performance.now())) await sinkWrite(sink.url, conn, held.token, httpAgent);
        await sleep(100);
      }
    })();

  it("50 clients over 5 connections: 0 overlapping holders, growing tokens, stale writes refused, across a SIGKILL and a PostgreSQL restart", async () => {
    const seed = Number(process.env.VPN_CHAOS_SEED ?? Date.now() % 1_000_000);
    console.log(`vpn chaos seed ${seed} (VPN_CHAOS_SEED to repeat)`);
    let s = seed;
    const rand = (): number => {
      s = (s * 1103515245 + 12345) % 2 ** 31;
      return s / 2 ** 31;
    };
    const h = new History();
    const late: Array<Promise<number>> = [];
    const httpAgent = new http.Agent({ keepAlive: true, maxSockets: 64 });
    let stopped = false;
    const workers = Array.from({ length: CLIENTS }, (_, i) => correctClient(h, `c-${i}`, `org-chaos/conn-${i % CONNECTIONS}`, () => stopped, rand, late, httpAgent));
    const grantsNow = async (): Promise<number> => Number((await pool.query<{ n: string }>("SELECT count(*) AS n FROM vpn_grants WHERE connection LIKE 'org-chaos/conn-%'")).rows[0]?.n);
    /** Acknowledged renewals since monotonic time `since`. */
    const renewalsSince = (since: number): number => h.entries.filter((e) => e.f === "renew" && e.type === "ok" && e.mono >= since).length;
    /** Statuses of the late writes answered so far (409: the sink refused a stale token). */
    const lateAnswered: number[] = [];
    const trackLate = (from: number): void => {
      for (const p of late.slice(from)) void p.then((status) => lateAnswered.push(status));
    };
    let tracked = 0;
    /** As the control plane's supervisor would: start it again when it exited (a PostgreSQL restart ends it today). */
    const supervise = async (): Promise<void> => {
      if (cp.child.exitCode === null && cp.child.signalCode === null) return;
      console.log("vpn chaos: the control plane exited on the PostgreSQL restart; restarting it");
      cp = await spawn();
    };
    /** Phases end on activity, not on time: each waits until the clients have done what the phase is for. */
    const phases: string[] = [];
    const until = async (label: string, cond: () => Promise<boolean> | boolean, timeoutMs: number): Promise<void> => {
      const t = performance.now();
      await eventually(async () => {
        await supervise();
        trackLate(tracked);
        tracked = late.length;
        return (await cond()) || undefined;
      }, timeoutMs, 250).catch((err: unknown) => {
        throw new Error(`${label}: ${String(err)}; acquire outcomes ${JSON.stringify([...outcomes])}\n${cp.output().slice(-6000)}`);
      });
      phases.push(`${label} ${((performance.now() - t) / 1000).toFixed(1)} s`);
    };
    try {
      // Every connection held and renewed for a while before the first fault.
      const t0 = performance.now();
      await until("contention", async () => (await grantsNow()) >= CONNECTIONS && renewalsSince(t0) >= 3 * CONNECTIONS, 120_000);
      // SIGKILL the control plane mid-run and start it again on the same database.
      const beforeKill = await grantsNow();
      cp.child.kill("SIGKILL");
      await cp.exited;
      await sleep(1000);
      cp = await spawn();
      const restarted = performance.now();
      await until("grants after the SIGKILL", async () => (await grantsNow()) > beforeKill && renewalsSince(restarted) >= CONNECTIONS, 90_000);
      // Restart PostgreSQL under the running control plane.
      const beforeRestart = await grantsNow();
      await pool.end();
      await db.stop();
      await sleep(500);
      db = await startEmbeddedPostgres({ dataDir: join(pgDir, "postgres"), port: db.port, fsync: false });
      pool = createPool(db.url, { max: 4 });
      const pgBack = performance.now();
      await until("grants after the PostgreSQL restart", async () => (await grantsNow()) > beforeRestart && renewalsSince(pgBack) >= CONNECTIONS, 90_000);
      // Enough activity for the floors below, and a stale write answered by the sink.
      await until("activity floors", async () => {
        const stats = checkLeaseHistory(h, [], new Map()).stats;
        return stats.grants >= 20 && stats.renewals >= 10 && lateAnswered.includes(409);
      }, 120_000);
    } finally {
      stopped = true;
      await Promise.all(workers);
    }
    const lateStatuses = await Promise.all(late);
    const result = checkLeaseHistory(h, (await grants()).filter((g) => g.connection.startsWith("org-chaos/conn-")), sink.accepted, sink.refused);
    console.log(`vpn chaos: ${JSON.stringify(result.stats)}, late writes ${lateStatuses.length} (refused ${lateStatuses.filter((x) => x === 409).length}); phases: ${phases.join(", ")}`);
    assert.deepEqual(result.violations, []);
    assert.equal(result.overlaps, 0);
    // Activity floors low enough for a loaded machine: the run must have exercised grants, renewals and takeovers.
    assert.ok(result.stats.grants >= 20, `only ${result.stats.grants} grants`);
    assert.ok(result.stats.renewals >= 10, `only ${result.stats.renewals} renewals`);
    assert.ok(lateStatuses.filter((x) => x === 409).length > 0, "no stale write was refused by the fenced sink");
    const byConn = new Map<string, number[]>();
    for (const g of await grants()) byConn.set(g.connection, [...(byConn.get(g.connection) ?? []), g.token]);
    for (const [conn, tokens] of byConn) for (let i = 1; i < tokens.length; i++) assert.ok(tokens[i]! > tokens[i - 1]!, `${conn}: tokens ${tokens.join(",")}`);
    httpAgent.destroy();
  });

  it("negative control: a client trusting its own clock (150 ms late, no margin) is caught overlapping", async () => {
    const h = new History();
    const conn = "org-chaos/negative";
    const httpAgent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    let stopped = false;
    let s = 7;
    const rand = (): number => {
      s = (s * 1103515245 + 12345) % 2 ** 31;
      return s / 2 ** 31;
    };
    const late: Array<Promise<number>> = [];
    const broken = (async () => {
      const lc = new VpnLeaseClient(clients.get(`c-${CLIENTS}`)!, { timeoutMs: 2000 });
      while (!stopped) {
        const id = h.invoke("broken", "acquire", conn);
        const r = await lc.acquire(conn);
        if (r.kind !== "granted") {
          h.fail(id);
          await sleep(20);
          continue;
        }
        // Broken: the lease runs, by its own clock, from the answer's arrival for the full TTL plus 150 ms; it never renews.
        const deadline = performance.now() + r.lease.ttlMs + 150;
        h.ok(id, { token: r.lease.token, deadline });
        while (!stopped && performance.now() < deadline) {
          await sinkWrite(sink.url, conn, r.lease.token, httpAgent);
          await sleep(20);
        }
      }
    })();
    const others = Array.from({ length: 4 }, (_, i) => correctClient(h, `c-${CLIENTS + 1 + i}`, conn, () => stopped, rand, late, httpAgent));
    // Until the checker catches the broken client (it overlaps as soon as a correct client takes over inside its extra 150 ms).
    try {
      await eventually(async () => checkLeaseHistory(h, (await grants()).filter((g) => g.connection === conn), new Map()).overlaps > 0, 120_000, 500);
    } catch {
      // Judged below with the complete history: the assertion names what was missed.
    }
    stopped = true;
    await Promise.all([broken, ...others]);
    await Promise.all(late);
    const result = checkLeaseHistory(h, (await grants()).filter((g) => g.connection === conn), new Map([[conn, sink.accepted.get(conn) ?? []]]));
    console.log(`vpn negative control: overlaps ${result.overlaps}, max ${result.stats.maxOverlapMs.toFixed(0)} ms, ${JSON.stringify(result.stats)}`);
    assert.ok(result.overlaps > 0, "the checker did not catch the broken client");
    httpAgent.destroy();
  });
});
