/**
 * The agent's own sync loops (agent/sync/runner.ts) against a real control
 * plane (embedded PostgreSQL, API server, controllers, agent API), enrolled
 * through the real join flow, reaching the agent API through a loopback proxy
 * that can cut it off: while the agent API is unreachable both loops retry
 * with growing, fully jittered delays (drawn from an injected seeded source,
 * so each delay is checked exactly against its draw), each retry comes no
 * sooner than the delay planned before it, and both loops resume when the
 * API returns: the snapshot built during the outage arrives, heartbeats
 * land in PostgreSQL again, no failure is counted after the recovery, and
 * the next outage starts over at attempt 1.
 *
 * No wall-clock bounds: only orderings (a retry after its planned delay) and
 * counts, with generous deadlines.
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { performance } from "node:perf_hooks";
import type { StoredIdentity } from "../../agent/enroll/identity-store.js";
import { join } from "../../agent/enroll/join.js";
import { backoffCeiling } from "../../agent/sync/backoff.js";
import { runMembership, type RunMembershipOptions } from "../../agent/sync/runner.js";
import type { MembershipSync } from "../../agent/sync/snapshot-sync.js";
import { eventually, kubectl, tempStateDir } from "../support/controlplane.js";
import { applyCluster, createToken, startEnrollmentPlane, type EnrollmentPlane } from "../support/enrollment.js";
import { seeded } from "../support/random.js";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.js";

type BackoffEvent = Parameters<NonNullable<RunMembershipOptions["onBackoff"]>>[0] & { at: number; draw: number };

const BASE_MS = 50;
const CAP_MS = 800;
const HEARTBEAT_MS = 1000;
/** The heartbeat loop's cap: min(cap, 3 intervals). */
const capOf = (loop: "snapshot" | "heartbeat") => (loop === "heartbeat" ? Math.min(CAP_MS, HEARTBEAT_MS * 3) : CAP_MS);

describe("agent backoff: both sync loops against an unreachable agent API", function () {
  this.timeout(180_000);
  let p: EnrollmentPlane;
  let gate: TcpProxy;
  let id: StoredIdentity;
  const agentDir = tempStateDir("fabric-agent-");
  const node = "bo.b1";

  before(async () => {
    p = await startEnrollmentPlane();
    await applyCluster(p.kubeconfig, "bo", "TokenAutoApprove");
    const token = await createToken(p.kubeconfig, "bo-join", { cluster: "bo", autoApprove: true });
    id = await join({ server: p.server, token, caHash: p.caHash, stateDir: agentDir, nodeName: "b1", cluster: "bo", pollIntervalMs: 200, timeoutMs: 60_000 });
    gate = await startTcpProxy("127.0.0.1", Number(new URL(p.server).port));
  });
  after(async () => {
    await gate?.close();
    await p?.stop();
    rmSync(agentDir, { recursive: true, force: true });
  });

  it("retries with growing, jittered delays while the agent API is unreachable, and resumes when it returns", async () => {
    const pool = p.cp.db.pool;
    const draws: number[] = [];
    const source = seeded(20251122);
    const random = (): number => {
      const u = source();
      draws.push(u);
      return u;
    };
    const events: BackoffEvent[] = [];
    let sync: MembershipSync | undefined;
    const ctl = new AbortController();
    const running = runMembership({
      // The agent reaches the API through the gate.
      identity: { ...id, info: { ...id.info, server: `https://127.0.0.1:${gate.port}` } },
      signal: ctl.signal,
      log: () => undefined,
      heartbeatIntervalMs: HEARTBEAT_MS,
      pollWaitSeconds: 5,
      backoffBaseMs: BASE_MS,
      backoffCapMs: CAP_MS,
      random,
      onSync: (s) => {
        sync = s;
      },
      // Called right after each draw: the n-th event goes with the n-th draw.
      onBackoff: (e) => events.push({ ...e, at: performance.now(), draw: draws[draws.length - 1] ?? NaN }),
    });
    const heartbeatSeq = async (): Promise<number> => Number((await pool.query<{ seq: string }>("SELECT seq FROM node_heartbeats WHERE node = $1", [node])).rows[0]?.seq ?? 0);
    const storedSerial = async (): Promise<number> => Number((await pool.query<{ serial: string }>("SELECT serial FROM node_snapshots WHERE node = $1", [node])).rows[0]?.serial ?? 0);
    const of = (loop: "snapshot" | "heartbeat", from = 0) => events.slice(from).filter((e) => e.loop === loop);

    /** Every event of one outage, per loop: consecutive attempts from 1, exact ceilings and draws, each retry after its planned wait. */
    const checkOutage = (from: number, to: number): void => {
      for (const loop of ["snapshot", "heartbeat"] as const) {
        const es = events.slice(from, to).filter((e) => e.loop === loop);
        assert.deepEqual(
          es.map((e) => e.attempt),
          es.map((_, i) => i + 1),
          `${loop}: attempts count up from 1`,
        );
        for (const [i, e] of es.entries()) {
          const ceiling = backoffCeiling(e.attempt, BASE_MS, capOf(loop));
          assert.equal(e.ceilingMs, ceiling, `${loop} attempt ${e.attempt}: ceiling min(cap, base * 2^n)`);
          assert.equal(e.delayMs, Math.floor(e.draw * ceiling), `${loop} attempt ${e.attempt}: the delay is the draw times the ceiling`);
          assert.ok(e.delayMs >= 0 && e.delayMs < ceiling);
          assert.equal(e.waitMs, loop === "heartbeat" ? Math.max(250, e.delayMs) : e.delayMs);
          const next = es[i + 1];
          // The next failure comes only after the loop slept the planned wait (2 ms for timer rounding).
          if (next !== undefined) assert.ok(next.at - e.at >= e.waitMs - 2, `${loop} attempt ${next.attempt} came ${(next.at - e.at).toFixed(1)} ms after a planned ${e.waitMs} ms`);
        }
      }
    };

    try {
      // Connected: a snapshot held, a heartbeat in PostgreSQL, no failure.
      const serial0 = await eventually(async () => {
        const s = await storedSerial();
        return s > 0 && sync?.held()?.held.serial === s ? s : undefined;
      }, 30_000);
      const seq0 = await eventually(async () => {
        const s = await heartbeatSeq();
        return s > 0 ? s : undefined;
      }, 30_000);
      assert.equal(events.length, 0, "no failure while connected");

      // 1. The agent API becomes unreachable; a change is made meanwhile (a new snapshot serial).
      gate.cut();
      const r = await kubectl(p.kubeconfig, ["patch", "fabricnode", node, "--type", "merge", "-p", '{"spec":{"membership":"Disabled"}}']);
      assert.equal(r.code, 0, r.stderr);
      const serial1 = await eventually(async () => {
        const s = await storedSerial();
        return s > serial0 ? s : undefined;
      }, 30_000);
      // Enough failures of both loops for the snapshot ceiling to reach the cap.
      await eventually(() => of("snapshot").length >= 7 && of("heartbeat").length >= 4, 60_000, 20);
      const outage1 = events.length;
      // Each retry is a new connection (the first failures may be the connections cut by the gate).
      assert.ok(gate.refused() >= outage1 - 2, `${gate.refused()} connections refused for ${outage1} failures`);
      checkOutage(0, outage1);
      const snap = of("snapshot");
      assert.deepEqual(
        snap.slice(0, 7).map((e) => e.ceilingMs),
        [100, 200, 400, 800, 800, 800, 800],
        "the snapshot loop's ceiling doubles per failure up to the cap",
      );
      // Jittered: the delays are spread under their ceilings, not the ceilings themselves.
      const ratios = events.slice(0, outage1).map((e) => e.delayMs / e.ceilingMs);
      assert.ok(Math.min(...ratios) < 0.5 && Math.max(...ratios) > 0.5, `delays over ceilings: ${ratios.map((x) => x.toFixed(2)).join(" ")}`);
      assert.ok(new Set(snap.map((e) => e.delayMs)).size >= 4, "capped retries are not evenly spaced");
      assert.equal(sync?.held()?.held.serial, serial0, "nothing new arrives through a closed gate");

      // 2. The API returns: the snapshot built during the outage arrives and heartbeats land again.
      gate.restore();
      await eventually(() => sync?.held()?.held.serial === serial1, 30_000, 20);
      const seq1 = await eventually(async () => {
        const s = await heartbeatSeq();
        return s > seq0 ? s : undefined;
      }, 30_000, 20);
      const resumed = events.length;
      // Two more heartbeats and a finished long poll later, no failure has been counted since.
      await eventually(async () => (await heartbeatSeq()) > seq1 + 1 || undefined, 30_000, 50);
      const sent = sync?.status.heartbeats.sent ?? 0;
      await eventually(() => (sync?.status.heartbeats.sent ?? 0) >= sent + 1, 30_000, 50);
      assert.equal(events.length, resumed, `no failure after the recovery: ${JSON.stringify(events.slice(resumed))}`);

      // 3. A second outage starts over at attempt 1 in both loops (the success reset the backoff).
      gate.cut();
      await eventually(() => of("snapshot", resumed).length >= 3 && of("heartbeat", resumed).length >= 2, 60_000, 20);
      checkOutage(resumed, events.length);
      assert.deepEqual(
        of("snapshot", resumed)
          .slice(0, 3)
          .map((e) => e.ceilingMs),
        [100, 200, 400],
      );
      gate.restore();
      await eventually(async () => (await heartbeatSeq()) > seq1 + 2 || undefined, 30_000, 20);
    } finally {
      ctl.abort();
      await running;
    }
  });
});
