/**
 * The workload supervisor with REAL child processes (node -e, sh): start,
 * restart with backoff after a kill, stop on removal (SIGTERM, then SIGKILL
 * after the grace), probes gating readiness, size-bounded output, adoption
 * after a supervisor restart without duplicates, container runtime missing
 * or unreachable reported with a reason, Disabled membership stopping all.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EngineChecker, probeEngine } from "../../agent/workloads/container.js";
import { isAlive } from "../../agent/workloads/proc.js";
import { WorkloadSupervisor, type WorkloadSupervisorOptions } from "../../agent/workloads/supervisor.js";
import type { WorkloadStatus } from "../../agent/workloads/types.js";
import type { SnapshotWorkload } from "../../lib/snapshot/format.js";
import { logger } from "../../lib/log.js";

const node = process.execPath;
const log = logger("test-supervisor");

/** A native workload running `node -e code marker`. */
function nodeWorkload(name: string, code: string, extra: Partial<SnapshotWorkload> = {}): SnapshotWorkload & { marker: string } {
  const marker = `wl-${randomBytes(4).toString("hex")}`;
  return { name, generation: 1, role: "demo", runtime: "native", command: [node, "-e", code], args: [marker], env: {}, restartPolicy: "Always", ...extra, marker };
}
const forever = "setInterval(() => {}, 1000); process.on('SIGTERM', () => process.exit(0));";

/** Pids of live processes whose command line contains marker. */
function pidsWith(marker: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, "utf8");
      if (cmd.includes(marker) && isAlive(Number(d))) out.push(Number(d));
    } catch {
      // gone
    }
  }
  return out;
}

async function until<T>(fn: () => T | undefined | false, timeoutMs = 15_000, what = "condition"): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("workload supervisor (real processes)", function () {
  this.timeout(60_000);
  let dir: string;
  const sups: WorkloadSupervisor[] = [];
  const make = (o: Partial<WorkloadSupervisorOptions> = {}): WorkloadSupervisor => {
    const s = new WorkloadSupervisor({ stateDir: dir, log, tickMs: 50, stopGraceMs: 500, backoff: { initialMs: 300, maxMs: 2000, resetAfterMs: 10_000 }, ...o });
    sups.push(s);
    return s;
  };
  const st = (s: WorkloadSupervisor, name: string): WorkloadStatus | undefined => s.status().find((x) => x.name === name);

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "fabric-wl-"));
  });
  afterEach(async () => {
    for (const s of sups.splice(0)) await s.stopAll().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it("starts a native workload, reports it ready, and captures its output", async () => {
    const s = make();
    const w = nodeWorkload("hello", `console.log('hello from ' + process.argv[1]); ${forever}`);
    s.apply([w], "Active");
    const ready = await until(() => (st(s, "hello")?.ready ? st(s, "hello") : undefined), 10_000, "ready");
    assert.equal(ready.state, "Running");
    assert.equal(ready.restartCount, 0);
    assert.deepEqual(pidsWith(w.marker), [ready.pid]);
    await until(() => readFileSync(join(dir, "workloads", "hello", "output.log"), "utf8").includes(`hello from ${w.marker}`), 5000, "output");
  });

  it("restarts a killed process after an exponential backoff", async () => {
    const s = make();
    const w = nodeWorkload("crashy", forever);
    s.apply([w], "Active");
    const first = await until(() => st(s, "crashy")?.pid, 10_000, "first start");
    const gaps: number[] = [];
    let pid = first;
    for (let n = 1; n <= 3; n++) {
      const killedAt = Date.now();
      process.kill(pid, "SIGKILL");
      const backoff = await until(() => (st(s, "crashy")?.reason === "CrashLoopBackOff" ? st(s, "crashy") : undefined), 5000, "backoff state");
      assert.equal(backoff.state, "Degraded");
      assert.equal(backoff.ready, false);
      const next = await until(() => {
        const x = st(s, "crashy");
        return x?.pid !== undefined && x.pid !== pid && x.restartCount === n ? x : undefined;
      }, 10_000, `restart ${n}`);
      gaps.push(Date.now() - killedAt);
      pid = next.pid ?? 0;
      assert.deepEqual(pidsWith(w.marker), [pid], "exactly one process");
    }
    // 300 ms, 600 ms, 1200 ms (plus a tick): each wait at least its backoff, and growing.
    assert.ok((gaps[0] ?? 0) >= 280, `first gap ${gaps[0]}`);
    assert.ok((gaps[1] ?? 0) >= 580, `second gap ${gaps[1]}`);
    assert.ok((gaps[2] ?? 0) >= 1180, `third gap ${gaps[2]}`);
    assert.ok((gaps[2] ?? 0) > (gaps[0] ?? 0), `gaps grow: ${gaps.join(", ")}`);
  });

  it("does not restart under restartPolicy Never, and OnFailure stops after exit 0", async () => {
    const s = make();
    const never = nodeWorkload("never", "process.exit(3)", { restartPolicy: "Never" });
    const done = nodeWorkload("done", "process.exit(0)", { restartPolicy: "OnFailure" });
    s.apply([never, done], "Active");
    const a = await until(() => (st(s, "never")?.state === "Failed" ? st(s, "never") : undefined), 10_000, "never failed");
    const b = await until(() => (st(s, "done")?.state === "Stopped" ? st(s, "done") : undefined), 10_000, "done stopped");
    assert.match(a.message, /exited with code 3/);
    assert.equal(b.reason, "Completed");
    await new Promise((r) => setTimeout(r, 800));
    assert.equal(st(s, "never")?.restartCount, 0);
    assert.equal(st(s, "done")?.restartCount, 0);
  });

  it("stops a removed workload with SIGTERM, and SIGKILLs one that ignores it after the grace", async () => {
    const s = make({ stopGraceMs: 2500 });
    const polite = nodeWorkload("polite", forever);
    const stubborn = nodeWorkload("stubborn", "process.on('SIGTERM', () => {}); console.log('ignoring SIGTERM'); setInterval(() => {}, 1000);");
    s.apply([polite, stubborn], "Active");
    await until(() => st(s, "polite")?.ready && st(s, "stubborn")?.ready, 10_000, "both ready");
    // A SIGTERM that arrives before node installed the handler kills at once: wait until it is in place.
    const stubbornOut = join(dir, "workloads", "stubborn", "output.log");
    await until(() => existsSync(stubbornOut) && readFileSync(stubbornOut, "utf8").includes("ignoring SIGTERM"), 10_000, "stubborn ignores SIGTERM");
    const t0 = Date.now();
    s.apply([stubborn], "Active");
    await until(() => pidsWith(polite.marker).length === 0, 5000, "polite gone");
    const politeMs = Date.now() - t0;
    assert.ok(politeMs < 2000, `SIGTERM honoured before the grace ran out (${politeMs} ms)`);
    await until(() => !existsSync(join(dir, "workloads", "polite")), 5000, "removed workload's directory deleted");
    const t1 = Date.now();
    s.apply([], "Active");
    await until(() => pidsWith(stubborn.marker).length === 0, 8000, "stubborn gone");
    const stubbornMs = Date.now() - t1;
    assert.ok(stubbornMs >= 2450, `SIGKILL only after the grace (${stubbornMs} ms)`);
    assert.deepEqual(s.status(), []);
  });

  it("gates readiness on TCP, HTTP and exec probes, and restarts after failureThreshold failures", async () => {
    const s = make();
    const port = await freePort();
    const port2 = await freePort();
    const flag = join(dir, "healthy-flag");
    const probe = { periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 2 };
    const tcp = nodeWorkload("tcp", `setTimeout(() => require('net').createServer(() => {}).listen(${port}, '127.0.0.1'), 1500); ${forever}`, { healthProbe: { kind: "tcp", port, ...probe, failureThreshold: 5 } });
    const web = nodeWorkload("web", `require('http').createServer((q, r) => { r.writeHead(q.url === '/healthz' ? 200 : 404); r.end(); }).listen(${port2}, '127.0.0.1'); ${forever}`, {
      healthProbe: { kind: "http", url: `http://127.0.0.1:${port2}/healthz`, ...probe },
    });
    const ex = nodeWorkload("exec", forever, { healthProbe: { kind: "exec", command: ["test", "-f", flag], ...probe } });
    s.apply([tcp, web, ex], "Active");
    // TCP: not ready until the port listens.
    await until(() => st(s, "tcp")?.pid, 5000, "tcp started");
    assert.equal(st(s, "tcp")?.ready, false);
    const t = await until(() => (st(s, "tcp")?.ready ? st(s, "tcp") : undefined), 10_000, "tcp ready");
    assert.equal(t.reason, "Healthy");
    await until(() => st(s, "web")?.ready, 10_000, "http ready");
    // exec: the flag is missing, so it fails, is Degraded, and is restarted.
    const bad = await until(() => (st(s, "exec")?.reason === "ProbeFailed" ? st(s, "exec") : undefined), 10_000, "exec probe failed");
    assert.equal(bad.ready, false);
    await until(() => (st(s, "exec")?.restartCount ?? 0) >= 1, 15_000, "restart after probe failures");
    // Once the flag exists it becomes ready.
    const { writeFileSync } = await import("node:fs");
    writeFileSync(flag, "ok");
    await until(() => st(s, "exec")?.ready, 15_000, "exec ready");
  });

  it("keeps output files within their size bound", async () => {
    const s = make({ logLimits: { maxBytes: 32 * 1024, keep: 2 } });
    const w = nodeWorkload("chatty", "const line = 'x'.repeat(1023) + '\\n'; setInterval(() => { for (let i = 0; i < 8; i++) process.stdout.write(line); }, 10);");
    s.apply([w], "Active");
    const wd = join(dir, "workloads", "chatty");
    await until(() => existsSync(join(wd, "output.log.2")), 15_000, "two rotations");
    let max = 0;
    for (let n = 0; n < 20; n++) {
      await new Promise((r) => setTimeout(r, 100));
      const files = readdirSync(wd).filter((f) => f.startsWith("output.log"));
      assert.ok(files.length <= 3, `at most keep+1 files: ${files.join(",")}`);
      const total = files.reduce((a, f) => a + statSync(join(wd, f)).size, 0);
      max = Math.max(max, total);
      for (const f of files.filter((f) => f !== "output.log")) assert.ok(statSync(join(wd, f)).size <= 32 * 1024, `${f} within maxBytes`);
    }
    // (keep+1) x maxBytes plus what ~800 KB/s adds between two 50 ms syncs.
    assert.ok(max <= 3 * 32 * 1024 + 64 * 1024, `total on disk ${max}`);
  });

  it("adopts its own running processes after a supervisor restart instead of starting duplicates", async () => {
    const a = make();
    const w = nodeWorkload("keeper", forever);
    a.apply([w], "Active");
    const pid = await until(() => (st(a, "keeper")?.ready ? st(a, "keeper")?.pid : undefined), 10_000, "ready");
    await a.stop(); // the agent exits; the workload keeps running
    sups.splice(sups.indexOf(a), 1);
    assert.ok(isAlive(pid));
    const b = make();
    assert.deepEqual(b.status(), [], "nothing reported or done before the first desired set");
    b.apply([w], "Active");
    await b.settle();
    const s = await until(() => (st(b, "keeper")?.ready ? st(b, "keeper") : undefined), 5000, "adopted ready");
    assert.equal(s.pid, pid, "same process");
    assert.equal(s.restartCount, 0);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(pidsWith(w.marker), [pid], "no duplicate");
    // An adopted process that dies is restarted like any other.
    process.kill(pid, "SIGKILL");
    const again = await until(() => {
      const x = st(b, "keeper");
      return x?.pid !== undefined && x.pid !== pid ? x : undefined;
    }, 10_000, "restart of adopted");
    assert.equal(again.restartCount, 1);
  });

  it("does not adopt a recorded pid that now belongs to another process", async () => {
    const a = make();
    const w = nodeWorkload("reused", forever);
    a.apply([w], "Active");
    const pid = await until(() => st(a, "reused")?.pid, 10_000, "started");
    await a.stop();
    sups.splice(sups.indexOf(a), 1);
    // Rewrite the record so its start time no longer matches (as after pid reuse).
    const recPath = join(dir, "workloads", "reused", "process.json");
    const rec = JSON.parse(readFileSync(recPath, "utf8")) as { process: { startTime: string } };
    rec.process.startTime = "1";
    const { writeFileSync } = await import("node:fs");
    writeFileSync(recPath, JSON.stringify(rec));
    const b = make();
    b.apply([w], "Active");
    const s = await until(() => {
      const x = st(b, "reused");
      return x?.pid !== undefined && x.pid !== pid ? x : undefined;
    }, 10_000, "fresh start");
    assert.notEqual(s.pid, pid);
    process.kill(pid, "SIGKILL"); // the unadopted one is not ours any more
  });

  it("reports a container workload Unsupported with the reason when the engine is missing or unreachable", async () => {
    const missing = await probeEngine("podman");
    const docker = await probeEngine("docker");
    // This machine: no podman CLI; a docker CLI whose engine does not run.
    const engines = new EngineChecker(30_000, async (e) => (e === "podman" ? missing : docker));
    const s = make({ engines });
    const base = { generation: 1, role: "demo", runtime: "container" as const, image: "nginx:1.27", command: [], args: [], env: {}, restartPolicy: "Always" as const };
    s.apply([{ name: "pod", containerEngine: "podman", ...base }, { name: "dock", containerEngine: "docker", ...base }], "Active");
    const p = await until(() => (st(s, "pod")?.state === "Unsupported" ? st(s, "pod") : undefined), 15_000, "podman unsupported");
    assert.equal(p.ready, false);
    if (!missing.available) {
      assert.equal(p.reason, missing.reason);
      assert.match(p.message, /podman/);
    }
    const d = await until(() => (st(s, "dock")?.state !== "Starting" ? st(s, "dock") : undefined), 15_000, "docker decided");
    if (!docker.available) {
      assert.equal(d.state, "Unsupported");
      assert.match(d.reason, /^Container(RuntimeMissing|EngineUnreachable)$/);
      assert.match(d.message, /docker/);
      assert.equal(pidsWith("accessfabric-dock").length, 0, "nothing pretended to run");
    }
  });

  it("stops every workload when the membership is Disabled, and starts them again when Active", async () => {
    const s = make();
    const w1 = nodeWorkload("one", forever);
    const w2 = nodeWorkload("two", forever);
    s.apply([w1, w2], "Active");
    await until(() => st(s, "one")?.ready && st(s, "two")?.ready, 10_000, "both ready");
    s.apply([w1, w2], "Disabled");
    await until(() => pidsWith(w1.marker).length === 0 && pidsWith(w2.marker).length === 0, 5000, "all stopped");
    await s.settle();
    assert.deepEqual(
      s.status().map((x) => [x.name, x.state, x.reason]),
      [
        ["one", "Stopped", "MembershipDisabled"],
        ["two", "Stopped", "MembershipDisabled"],
      ],
    );
    s.apply([w1, w2], "Active");
    await until(() => st(s, "one")?.ready && st(s, "two")?.ready, 10_000, "both ready again");
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const a = srv.address();
      srv.close(() => (typeof a === "object" && a !== null ? resolve(a.port) : reject(new Error("no port"))));
    });
  });
}
