/**
 * Workload supervisor overhead: 50 native workloads (real `sleep` processes,
 * each with a TCP health probe every 5 s against a listener in this process,
 * restart policy Always) supervised by one WorkloadSupervisor with the
 * default 1 s sync tick. Measures the time to converge from nothing (50
 * processes started and ready), then the supervisor's own CPU (this
 * process: user + system) and memory over a steady window, then the time to
 * stop all 50. Prints figures only; asserts nothing.
 *
 *   npx tsx test/bench/workloads.bench.ts [workloads=50] [windowSeconds=20]
 */
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { WorkloadSupervisor } from "../../agent/workloads/supervisor.js";
import type { SnapshotWorkload } from "../../lib/snapshot/format.js";
import { logger } from "../../lib/log.js";

const N = Number(process.argv[2] ?? 50);
const WINDOW_S = Number(process.argv[3] ?? 20);
process.env.FABRIC_LOG_LEVEL ??= "warn";

const srv = net.createServer((s) => s.destroy());
await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
const port = (srv.address() as net.AddressInfo).port;
const dir = mkdtempSync(join(tmpdir(), "fabric-wl-bench-"));
const sup = new WorkloadSupervisor({ stateDir: dir, log: logger("bench"), stopGraceMs: 2000 });
const desired: SnapshotWorkload[] = Array.from({ length: N }, (_, i) => ({
  name: `bench-${String(i).padStart(3, "0")}`,
  generation: 1,
  role: "bench",
  runtime: "native",
  command: ["sleep", "100000"],
  args: [],
  env: { INDEX: String(i) },
  restartPolicy: "Always",
  healthProbe: { kind: "tcp", port, periodSeconds: 5, timeoutSeconds: 1, failureThreshold: 3 },
}));

const t0 = performance.now();
sup.apply(desired, "Active");
for (;;) {
  const s = sup.status();
  if (s.length === N && s.every((x) => x.ready)) break;
  await new Promise((r) => setTimeout(r, 20));
}
const convergeMs = performance.now() - t0;

global.gc?.();
const mem0 = process.memoryUsage();
const cpu0 = process.cpuUsage();
const w0 = performance.now();
let maxRss = 0;
while (performance.now() - w0 < WINDOW_S * 1000) {
  await new Promise((r) => setTimeout(r, 500));
  maxRss = Math.max(maxRss, process.memoryUsage().rss);
}
const cpu = process.cpuUsage(cpu0);
const wallMs = performance.now() - w0;
const mem1 = process.memoryUsage();

const s0 = performance.now();
sup.apply([], "Active");
await sup.settle();
const stopMs = performance.now() - s0;
await sup.stop();
srv.close();
rmSync(dir, { recursive: true, force: true });

const mb = (b: number): string => (b / 1024 / 1024).toFixed(1);
console.log(`workloads: ${N} native processes, tcp probe every 5 s, sync tick 1 s`);
console.log(`  start all and ready:      ${convergeMs.toFixed(0)} ms`);
console.log(`  steady window:            ${(wallMs / 1000).toFixed(1)} s`);
console.log(`  supervisor CPU:           ${(((cpu.user + cpu.system) / 1000 / wallMs) * 100).toFixed(2)} % of one core (user ${(cpu.user / 1000).toFixed(0)} ms, system ${(cpu.system / 1000).toFixed(0)} ms)`);
console.log(`  memory (whole process):   rss ${mb(mem1.rss)} MiB (max ${mb(maxRss)}), heapUsed ${mb(mem0.heapUsed)} -> ${mb(mem1.heapUsed)} MiB`);
console.log(`  stop all (SIGTERM):       ${stopMs.toFixed(0)} ms`);
