/**
 * A simulated fleet against one in-process control plane (embedded
 * PostgreSQL, API server, controllers, agent API on loopback):
 *
 *   A. one change → the affected agent holds the verified new snapshot,
 *      while every agent of the fleet holds a long poll;
 *   B. heartbeats from every agent every 10 s: client-side latency, and the
 *      CPU of the control plane (this process) and of its PostgreSQL.
 *
 * What is real: each agent's mTLS identity (its own P-256 key and a
 * certificate issued by the cluster CA through NodeCertificateIssuer, the
 * code the enrollment API uses), the agent API's authentication of every
 * request, the snapshot builder, the long-poll feed, the heartbeat batcher,
 * the heartbeat monitor, the agent transport and the snapshot verification.
 * What is simulated: enrollment (node and identity rows are inserted with
 * SQL instead of 10,000 join round trips; there are no FabricNode objects,
 * so the heartbeat monitor scans but has no status to write), and the
 * agents themselves (a few child processes, fleet-agent-child.ts; no
 * checkpoint fsync). Prints figures only.
 *
 * Heartbeats (B) use a minimal mTLS client per agent by default (see
 * fleet-agent-child.ts) so the load generator takes as little of the shared
 * cores as possible; options:
 *   --client=agent   send heartbeats with the agent's SyncTransport instead;
 *   --children=N     agent processes (default 4 with A, 2 for heartbeats only);
 *   --profile        write a V8 CPU profile of the control plane process
 *                    over the measured window (its path is printed);
 *   --pin            pin the control plane and its PostgreSQL to CPU 0 and
 *                    the agent processes to CPU 1 (taskset), so each side
 *                    has one core of its own.
 *
 *   npx tsx test/bench/agent-fleet.bench.ts [agents] [changes] [heartbeat-seconds] [heartbeats-only] [--client=raw|agent] [--children=N] [--pin]
 */
import { execFileSync, fork, type ChildProcess } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { runControlPlane } from "../../controlplane/controlplane.js";
import { markNodesDirty } from "../../lib/snapshot/contributors.js";
import { logger } from "../../lib/log.js";
import { repoRoot, tempStateDir } from "../support/controlplane.js";
import { applyCluster } from "../support/enrollment.js";
import type { FleetIdentity, ParentMessage } from "./fleet-agent-child.js";
import { CLK_TCK, commOf, cpuSeconds, descendants, ownCpuSeconds, percentile } from "./proc-stats.js";

const args = process.argv.slice(2).filter((a) => !a.startsWith("--"));
const flag = (name: string): string | undefined => process.argv.find((a) => a === `--${name}` || a.startsWith(`--${name}=`))?.replace(/^[^=]*=?/, "");
const N = Number(args[0] ?? 10_000);
const CHANGES = Number(args[1] ?? 200);
const HB_SECONDS = Number(args[2] ?? 60);
const SKIP_A = args[3] === "heartbeats-only";
const CLIENT = flag("client") === "agent" ? "agent" : "raw";
const CHILDREN = Number(flag("children") || (SKIP_A ? 2 : 4));
const PIN = flag("pin") !== undefined;
const PROFILE = flag("profile") !== undefined;
function statAfterName(pid: number): string[] {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    return text.slice(text.lastIndexOf(")") + 2).split(" ");
  } catch {
    return [];
  }
}
const parentOf = (pid: number): number => Number(statAfterName(pid)[1] ?? 0);
/** CPU seconds of a process's children that exited and were waited for (cutime + cstime). */
const reapedCpuSeconds = (pid: number): number => {
  const f = statAfterName(pid);
  return f.length === 0 ? 0 : (Number(f[13]) + Number(f[14])) / CLK_TCK;
};
/** --profile: a V8 CPU profile of this process over the measured window, written to a temp file. */
async function startProfile(): Promise<() => Promise<string>> {
  const { Session } = await import("node:inspector");
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object) =>
    new Promise<unknown>((resolve, reject) => session.post(method, params ?? {}, (err, r) => (err ? reject(err) : resolve(r))));
  await post("Profiler.enable");
  await post("Profiler.setSamplingInterval", { interval: 1000 });
  await post("Profiler.start");
  return async () => {
    const { profile } = (await post("Profiler.stop")) as { profile: unknown };
    const file = join(tmpdir(), `agent-fleet-${process.pid}.cpuprofile`);
    writeFileSync(file, JSON.stringify(profile));
    session.disconnect();
    return file;
  };
}
/** Pins a process and all its threads to a CPU list. */
const pin = (pid: number, cpus: string): void => {
  try {
    execFileSync("taskset", ["-a", "-p", "-c", cpus, String(pid)], { stdio: "ignore" });
  } catch (err) {
    console.warn(`taskset ${pid} failed: ${(err as Error).message}`);
  }
};
const CLUSTER = "fleet";
process.env.FABRIC_LOG_LEVEL ??= "warn";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const stateDir = tempStateDir("fabric-bench-");
const cp = await runControlPlane({
  stateDir, host: "127.0.0.1", port: 0, metricsPort: 0, fsync: false, log: logger("bench"),
  // No orphan sweep: the rows are inserted without FabricNode objects.
  controllers: { identity: "bench", sweepIntervalMs: 3_600_000 }, agentPort: 0,
});
const children: ChildProcess[] = [];
try {
  const agentApi = cp.agentApi;
  const ctl = cp.controllers;
  if (agentApi === undefined || ctl === undefined) throw new Error("agent api or controllers missing");
  await applyCluster(cp.api.kubeconfigPath, CLUSTER);
  const pool = cp.db.pool;

  // Identities through the issuance code the enrollment API uses.
  let t = performance.now();
  const a = await ctl.issuer.authority(CLUSTER);
  const ids: FleetIdentity[] = [];
  const rows = { name: [] as string[], node: [] as string[], fp: [] as string[], serial: [] as string[], keyFp: [] as string[], nb: [] as Date[], na: [] as Date[] };
  for (let i = 0; i < N; i++) {
    const nodeName = `a-${i}`;
    const node = `${CLUSTER}.${nodeName}`;
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const issued = await ctl.issuer.issue(CLUSTER, node, publicKey.export({ type: "spki", format: "der" }));
    ids.push({ node, serial: issued.serial, keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(), certPem: issued.certificatePem });
    rows.name.push(node);
    rows.node.push(nodeName);
    rows.fp.push(`sha256:${i.toString(16).padStart(64, "0")}`);
    rows.serial.push(issued.serial);
    rows.keyFp.push(issued.publicKeyFingerprint);
    rows.nb.push(issued.notBefore);
    rows.na.push(issued.notAfter);
  }
  await pool.query("INSERT INTO nodes (name, cluster, node_name, host_fingerprint) SELECT n, $1, nn, fp FROM unnest($2::text[], $3::text[], $4::text[]) AS m(n, nn, fp)", [CLUSTER, rows.name, rows.node, rows.fp]);
  await pool.query(
    `INSERT INTO node_identities (serial, node, cluster, public_key_fingerprint, not_before, not_after, status)
     SELECT s, n, $1, k, nb, na, 'active' FROM unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[]) AS m(s, n, k, nb, na)`,
    [CLUSTER, rows.serial, rows.name, rows.keyFp, rows.nb, rows.na],
  );
  console.log(`identities: ${N} keys + certificates issued and stored in ${((performance.now() - t) / 1000).toFixed(1)} s`);

  t = performance.now();
  await pool.query("INSERT INTO snapshot_dirty (cluster, node) VALUES ($1, '*') ON CONFLICT (cluster, node) DO UPDATE SET marked_at = now()", [CLUSTER]);
  for (;;) {
    const r = await pool.query<{ n: string }>("SELECT count(*)::text AS n FROM node_snapshots WHERE cluster = $1", [CLUSTER]);
    if (Number(r.rows[0]?.n) >= N) break;
    await sleep(200);
  }
  console.log(`snapshots: ${N} built and signed in ${((performance.now() - t) / 1000).toFixed(1)} s`);

  // Agents: a few child processes.
  const loader = `file://${join(repoRoot, "node_modules", "tsx", "dist", "loader.mjs")}`;
  const verified = new Map<string, { serial: number; at: bigint }>();
  let initial = 0;
  let errors = 0;
  let lastError = "";
  const waiters = new Map<string, (v: { serial: number; at: bigint }) => void>();
  const hbResults: Array<{ latencies: number[]; failed: number; failedTotal: number; reconnects: number; lastError: string }> = [];
  const snapshotKey = { keyId: a.snapshotKeyId, publicKey: a.snapshotPublicKey };
  for (let c = 0; c < CHILDREN; c++) {
    const child = fork(join(repoRoot, "test", "bench", "fleet-agent-child.ts"), [], { execArgv: ["--import", loader], stdio: ["ignore", "inherit", "inherit", "ipc"] });
    children.push(child);
    if (PIN && child.pid !== undefined) pin(child.pid, "1");
    child.on("message", (m: { type: string; node?: string; serial?: number; at?: string; error?: string; latencies?: number[]; failed?: number; failedTotal?: number; reconnects?: number; lastError?: string }) => {
      if (m.type === "verified" && m.node !== undefined && m.serial !== undefined && m.at !== undefined) {
        const v = { serial: m.serial, at: BigInt(m.at) };
        if (!verified.has(m.node)) initial++;
        verified.set(m.node, v);
        waiters.get(m.node)?.(v);
      } else if (m.type === "error") {
        errors++;
        lastError = m.error ?? "";
      } else if (m.type === "heartbeats") hbResults.push({ latencies: m.latencies ?? [], failed: m.failed ?? 0, failedTotal: m.failedTotal ?? 0, reconnects: m.reconnects ?? 0, lastError: m.lastError ?? "" });
    });
    const share = ids.filter((_, i) => i % CHILDREN === c);
    const ready = new Promise((r) => child.once("message", r));
    child.send({ type: "setup", server: agentApi.url, cluster: CLUSTER, serverCaPem: agentApi.caPem, caPem: a.caCertPem, snapshotKey, identities: share } satisfies ParentMessage);
    await ready;
  }

  // A. Every agent long-polls; one change at a time.
  t = performance.now();
  if (!SKIP_A) {
  for (const child of children) child.send({ type: "poll" } satisfies ParentMessage);
  while (initial < N || agentApi.pendingPolls() < N * 0.99) {
    await sleep(250);
    if (performance.now() - t > 300_000) throw new Error(`only ${initial} agents verified a first snapshot, ${agentApi.pendingPolls()} polls held; errors ${errors}: ${lastError}`);
  }
  console.log(`fleet up: ${N} agents hold a verified snapshot and a long poll (${agentApi.pendingPolls()} held) after ${((performance.now() - t) / 1000).toFixed(1)} s; ${errors} transient errors`);
  await sleep(2000);
  const lat: number[] = [];
  for (let k = 0; k < CHANGES; k++) {
    const i = Math.floor(Math.random() * N);
    const node = `${CLUSTER}.a-${i}`;
    const before = verified.get(node)?.serial ?? 0;
    const got = new Promise<{ serial: number; at: bigint }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no new snapshot for ${node} in 30 s`)), 30_000);
      waiters.set(node, (v) => {
        if (v.serial <= before) return;
        clearTimeout(timer);
        waiters.delete(node);
        resolve(v);
      });
    });
    const t0 = process.hrtime.bigint();
    const c = await pool.connect();
    try {
      await c.query("BEGIN");
      await c.query("UPDATE nodes SET node_group = $2, updated_at = now() WHERE name = $1", [node, `g-${k}`]);
      await markNodesDirty(c, CLUSTER, [node]);
      await c.query("COMMIT");
    } finally {
      c.release();
    }
    const v = await got;
    lat.push(Number(v.at - t0) / 1e6);
    await sleep(20);
  }
  lat.sort((x, y) => x - y);
  console.log(`A. change → verified new snapshot on the affected agent, ${N} long polls held, ${CHANGES} changes one at a time:`);
  console.log(`   p50 ${percentile(lat, 50).toFixed(1)} ms, p90 ${percentile(lat, 90).toFixed(1)} ms, p99 ${percentile(lat, 99).toFixed(1)} ms, max ${(lat[lat.length - 1] ?? 0).toFixed(1)} ms`);

  for (const child of children) child.send({ type: "stop-poll" } satisfies ParentMessage);
  await sleep(3000);
  }

  // B. Heartbeats every 10 s from every agent.
  // Opening 10,000 mTLS connections takes ~100 s on this machine: ramp them, then measure the steady state.
  const rampMs = Math.min(90_000, N * 9);
  const warmupMs = rampMs + 15_000;
  const measureMs = HB_SECONDS * 1000;
  const agentPids = new Set(children.map((c) => c.pid ?? 0));
  const planeTree = (): number[] => {
    const agentSide = new Set([...agentPids].flatMap((ap) => [ap, ...descendants(ap)]));
    return [process.pid, ...descendants(process.pid).filter((p) => !agentSide.has(p))];
  };
  if (PIN) for (const p of planeTree()) pin(p, "0");
  for (const child of children) child.send({ type: "heartbeat", intervalMs: 10_000, rampMs, warmupMs, measureMs, client: CLIENT } satisfies ParentMessage);
  await sleep(warmupMs);
  const pgNow = (): number[] => planeTree().filter((p) => commOf(p).startsWith("postgres"));
  const pg = pgNow();
  if (PIN) for (const p of pg) pin(p, "0");
  const loadPids = [...agentPids].filter((p) => p !== 0);
  // PostgreSQL backends come and go (pool connections idle out): count the live ones plus what the postmaster reaped.
  const pgCpu = (): number => {
    const live = pgNow();
    const reaped = live.filter((p) => !live.includes(parentOf(p))).reduce((s, p) => s + reapedCpuSeconds(p), 0);
    return live.reduce((s, p) => s + ownCpuSeconds(p), 0) + reaped;
  };
  const cpu = () => ({ self: cpuSeconds(process.pid), pg: pgCpu(), load: loadPids.reduce((s, p) => s + cpuSeconds(p), 0) });
  const profiling = PROFILE ? await startProfile() : undefined;
  const load0 = readFileSync("/proc/loadavg", "utf8").trim();
  const st0 = agentApi.stats();
  const c0 = cpu();
  const w0 = performance.now();
  const hb0 = await pool.query<{ n: string }>("SELECT count(*)::text AS n FROM node_heartbeats");
  await sleep(measureMs);
  const c1 = cpu();
  if (profiling !== undefined) console.log(`   CPU profile of the control plane process over the window: ${await profiling()}`);
  const wall = (performance.now() - w0) / 1000;
  while (hbResults.length < CHILDREN) await sleep(200);
  const all = hbResults.flatMap((r) => r.latencies).sort((x, y) => x - y);
  const failed = hbResults.reduce((s, r) => s + r.failed, 0);
  const failedTotal = hbResults.reduce((s, r) => s + r.failedTotal, 0);
  const reconnects = hbResults.reduce((s, r) => s + r.reconnects, 0);
  const lastHbError = hbResults.map((r) => r.lastError).find((e) => e !== "") ?? "";
  const hb1 = await pool.query<{ n: string }>("SELECT count(*)::text AS n FROM node_heartbeats");
  console.log(`B. heartbeats from ${N} agents every 10 s (±10%), measured over ${wall.toFixed(0)} s after a ${warmupMs / 1000} s warm-up (connections ramped over ${rampMs / 1000} s); client ${CLIENT}, ${CHILDREN} agent processes${PIN ? ", control plane + PostgreSQL pinned to CPU 0, agents to CPU 1" : ""}:`);
  console.log(`   ${all.length} heartbeats (${(all.length / wall).toFixed(0)}/s), ${failed} failed while measuring (${failedTotal} in the whole run, last: ${lastHbError || "none"}), ${reconnects} reconnections; latency p50 ${percentile(all, 50).toFixed(1)} ms, p90 ${percentile(all, 90).toFixed(1)} ms, p99 ${percentile(all, 99).toFixed(1)} ms, max ${(all[all.length - 1] ?? 0).toFixed(1)} ms`);
  console.log(`   control plane process: ${(c1.self - c0.self).toFixed(1)} CPU-s = ${((c1.self - c0.self) / wall).toFixed(2)} cores; its PostgreSQL (${pg.length} processes): ${((c1.pg - c0.pg) / wall).toFixed(2)} cores; load generator (${loadPids.length} processes): ${((c1.load - c0.load) / wall).toFixed(2)} cores`);
  const st1 = agentApi.stats();
  console.log(`   while measuring: heartbeat rows written ${st1.heartbeatsWritten - st0.heartbeatsWritten} in ${st1.heartbeatBatches - st0.heartbeatBatches} statements; auth lookups from memory ${st1.authCacheHits - st0.authCacheHits}, from PostgreSQL ${st1.authCacheMisses - st0.authCacheMisses}`);
  console.log(`   /proc/loadavg at the start of the window: ${load0}; at its end: ${readFileSync("/proc/loadavg", "utf8").trim()}`);
  console.log(`   node_heartbeats rows: ${hb0.rows[0]?.n} → ${hb1.rows[0]?.n}`);
} finally {
  for (const c of children) c.kill("SIGKILL");
  await cp.stop();
  rmSync(stateDir, { recursive: true, force: true });
}
