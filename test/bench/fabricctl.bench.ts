/**
 * Benchmark: fabricctl's wall time as an operator feels it, each run a new
 * process (bin/fabricctl, the esbuild bundle) against an API server in this
 * process (no controllers: the objects stay as written):
 *
 *   - `fabricctl --help`, and the same from source through tsx (the old way)
 *   - `fabricctl get nodes` with 10 nodes
 *   - `fabricctl get nodes` and `fabricctl status` with --nodes FabricNodes
 *     (default 10,000), created with their status straight through the API
 *
 * Prints the median and the spread of each; nothing is asserted.
 *
 *   npx tsx test/bench/fabricctl.bench.ts [--nodes 10000] [--runs 10] [--big-runs 5] [--concurrency 32]
 */
import { execFile } from "node:child_process";
import { parseArgs } from "node:util";
import { KubeClient } from "../../cli/kube/client.js";
import { loadKubeTarget } from "../../cli/kube/kubeconfig.js";
import { repoRoot, startTestControlPlane } from "../support/controlplane.js";
import { join } from "node:path";

const bin = join(repoRoot, "bin", "fabricctl");

function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ ms: number; code: number; bytes: number }> {
  const start = process.hrtime.bigint();
  return new Promise((resolve) => {
    execFile(bin, args, { env: { ...process.env, ...env }, maxBuffer: 256 * 1024 * 1024 }, (err, stdout) => {
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      resolve({ ms, code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, bytes: stdout.length });
    });
  });
}

async function measure(label: string, args: string[], runs: number, env: NodeJS.ProcessEnv = {}): Promise<void> {
  const times: number[] = [];
  let last = { code: 0, bytes: 0 };
  for (let i = 0; i < runs; i++) {
    const r = await run(args, env);
    times.push(r.ms);
    last = r;
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)] ?? NaN;
  console.log(`${label.padEnd(44)} median ${median.toFixed(0).padStart(5)} ms   min ${(times[0] ?? NaN).toFixed(0)}   max ${(times[times.length - 1] ?? NaN).toFixed(0)}   (${runs} runs, exit ${last.code}, ${last.bytes} bytes out)`);
}

/** Creates FabricNodes `from`..`to`-1 with a status (a third Unknown, one in 50 with a certificate near expiry). */
async function createNodes(client: KubeClient, from: number, to: number, concurrency: number): Promise<void> {
  let next = from;
  const now = Date.now();
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= to) return;
      const name = `bench.n${String(i).padStart(5, "0")}`;
      await client.create("FabricNode", name, { cluster: "bench", hostFingerprint: `sha256:${i.toString(16).padStart(64, "0")}`, membership: "Active" });
      const ready = i % 3 === 2 ? "Unknown" : "True";
      const notAfter = new Date(now + (i % 50 === 0 ? 1 : 20) * 3_600_000).toISOString();
      await client.request("PATCH", `${client.fabricPath("FabricNode", name)}/status`, {
        contentType: "application/merge-patch+json",
        body: {
          status: {
            agentVersion: "0.1.0",
            lastHeartbeatTime: new Date(now - (ready === "True" ? 2_000 : 120_000)).toISOString(),
            health: ready === "True" ? "Healthy" : "Unreachable",
            assignedRoles: i % 4 === 0 ? ["entry-node"] : [],
            identity: { certificateSerial: (i + 16).toString(16), notBefore: new Date(now - 4 * 3_600_000).toISOString(), notAfter },
            conditions: [{ type: "Ready", status: ready, reason: ready === "True" ? "Active" : "NodeStatusUnknown", message: "bench", lastTransitionTime: new Date(now).toISOString() }],
          },
        },
      });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { nodes: { type: "string", default: "10000" }, runs: { type: "string", default: "10" }, "big-runs": { type: "string", default: "5" }, concurrency: { type: "string", default: "32" } } });
  const total = Number(values.nodes);
  const runs = Number(values.runs);
  const bigRuns = Number(values["big-runs"]);
  process.env.FABRIC_LOG_LEVEL ??= "warn";
  const plane = await startTestControlPlane();
  const client = new KubeClient(await loadKubeTarget(plane.kubeconfig));
  try {
    const kc = ["--kubeconfig", plane.kubeconfig];
    await client.create("FabricCluster", "bench", {});
    // A first run builds the bundle if it is stale; it is not counted.
    await run(["--help"]);
    await measure("fabricctl --help", ["--help"], runs);
    await measure("fabricctl --help (from source, tsx)", ["--help"], 3, { FABRICCTL_FROM_SOURCE: "1" });
    await createNodes(client, 0, 10, 8);
    await measure("fabricctl get nodes (10 nodes)", ["get", "nodes", ...kc], runs);
    await measure("fabricctl status (10 nodes)", ["status", ...kc], runs);
    const t0 = Date.now();
    await createNodes(client, 10, total, Number(values.concurrency));
    console.log(`created ${total} FabricNodes with status in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    await measure(`fabricctl get nodes (${total} nodes)`, ["get", "nodes", ...kc], bigRuns);
    await measure(`fabricctl status (${total} nodes)`, ["status", ...kc], bigRuns);
    await measure(`fabricctl status -o json (${total} nodes)`, ["status", "-o", "json", ...kc], bigRuns);
  } finally {
    client.close();
    await plane.stop();
  }
}

await main();
