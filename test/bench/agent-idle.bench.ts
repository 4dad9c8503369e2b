/**
 * Agent idle footprint: one real `bin/fabric-agent run` process (joined
 * through the real flow against an in-process control plane, default 10 s
 * heartbeats, 30 s long polls) sampled from /proc over a quiet window after
 * it holds its first verified snapshot. Prints figures only.
 *
 *   npx tsx test/bench/agent-idle.bench.ts [seconds]
 *
 * The agent runs from its precompiled bundle (dist/fabric-agent.mjs, built by
 * bin/fabric-agent when missing or stale); FABRIC_AGENT_FROM_SOURCE=1 in the
 * environment measures the tsx path instead, for comparison.
 */
import { execFile, spawn } from "node:child_process";
import { promisify } from "node:util";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { runControlPlane } from "../../controlplane/controlplane.js";
import { logger } from "../../lib/log.js";
import { repoRoot, tempStateDir } from "../support/controlplane.js";
import { applyCluster, createToken } from "../support/enrollment.js";
import { commOf, cpuSeconds, descendants, rssBytes } from "./proc-stats.js";

const SECONDS = Number(process.argv[2] ?? 60);
process.env.FABRIC_LOG_LEVEL ??= "warn";
const agentBin = join(repoRoot, "bin", "fabric-agent");
// Never execFileSync: the control plane runs in this process and must keep answering.
const run = promisify(execFile);
const stateDir = tempStateDir("fabric-bench-");
const agentDir = tempStateDir("fabric-bench-agent-");
const cp = await runControlPlane({
  stateDir, host: "127.0.0.1", port: 0, metricsPort: 0, fsync: false, log: logger("bench"),
  controllers: { identity: "bench" }, agentPort: 0, agentApi: { rateLimit: { burst: 1000, perSecond: 1000 } },
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
try {
  const agentApi = cp.agentApi;
  if (agentApi === undefined) throw new Error("no agent api");
  await applyCluster(cp.api.kubeconfigPath, "idle", "TokenAutoApprove");
  const token = await createToken(cp.api.kubeconfigPath, "idle-join", { cluster: "idle", autoApprove: true });
  await run(agentBin, ["join", "--once", "--server", agentApi.url, "--token", token, "--ca-hash", agentApi.caHash, "--node-name", "idle-1", "--cluster", "idle", "--poll-interval", "200ms", "--state-dir", agentDir]);
  const child = spawn(agentBin, ["run", "--state-dir", agentDir], { stdio: "ignore", env: { ...process.env, FABRIC_LOG_LEVEL: "warn" } });
  const pid = child.pid ?? 0;
  // Wait for the first verified snapshot, then let start-up work settle.
  for (let i = 0; i < 600; i++) {
    const { stdout: out } = await run(agentBin, ["status", "--json", "--state-dir", agentDir], { encoding: "utf8" });
    if (out.includes('"serial"')) break;
    await sleep(100);
  }
  await sleep(5000);
  const tree = () => [pid, ...descendants(pid)];
  const cpu0 = tree().reduce((s, p) => s + cpuSeconds(p), 0);
  const t0 = Date.now();
  const rss: number[] = [];
  while (Date.now() - t0 < SECONDS * 1000) {
    rss.push(tree().reduce((s, p) => s + rssBytes(p), 0));
    await sleep(1000);
  }
  const cpu1 = tree().reduce((s, p) => s + cpuSeconds(p), 0);
  const wall = (Date.now() - t0) / 1000;
  const mb = (b: number) => `${(b / 1048576).toFixed(1)} MB`;
  const mode = process.env.FABRIC_AGENT_FROM_SOURCE === "1" ? "from source through tsx" : "precompiled bundle dist/fabric-agent.mjs";
  console.log(`agent (${mode}) idle footprint over ${wall.toFixed(0)} s (processes: ${tree().map((p) => `${p}:${commOf(p)}`).join(", ")})`);
  console.log(`  RSS: min ${mb(Math.min(...rss))}, max ${mb(Math.max(...rss))}, last ${mb(rss[rss.length - 1] ?? 0)}`);
  console.log(`  CPU: ${(cpu1 - cpu0).toFixed(2)} s over ${wall.toFixed(0)} s = ${((100 * (cpu1 - cpu0)) / wall).toFixed(2)} % of one core`);
  child.kill("SIGTERM");
  await new Promise((r) => child.once("exit", r));
} finally {
  await cp.stop();
  rmSync(stateDir, { recursive: true, force: true });
  rmSync(agentDir, { recursive: true, force: true });
}
