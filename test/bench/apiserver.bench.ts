/**
 * API server benchmark: prints figures, asserts nothing.
 *
 *   npx tsx test/bench/apiserver.bench.ts      (or `make bench`)
 *
 * Every control plane here is the real bin/fabric-controlplane spawned as a
 * child process with the product defaults (fsync on, controllers on), so the
 * client below and the server run on separate event loops. Measures:
 *
 *  1. start-up: spawn → "control plane ready" line and spawn → first 200 from
 *     GET /readyz, cold (fresh state dir: initdb) and warm (second start on
 *     the same dir), median of RUNS runs;
 *  2. create throughput through client-node's CustomObjectsApi for OBJECTS
 *     NodeGroups at each concurrency in CONCURRENCIES, on a fresh control
 *     plane each;
 *  3. under that load: get latency (a sequential getClusterCustomObject
 *     loop), list latency (a sequential listClusterCustomObject loop,
 *     limit=500) and watch delivery (a client-node Watch on nodegroups: from
 *     the create call's start, and from its acknowledgement, to the ADDED
 *     event), plus the RSS of the control plane's Node.js process and of its
 *     embedded PostgreSQL processes at the end.
 *
 * Environment knobs: BENCH_OBJECTS (5000), BENCH_CONCURRENCY ("32,64"),
 * BENCH_START_RUNS (3), BENCH_GET_EVERY_MS (10) and BENCH_LIST_EVERY_MS (100):
 * the get and list probes start one request per period (never two at once),
 * so they measure latency under the create load without becoming a second
 * load of their own; 0 runs them back to back.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, chmodSync } from "node:fs";
import https from "node:https";
import { createServer } from "node:net";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as k8s from "@kubernetes/client-node";
import { loadKubeConfig } from "../../lib/kube/kubeconfig.js";
import { CLK_TCK } from "./proc-stats.js";

const repoRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const group = "accessfabric.io";
const version = "v1alpha1";
const plural = "nodegroups";

const OBJECTS = intFromEnv("BENCH_OBJECTS", 5000);
const CONCURRENCIES = (process.env.BENCH_CONCURRENCY ?? "32,64").split(",").map((s) => Number.parseInt(s, 10));
const RUNS = intFromEnv("BENCH_START_RUNS", 3);
const GET_EVERY_MS = msFromEnv("BENCH_GET_EVERY_MS", 10);
const LIST_EVERY_MS = msFromEnv("BENCH_LIST_EVERY_MS", 100);

function msFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const v = Number.parseInt(raw, 10);
  if (!Number.isInteger(v) || v < 0) throw new Error(`invalid ${name}: ${raw}`);
  return v;
}

/** Waits until `period` ms after `since` (no wait when already past or period is 0). */
async function pace(since: number, period: number): Promise<void> {
  const wait = since + period - performance.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
}

function intFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const v = Number.parseInt(raw, 10);
  if (!Number.isInteger(v) || v <= 0) throw new Error(`invalid ${name}: ${raw}`);
  return v;
}

// ---------------------------------------------------------------- statistics

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i] ?? Number.NaN;
}

interface Summary {
  n: number;
  p50: number;
  p99: number;
  max: number;
}

function summarize(samples: readonly number[]): Summary {
  const s = [...samples].sort((a, b) => a - b);
  return { n: s.length, p50: quantile(s, 0.5), p99: quantile(s, 0.99), max: s.at(-1) ?? Number.NaN };
}

function median(samples: readonly number[]): number {
  return quantile([...samples].sort((a, b) => a - b), 0.5);
}

const ms = (v: number) => (Number.isFinite(v) ? `${v.toFixed(1)} ms` : "n/a");
const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MiB`;
const fmt = (s: Summary) => `p50 ${ms(s.p50)}  p99 ${ms(s.p99)}  max ${ms(s.max)}  (n=${s.n})`;

// ------------------------------------------------------------- control plane

function tempStateDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "fabric-bench-"));
  chmodSync(dir, 0o755); // the embedded postgres user must reach its data dir
  return dir;
}

/** A free TCP port: /readyz is polled from the moment of spawn, before the ready line could name an ephemeral one. */
function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr !== null ? addr.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}

/** One GET /readyz; resolves with the status code (0 when the connection fails). */
function readyz(port: number): Promise<number> {
  return new Promise((resolveStatus) => {
    const req = https.get({ host: "127.0.0.1", port, path: "/readyz", rejectUnauthorized: false, timeout: 2_000 }, (res) => {
      res.resume();
      res.on("end", () => resolveStatus(res.statusCode ?? 0));
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolveStatus(0));
  });
}

interface Started {
  child: ChildProcess;
  stateDir: string;
  kubeconfig: string;
  /** spawn → the "control plane ready" log line. */
  readyLineMs: number;
  /** spawn → first 200 from GET /readyz. */
  readyzMs: number;
  /** startupMs as the process itself reports it on the ready line. */
  reportedStartupMs: number;
  exited: Promise<number | null>;
  output: () => string;
}

/** Spawns bin/fabric-controlplane with the product defaults (fsync on) and times it to ready. */
async function startControlPlane(stateDir: string): Promise<Started> {
  const port = await freePort();
  const t0 = performance.now();
  const child = spawn(join(repoRoot, "bin", "fabric-controlplane"), ["--state-dir", stateDir, "--port", String(port), "--metrics-port", "0"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  let dead = false;
  void exited.then(() => (dead = true));

  const readyLine = new Promise<{ atMs: number; startupMs: number }>((resolveLine, reject) => {
    let buffered = "";
    child.stdout?.on("data", (b: Buffer) => {
      out += b.toString();
      buffered += b.toString();
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (!line.includes('"control plane ready"')) continue;
        const parsed: unknown = JSON.parse(line);
        const startupMs = typeof parsed === "object" && parsed !== null && typeof (parsed as { startupMs?: unknown }).startupMs === "number" ? (parsed as { startupMs: number }).startupMs : Number.NaN;
        resolveLine({ atMs: performance.now() - t0, startupMs });
      }
    });
    child.stderr?.on("data", (b: Buffer) => (out += b.toString()));
    void exited.then((code) => reject(new Error(`control plane exited with ${String(code)} before ready:\n${out}`)));
  });
  const readyzOk = (async () => {
    for (;;) {
      if (dead) throw new Error(`control plane exited before /readyz answered:\n${out}`);
      if ((await readyz(port)) === 200) return performance.now() - t0;
      if (performance.now() - t0 > 180_000) throw new Error(`/readyz not 200 within 180 s:\n${out}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  const [line, readyzMs] = await Promise.all([readyLine, readyzOk]);
  return { child, stateDir, kubeconfig: join(stateDir, "kubeconfig"), readyLineMs: line.atMs, readyzMs, reportedStartupMs: line.startupMs, exited, output: () => out };
}

async function stopControlPlane(s: Started): Promise<void> {
  // A SIGTERM that lands while leader election is still acquiring its lease
  // (right after the ready line) can leave the process running forever, so
  // let the controllers start leading first (bounded, in case they never do).
  const settleDeadline = performance.now() + 15_000;
  while (!s.output().includes('"started leading"') && performance.now() < settleDeadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  s.child.kill("SIGTERM");
  const timer = setTimeout(() => {
    console.error(`control plane did not stop within 60 s of SIGTERM; killing it. Its last output:\n${s.output().slice(-3000)}`);
    s.child.kill("SIGKILL");
  }, 60_000);
  await s.exited;
  clearTimeout(timer);
}

// --------------------------------------------------------------- memory

function statusField(pid: number, field: string): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m?.[1] === undefined ? undefined : Number(m[1]) * 1024;
  } catch {
    return undefined; // the process went away between listing and reading
  }
}

/** Descendants of `root` (by /proc/<pid>/stat's ppid). */
function descendants(root: number): number[] {
  const parent = new Map<number, number>();
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      parent.set(Number(e), Number(fields[1]));
    } catch {
      // exited meanwhile
    }
  }
  const out: number[] = [];
  const frontier = [root];
  while (frontier.length > 0) {
    const p = frontier.pop();
    for (const [child, pp] of parent) {
      if (pp === p) {
        out.push(child);
        frontier.push(child);
      }
    }
  }
  return out;
}

function memoryOf(pid: number): { nodeRss: number; nodeHwm: number; postgresRss: number; postgresProcs: number } {
  const kids = descendants(pid);
  return {
    nodeRss: statusField(pid, "VmRSS") ?? Number.NaN,
    nodeHwm: statusField(pid, "VmHWM") ?? Number.NaN,
    postgresRss: kids.reduce((sum, k) => sum + (statusField(k, "VmRSS") ?? 0), 0),
    postgresProcs: kids.length,
  };
}

/** CPU seconds (user + system) of the control plane's Node.js process, of its PostgreSQL processes, and of this process. */
function cpuOf(pid: number): { node: number; postgres: number; client: number } {
  const ticks = (p: number): number => {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return Number(f[11]) + Number(f[12]);
    } catch {
      return 0;
    }
  };
  const hz = CLK_TCK;
  const u = process.cpuUsage();
  return {
    node: ticks(pid) / hz,
    postgres: descendants(pid).reduce((sum, k) => sum + ticks(k), 0) / hz,
    client: (u.user + u.system) / 1e6,
  };
}

// ------------------------------------------------------------------ phases

async function benchStartup(): Promise<void> {
  const cold: Started[] = [];
  const warm: Started[] = [];
  for (let run = 0; run < RUNS; run++) {
    const dir = tempStateDir();
    try {
      const c = await startControlPlane(dir);
      cold.push(c);
      await stopControlPlane(c);
      const w = await startControlPlane(dir);
      warm.push(w);
      await stopControlPlane(w);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    console.log(
      `  run ${run + 1}: cold ready line ${ms(cold[run]?.readyLineMs ?? Number.NaN)}, /readyz ${ms(cold[run]?.readyzMs ?? Number.NaN)};` +
        ` warm ready line ${ms(warm[run]?.readyLineMs ?? Number.NaN)}, /readyz ${ms(warm[run]?.readyzMs ?? Number.NaN)}`,
    );
  }
  const row = (label: string, xs: Started[]) =>
    console.log(
      `  ${label}  spawn→ready line ${ms(median(xs.map((x) => x.readyLineMs)))}  spawn→/readyz 200 ${ms(median(xs.map((x) => x.readyzMs)))}  (self-reported startupMs ${ms(median(xs.map((x) => x.reportedStartupMs)))})`,
    );
  console.log(`start-up, median of ${RUNS}:`);
  row("cold (initdb)", cold);
  row("warm         ", warm);
}

interface NodeGroupBody {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec: { cluster: string };
}

function nodeGroup(name: string): NodeGroupBody {
  return { apiVersion: `${group}/${version}`, kind: "NodeGroup", metadata: { name }, spec: { cluster: "bench" } };
}

function nameOf(obj: unknown): string | undefined {
  if (typeof obj !== "object" || obj === null) return undefined;
  const meta = (obj as { metadata?: unknown }).metadata;
  if (typeof meta !== "object" || meta === null) return undefined;
  const name = (meta as { name?: unknown }).name;
  return typeof name === "string" ? name : undefined;
}

async function benchLoad(concurrency: number): Promise<void> {
  const dir = tempStateDir();
  const cp = await startControlPlane(dir);
  try {
    const kc = loadKubeConfig(cp.kubeconfig);
    const api = kc.makeApiClient(k8s.CustomObjectsApi);
    const pid = cp.child.pid;
    if (pid === undefined) throw new Error("control plane has no pid");

    // Idle baselines on an almost empty store.
    await api.createClusterCustomObject({ group, version, plural, body: nodeGroup("idle-probe") });
    const idleGet: number[] = [];
    for (let i = 0; i < 200; i++) {
      const s = performance.now();
      await api.getClusterCustomObject({ group, version, plural, name: "idle-probe" });
      idleGet.push(performance.now() - s);
    }
    const idleList: number[] = [];
    for (let i = 0; i < 50; i++) {
      const s = performance.now();
      await api.listClusterCustomObject({ group, version, plural, limit: 500 });
      idleList.push(performance.now() - s);
    }
    const memBefore = memoryOf(pid);

    const names = Array.from({ length: OBJECTS }, (_, i) => `bench-${String(i).padStart(5, "0")}`);
    const createStart = new Map<string, number>();
    const createAck = new Map<string, number>();
    const addedAt = new Map<string, number>();
    let watchErrors = 0;
    let allAdded: () => void = () => undefined;
    const allAddedP = new Promise<void>((r) => (allAdded = r));

    const watch = new k8s.Watch(kc);
    const watchReq = await watch.watch(
      `/apis/${group}/${version}/${plural}`,
      {},
      (type: string, obj: unknown) => {
        if (type !== "ADDED") return;
        const name = nameOf(obj);
        if (name === undefined || !name.startsWith("bench-") || addedAt.has(name)) return;
        addedAt.set(name, performance.now());
        if (addedAt.size === OBJECTS) allAdded();
      },
      (err: unknown) => {
        if (err) watchErrors++;
      },
    );
    await new Promise((r) => setTimeout(r, 500)); // let the watch reach the server before the first create

    let loading = true;
    const created: string[] = [];
    const getLat: number[] = [];
    const listLat: number[] = [];
    let getErrors = 0;
    let listErrors = 0;
    const getLoop = (async () => {
      let i = 0;
      while (loading) {
        const name = created.length > 0 ? created[(i++ * 7919) % created.length] : "idle-probe";
        const s = performance.now();
        try {
          await api.getClusterCustomObject({ group, version, plural, name: name ?? "idle-probe" });
          getLat.push(performance.now() - s);
        } catch {
          getErrors++;
        }
        await pace(s, GET_EVERY_MS);
      }
    })();
    const listLoop = (async () => {
      while (loading) {
        const s = performance.now();
        try {
          await api.listClusterCustomObject({ group, version, plural, limit: 500 });
          listLat.push(performance.now() - s);
        } catch {
          listErrors++;
        }
        await pace(s, LIST_EVERY_MS);
      }
    })();

    let next = 0;
    let createErrors = 0;
    const createLat: number[] = [];
    const cpuBefore = cpuOf(pid);
    const t0 = performance.now();
    const worker = async () => {
      for (;;) {
        const i = next++;
        if (i >= names.length) return;
        const name = names[i] ?? "";
        const s = performance.now();
        createStart.set(name, s);
        try {
          await api.createClusterCustomObject({ group, version, plural, body: nodeGroup(name) });
          const e = performance.now();
          createAck.set(name, e);
          createLat.push(e - s);
          created.push(name);
        } catch {
          createErrors++;
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    const elapsed = performance.now() - t0;
    const cpuAfter = cpuOf(pid);
    loading = false;
    await Promise.all([getLoop, listLoop]);
    let drainTimer: NodeJS.Timeout | undefined;
    await Promise.race([allAddedP, new Promise((r) => (drainTimer = setTimeout(r, 30_000)))]);
    clearTimeout(drainTimer);
    watchReq.abort();
    const memAfter = memoryOf(pid);

    const fromStart: number[] = [];
    const fromAck: number[] = [];
    for (const [name, at] of addedAt) {
      const s = createStart.get(name);
      const a = createAck.get(name);
      if (s !== undefined) fromStart.push(at - s);
      if (a !== undefined) fromAck.push(at - a);
    }
    const beforeAck = fromAck.filter((v) => v < 0).length;

    console.log(`\ncreate load: ${OBJECTS} NodeGroups, concurrency ${concurrency}, fresh control plane (fsync on, controllers on)`);
    console.log(`  throughput        ${(created.length / (elapsed / 1000)).toFixed(0)} objects/s  (${created.length} created in ${(elapsed / 1000).toFixed(2)} s, ${createErrors} errors)`);
    console.log(`  create latency    ${fmt(summarize(createLat))}`);
    const perObj = (k: "node" | "postgres" | "client") => `${(((cpuAfter[k] - cpuBefore[k]) / Math.max(1, created.length)) * 1000).toFixed(3)} ms`;
    console.log(
      `  CPU per created object (whole create phase, incl. the get/list/watch loops): control plane ${perObj("node")}, ` +
        `its PostgreSQL ${perObj("postgres")}, benchmark client ${perObj("client")}`,
    );
    console.log(`  get  (idle)       ${fmt(summarize(idleGet))}`);
    console.log(`  get  (under load, one every ${GET_EVERY_MS} ms at most) ${fmt(summarize(getLat))}  errors ${getErrors}`);
    console.log(`  list (idle, 1-2 objects, limit=500)          ${fmt(summarize(idleList))}`);
    console.log(`  list (under load, growing to 500/page, one every ${LIST_EVERY_MS} ms at most) ${fmt(summarize(listLat))}  errors ${listErrors}`);
    console.log(`  watch: create start → ADDED  ${fmt(summarize(fromStart))}`);
    console.log(`  watch: create ack   → ADDED  ${fmt(summarize(fromAck))}  (${beforeAck} events arrived before the create's response)`);
    console.log(`  watch: ${addedAt.size}/${OBJECTS} ADDED events received, ${watchErrors} watch errors`);
    console.log(
      `  memory: node RSS ${mib(memBefore.nodeRss)} before → ${mib(memAfter.nodeRss)} after (peak ${mib(memAfter.nodeHwm)}); ` +
        `embedded postgres ${memAfter.postgresProcs} processes, summed RSS ${mib(memAfter.postgresRss)} (shared buffers counted once per process)`,
    );
  } finally {
    await stopControlPlane(cp);
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  console.log(`# API server benchmark — ${new Date().toISOString()}, ${cpus().length} cores (${cpus()[0]?.model ?? "unknown"}), ${mib(totalmem())} RAM, Node ${process.version}`);
  // Other work on the machine skews every figure; say how busy it was.
  console.log(`load average at start: ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
  await benchStartup();
  for (const c of CONCURRENCIES) await benchLoad(c);
  console.log(`\nload average at end: ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
}

await main();
