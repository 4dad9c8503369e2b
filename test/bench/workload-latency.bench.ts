/**
 * RoleAssignment change → workload process started on a real agent.
 *
 * A real control plane process (bin/fabric-controlplane) and a real
 * `fabric-agent` process on loopback; one ServiceWorkload on role
 * rdp-worker whose process writes its own start time (`date +%s%3N`, the
 * first thing its shell does) to a file. Each round creates the
 * RoleAssignment that grants the role to the node (through the API server,
 * timestamped just before the request) and polls the file every 2 ms; the
 * latency is start time − request time (one host clock). The round then
 * deletes the assignment and measures deletion → process gone (polled from
 * /proc). The agent's log time of the first snapshot it applied after the
 * change shows how much of the latency is the control plane (controllers,
 * snapshot build, long poll); a grant can take two snapshots (the role, then
 * the workload rows). Prints figures; asserts nothing.
 *
 *   npx tsx test/bench/workload-latency.bench.ts [rounds=20]
 *   (WL_BENCH_LOGS=DIR keeps the control plane's and the agent's logs)
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CustomObjectsApi } from "@kubernetes/client-node";
import { loadKubeConfig } from "../../lib/kube/kubeconfig.js";
import { eventually, repoRoot, spawnControlPlane, tempStateDir } from "../support/controlplane.js";
import { applyCluster, createToken } from "../support/enrollment.js";
import { killAllWith, processesWith } from "../support/processes.js";

const ROUNDS = Number(process.argv[2] ?? 20);
const group = "accessfabric.io";
const version = "v1alpha1";

const cpDir = tempStateDir();
const agentDir = tempStateDir("fabric-agent-bench-");
const outFile = join(agentDir, "started-at");
const marker = `wl-bench-${randomBytes(6).toString("hex")}`;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? Number.NaN;
};
const line = (label: string, xs: number[]): string =>
  `  ${label.padEnd(44)} p50 ${pct(xs, 50).toFixed(0).padStart(5)} ms   p90 ${pct(xs, 90).toFixed(0).padStart(5)} ms   p99 ${pct(xs, 99).toFixed(0).padStart(5)} ms   max ${Math.max(...xs).toFixed(0).padStart(5)} ms`;

const cp = await spawnControlPlane(cpDir, ["--agent-port", "0", "--leader-elect", "false"]);
let agentOut = "";
const agent = (() => {
  const ready = /"agentApi":"([^"]+)","agentApiCaHash":"([^"]+)"/.exec(cp.output());
  if (ready === null) throw new Error(`no agent api in the control plane output:\n${cp.output()}`);
  return { server: ready[1] ?? "", caHash: ready[2] ?? "" };
})();
let child: ReturnType<typeof spawn> | undefined;
try {
  await applyCluster(cp.kubeconfig, "lat", "TokenAutoApprove");
  const token = await createToken(cp.kubeconfig, "lat-join", { cluster: "lat", autoApprove: true });
  child = spawn(
    join(repoRoot, "bin", "fabric-agent"),
    ["join", "--server", agent.server, "--token", token, "--ca-hash", agent.caHash, "--node-name", "n1", "--cluster", "lat", "--capabilities", "can_run_rdp_worker", "--poll-interval", "200ms", "--state-dir", agentDir],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, FABRIC_LOG_LEVEL: "info" } },
  );
  child.stdout?.on("data", (b: Buffer) => (agentOut += b.toString()));
  child.stderr?.on("data", (b: Buffer) => (agentOut += b.toString()));
  await eventually(() => agentOut.includes('"msg":"snapshot verified and applied"'), 60_000, 100);

  const api = loadKubeConfig(cp.kubeconfig).makeApiClient(CustomObjectsApi);
  await api.createClusterCustomObject({
    group,
    version,
    plural: "serviceworkloads",
    body: {
      apiVersion: `${group}/${version}`,
      kind: "ServiceWorkload",
      metadata: { name: "lat" },
      spec: { cluster: "lat", role: "rdp-worker", runtime: "Native", command: ["/bin/sh", "-c", 'date +%s%3N > "$OUT"; sleep 100000', marker], env: [{ name: "OUT", value: outFile }] },
    },
  });
  await sleep(1000); // the workload controller has seen it (no holders yet)

  const start: number[] = [];
  const toSnapshot: number[] = [];
  const stopLat: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    rmSync(outFile, { force: true });
    const logMark = agentOut.length;
    const t0 = Date.now();
    await api.createClusterCustomObject({
      group,
      version,
      plural: "roleassignments",
      body: { apiVersion: `${group}/${version}`, kind: "RoleAssignment", metadata: { name: "lat" }, spec: { cluster: "lat", role: "rdp-worker", nodeNames: ["lat.n1"] } },
    });
    const startedAt = await eventually(() => {
      if (!existsSync(outFile)) return undefined;
      const v = Number(readFileSync(outFile, "utf8").trim());
      return Number.isFinite(v) && v > 0 ? v : undefined;
    }, 30_000, 2);
    start.push(startedAt - t0);
    // The first snapshot applied after the change carries the workload.
    const applied = /\{"ts":"([^"]+)"[^\n]*"msg":"snapshot verified and applied"/.exec(agentOut.slice(logMark));
    if (applied?.[1] !== undefined) toSnapshot.push(Date.parse(applied[1]) - t0);

    const t1 = Date.now();
    await api.deleteClusterCustomObject({ group, version, plural: "roleassignments", name: "lat" });
    await eventually(() => processesWith(marker).length === 0, 30_000, 2);
    stopLat.push(Date.now() - t1);
    await sleep(300); // let the role withdrawal settle (controllers, snapshot) before the next round
  }

  console.log(`workload latency: ${ROUNDS} rounds, 1 agent (fabric-agent process), control plane process on loopback`);
  console.log(line("RoleAssignment created → process started", start));
  if (toSnapshot.length > 0) console.log(line("  of which: → first new snapshot on the agent", toSnapshot));
  console.log(line("RoleAssignment deleted → process gone", stopLat));
  console.log(`  start samples (ms): ${start.map((x) => x.toFixed(0)).join(" ")}`);
} catch (err) {
  console.error(`agent output (tail):\n${agentOut.slice(-4000)}`);
  throw err;
} finally {
  const keep = process.env.WL_BENCH_LOGS;
  if (keep !== undefined && keep !== "") {
    writeFileSync(join(keep, "controlplane.log"), cp.output());
    writeFileSync(join(keep, "agent.log"), agentOut);
  }
  child?.kill("SIGKILL");
  killAllWith(marker);
  cp.child.kill("SIGTERM");
  await cp.exited;
  for (const d of [cpDir, agentDir]) rmSync(d, { recursive: true, force: true });
}
