/**
 * The version store: where artifacts live and how fast they reach agents.
 * Prints figures only; asserts nothing.
 *
 * 1. Storage choice, 100 MiB each way on the same embedded PostgreSQL:
 *    content-addressed file (lib/state/artifacts.ts: streamed, hashed,
 *    fsynced, renamed, indexed) vs a PostgreSQL large object (lo_put in
 *    1 MiB chunks in one transaction, read back with lo_get).
 * 2. Push through the API server (PUT /artifacts/v1/<sha256>, TLS, admin token).
 * 3. Distribution: 100 MiB to 20 enrolled nodes at once over the agent API
 *    (mTLS, each node its own certificate), the downloads run by the agent's
 *    fetch code in a child process; aggregate MiB/s, and the CPU and peak
 *    RSS of this process, which runs the control plane.
 * 4. The same through one update-cache node (agent/update/cache.ts in its
 *    own process, update-cache-child.ts): it mirrors the artifact once from
 *    the control plane, then the 20 downloads go to it (pinned mTLS) with
 *    the control plane as fallback; aggregate MiB/s, control-plane CPU and
 *    the cache process's CPU (from /proc), fallbacks counted.
 *
 * Each line carries the load average, the machine being shared.
 *
 *   npx tsx test/bench/artifacts.bench.ts [MiB] [downloaders]
 */
import { execFile, spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { loadavg } from "node:os";
import { createHash, randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import https from "node:https";
import { join } from "node:path";
import { Readable } from "node:stream";
import { join as joinCluster } from "../../agent/enroll/join.js";
import type { StoredIdentity } from "../../agent/enroll/identity-store.js";
import { ArtifactStore } from "../../lib/state/artifacts.js";
import { generateSigningKey, signRelease, spkiBase64 } from "../../lib/release/index.js";
import { eventually, kubectl, repoRoot, tempStateDir } from "../support/controlplane.js";
import { applyCluster, createToken, startEnrollmentPlane } from "../support/enrollment.js";
import { publicKeyFingerprint } from "../../lib/crypto/x509.js";
import type { DownloadJob } from "./artifact-downloader-child.js";
import { cpuSeconds } from "./proc-stats.js";
import type { CacheJob } from "./update-cache-child.js";

const MIB = 1024 * 1024;
const SIZE = Number(process.argv[2] ?? 100) * MIB;
const DOWNLOADERS = Number(process.argv[3] ?? 20);
const rate = (bytes: number, ms: number) => `${(bytes / MIB / (ms / 1000)).toFixed(0)} MiB/s`;
const load = () => `load ${loadavg().map((x) => x.toFixed(1)).join(" ")}`;

const data = randomBytes(SIZE);
const sha256 = createHash("sha256").update(data).digest("hex");
const chunks = (buf: Buffer) => Readable.from((function* () { for (let o = 0; o < buf.length; o += MIB) yield buf.subarray(o, o + MIB); })());

const p = await startEnrollmentPlane();
const work = tempStateDir("afg-bench-");
try {
  const pool = p.cp.db.pool;
  // 1. file vs large object
  const store = new ArtifactStore(pool, join(work, "store"));
  let t = performance.now();
  await store.put(sha256, SIZE, chunks(data), "bench");
  const fileWrite = performance.now() - t;
  t = performance.now();
  const opened = await store.open(sha256);
  const h = createHash("sha256");
  for await (const c of opened!.stream as AsyncIterable<Buffer>) h.update(c);
  const fileRead = performance.now() - t;
  const c = await pool.connect();
  let loWrite: number;
  let loRead: number;
  try {
    t = performance.now();
    await c.query("BEGIN");
    const oid = Number((await c.query<{ oid: number }>("SELECT lo_create(0) AS oid")).rows[0]!.oid);
    const lh = createHash("sha256");
    for (let o = 0; o < SIZE; o += MIB) {
      const part = data.subarray(o, o + MIB);
      lh.update(part);
      await c.query("SELECT lo_put($1, $2, $3)", [oid, o, part]);
    }
    lh.digest();
    await c.query("COMMIT");
    loWrite = performance.now() - t;
    t = performance.now();
    const rh = createHash("sha256");
    for (let o = 0; o < SIZE; o += MIB) rh.update((await c.query<{ b: Buffer }>("SELECT lo_get($1, $2, $3) AS b", [oid, o, MIB])).rows[0]!.b);
    loRead = performance.now() - t;
    await c.query("SELECT lo_unlink($1)", [oid]);
  } finally {
    c.release();
  }
  console.log(`storage, ${SIZE / MIB} MiB: file write ${rate(SIZE, fileWrite)} (hash + fsync + rename + index), read ${rate(SIZE, fileRead)} (hashed); large object write ${rate(SIZE, loWrite)}, read ${rate(SIZE, loRead)} (hashed)`);

  // 2. push through the API server (into its own store: forget part 1's index row first)
  await pool.query("DELETE FROM artifacts WHERE sha256 = $1", [sha256]);
  const url = new URL(p.cp.api.url);
  t = performance.now();
  const status = await new Promise<number>((resolve, reject) => {
    const req = https.request({ host: url.hostname, port: url.port, method: "PUT", path: `/artifacts/v1/${sha256}`, rejectUnauthorized: false, headers: { Authorization: `Bearer ${p.cp.api.adminToken}`, "Content-Length": SIZE } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    chunks(data).pipe(req);
  });
  console.log(`push through the API server: ${SIZE / MIB} MiB in ${(performance.now() - t).toFixed(0)} ms, ${rate(SIZE, performance.now() - t)} (HTTP ${status})`);

  // 3. distribution to DOWNLOADERS nodes
  const key = generateSigningKey();
  await applyCluster(p.kubeconfig, "bench", "TokenAutoApprove");
  const trust = { threshold: 1, keys: [{ keyId: key.keyId, publicKey: spkiBase64(key.publicKey) }] };
  let r = await kubectl(p.kubeconfig, ["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "accessfabric.io/v1alpha1", kind: "FabricCluster", metadata: { name: "bench" }, spec: { enrollmentPolicy: { approval: "TokenAutoApprove" }, releaseTrust: trust } }) });
  if (r.code !== 0) throw new Error(r.stderr);
  const envelope = signRelease({ _type: "release", specVersion: 1, component: "bench", version: "1.0.0", expires: "2036-01-01T00:00:00Z", artifacts: [{ os: "linux", arch: "amd64", length: SIZE, sha256 }] }, [key]);
  r = await kubectl(p.kubeconfig, ["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "accessfabric.io/v1alpha1", kind: "Release", metadata: { name: "bench-1.0.0" }, spec: { cluster: "bench", component: "bench", version: "1.0.0", envelope } }) });
  if (r.code !== 0) throw new Error(r.stderr);
  await eventually(async () => (await pool.query("SELECT 1 FROM releases WHERE name = 'bench-1.0.0' AND verified")).rowCount === 1, 60_000);
  const token = await createToken(p.kubeconfig, "bench-join", { cluster: "bench", maxUses: DOWNLOADERS + 1, autoApprove: true });
  const ids: StoredIdentity[] = [];
  for (let i = 0; i < DOWNLOADERS; i++) {
    ids.push(await joinCluster({ server: p.server, token, caHash: p.caHash, stateDir: join(work, `agent-${i}`), nodeName: `d${i}`, cluster: "bench", pollIntervalMs: 200, timeoutMs: 60_000 }));
    await pool.query("INSERT INTO node_release_assignments (node_id, release_name, sha256) VALUES ($1, 'bench-1.0.0', $2)", [ids[i]!.info.node, sha256]);
  }
  const job: DownloadJob = { server: p.server, serverCaPem: ids[0]!.serverCaPem, nodes: ids.map((i) => ({ certPem: i.certPem, keyPem: i.keyPem })), artifact: { sha256, length: SIZE }, dir: join(work, "downloads") };

  /** Runs the downloader child once; returns its timings and this process's (the control plane's) CPU seconds. */
  const distribute = async (j: DownloadJob, cachePid?: number) => {
    let peakRss = process.memoryUsage().rss;
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 100);
    const cpu0 = process.cpuUsage();
    const cache0 = cachePid === undefined ? 0 : cpuSeconds(cachePid);
    const t0 = performance.now();
    const out = await new Promise<string>((resolve, reject) => {
      const child = execFile("npx", ["tsx", join(repoRoot, "test/bench/artifact-downloader-child.ts")], { maxBuffer: 1 << 20, timeout: 600_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${String(err)}\n${stderr}`)) : resolve(stdout)));
      child.stdin?.end(JSON.stringify(j));
    });
    const wall = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    clearInterval(sampler);
    const res = JSON.parse(out.trim().split("\n").pop()!) as { wallMs: number; perNodeMs: number[]; fallbacks: number };
    const sorted = [...res.perNodeMs].sort((a, b) => a - b);
    return {
      res,
      median: sorted[Math.floor(sorted.length / 2)]!,
      slowest: sorted[sorted.length - 1]!,
      cpCpu: (cpu.user + cpu.system) / 1e6,
      cacheCpu: cachePid === undefined ? 0 : cpuSeconds(cachePid) - cache0,
      wall,
      peakRss,
    };
  };

  const direct = await distribute(job);
  console.log(
    `distribution: ${SIZE / MIB} MiB to ${DOWNLOADERS} nodes at once over mTLS: ${rate(SIZE * DOWNLOADERS, direct.res.wallMs)} aggregate (downloads ${direct.res.wallMs.toFixed(0)} ms; per node median ${direct.median.toFixed(0)} ms, slowest ${direct.slowest.toFixed(0)} ms); control plane CPU ${direct.cpCpu.toFixed(1)} s over ${(direct.wall / 1000).toFixed(1)} s (incl. child start), peak RSS ${(direct.peakRss / MIB).toFixed(0)} MiB; ${load()}`,
  );

  // 4. through one update-cache node
  const cacheId = await joinCluster({ server: p.server, token, caHash: p.caHash, stateDir: join(work, "cache"), nodeName: "cache", cluster: "bench", capabilities: ["can_run_update_cache"], pollIntervalMs: 200, timeoutMs: 60_000 });
  r = await kubectl(p.kubeconfig, ["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "accessfabric.io/v1alpha1", kind: "RoleAssignment", metadata: { name: "bench-cache" }, spec: { cluster: "bench", role: "update-cache", nodeNames: [cacheId.info.node] } }) });
  if (r.code !== 0) throw new Error(r.stderr);
  await eventually(async () => (await pool.query("SELECT 1 FROM node_roles WHERE node = $1 AND role = 'update-cache'", [cacheId.info.node])).rowCount === 1, 60_000);
  const cacheJob: CacheJob = { server: p.server, serverCaPem: cacheId.serverCaPem, cluster: "bench", node: cacheId.info.node, caPem: cacheId.caPem, certPem: cacheId.certPem, keyPem: cacheId.keyPem, artifact: { sha256, length: SIZE }, dir: join(work, "cache") };
  const cacheChild = spawn(process.execPath, ["--import", `file://${join(repoRoot, "node_modules/tsx/dist/loader.mjs")}`, join(repoRoot, "test/bench/update-cache-child.ts")], { stdio: ["pipe", "pipe", "inherit"], env: { ...process.env, FABRIC_LOG_LEVEL: "warn" } });
  try {
    const cpuMirror0 = process.cpuUsage();
    t = performance.now();
    cacheChild.stdin.end(JSON.stringify(cacheJob));
    const port = await new Promise<number>((resolve, reject) => {
      let buf = "";
      cacheChild.stdout.on("data", (c: Buffer) => {
        buf += c.toString("utf8");
        const line = buf.split("\n").find((l) => l.startsWith("{"));
        if (line !== undefined) resolve((JSON.parse(line) as { port: number }).port);
      });
      cacheChild.once("exit", (code) => reject(new Error(`cache child exited with ${code}`)));
      setTimeout(() => reject(new Error("the cache did not mirror the artifact within 300 s")), 300_000).unref();
    });
    const mirrorMs = performance.now() - t;
    const mirrorCpu = process.cpuUsage(cpuMirror0);
    const cached = await distribute(
      { ...job, dir: join(work, "downloads-cache"), cache: { node: cacheId.info.node, endpoint: `127.0.0.1:${port}`, certificateFingerprint: publicKeyFingerprint(new X509Certificate(cacheId.certPem).publicKey), cluster: "bench", caPem: cacheId.caPem } },
      cacheChild.pid,
    );
    console.log(
      `distribution through one update-cache node: mirror ${SIZE / MIB} MiB in ${mirrorMs.toFixed(0)} ms (control plane CPU ${((mirrorCpu.user + mirrorCpu.system) / 1e6).toFixed(1)} s); then ${SIZE / MIB} MiB to ${DOWNLOADERS} nodes: ${rate(SIZE * DOWNLOADERS, cached.res.wallMs)} aggregate (per node median ${cached.median.toFixed(0)} ms, slowest ${cached.slowest.toFixed(0)} ms), ${cached.res.fallbacks} fallbacks to the control plane; control plane CPU ${cached.cpCpu.toFixed(1)} s, cache CPU ${cached.cacheCpu.toFixed(1)} s over ${(cached.wall / 1000).toFixed(1)} s; ${load()}`,
    );
  } finally {
    cacheChild.kill("SIGTERM");
  }
} finally {
  await p.stop();
  rmSync(work, { recursive: true, force: true });
}
