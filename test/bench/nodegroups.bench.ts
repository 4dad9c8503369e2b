/**
 * Benchmark: 5,000 NodeGroups over 4 FabricClusters applied through
 * client-node against an embedded control plane (fsync on, the product
 * default) with the controllers in the same process, until every group is
 * Ready. Prints objects/s end to end, reconcile latency (create sent ->
 * Ready observed through a watch) p50/p99, and the nodegroup queue depth
 * over time. Figures only; nothing is asserted.
 *
 *   npx tsx test/bench/nodegroups.bench.ts [--groups 5000] [--clusters 4] [--concurrency 32] [--workers 8]
 */
import { rmSync } from "node:fs";
import { parseArgs } from "node:util";
import { CustomObjectsApi, KubeConfig, Watch } from "@kubernetes/client-node";
import { runControlPlane } from "../../controlplane/controlplane.js";
import { logger } from "../../lib/log.js";
import { tempStateDir } from "../support/controlplane.js";
import { loadKubeConfig } from "../../lib/kube/kubeconfig.js";

const group = "accessfabric.io";
const version = "v1alpha1";

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

async function queueDepth(metricsUrl: string): Promise<number> {
  const text = await (await fetch(metricsUrl)).text();
  const line = text.split("\n").find((l) => l.startsWith('workqueue_depth{name="nodegroup"}'));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { groups: { type: "string", default: "5000" }, clusters: { type: "string", default: "4" }, concurrency: { type: "string", default: "32" }, workers: { type: "string", default: "8" } },
  });
  const total = Number(values.groups);
  const nClusters = Number(values.clusters);
  const concurrency = Number(values.concurrency);
  process.env.FABRIC_LOG_LEVEL ??= "warn";
  const stateDir = tempStateDir("fabric-bench-");
  const cp = await runControlPlane({
    stateDir,
    host: "127.0.0.1",
    port: 0,
    metricsPort: 0,
    fsync: true,
    log: logger("bench"),
    controllers: { identity: "bench", workers: { nodeGroup: Number(values.workers) } },
  });
  try {
    const kc = loadKubeConfig(cp.api.kubeconfigPath);
    const api = kc.makeApiClient(CustomObjectsApi);

    const clusters = Array.from({ length: nClusters }, (_, i) => `bench-${i}`);
    const sent = new Map<string, number>();
    const readyAt = new Map<string, number>();
    const clusterReady = new Set<string>();
    const watch = new Watch(kc);
    const onEvent = (set: (name: string) => void) => (_type: string, obj: { metadata?: { name?: string; generation?: number }; status?: { conditions?: Array<{ type: string; status: string; observedGeneration?: number }> } }) => {
      const name = obj.metadata?.name;
      if (name === undefined) return;
      if (obj.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True")) set(name);
    };
    const w1 = await watch.watch(`/apis/${group}/${version}/nodegroups`, {}, onEvent((n) => { if (!readyAt.has(n)) readyAt.set(n, performance.now()); }), () => undefined);
    const w2 = await watch.watch(`/apis/${group}/${version}/fabricclusters`, {}, onEvent((n) => clusterReady.add(n)), () => undefined);
    for (const c of clusters) {
      await api.createClusterCustomObject({ group, version, plural: "fabricclusters", body: { apiVersion: `${group}/${version}`, kind: "FabricCluster", metadata: { name: c }, spec: {} } });
    }
    while (clusterReady.size < nClusters) await new Promise((r) => setTimeout(r, 50));

    // A tree per cluster: a root, then each group under an earlier group of its cluster (depth grows slowly).
    const specs = Array.from({ length: total }, (_, i) => {
      const cluster = clusters[i % nClusters] ?? "bench-0";
      const idx = Math.floor(i / nClusters);
      const parent = idx === 0 ? undefined : `${cluster}-g${Math.floor((idx - 1) / 8)}`;
      return { name: `${cluster}-g${idx}`, cluster, parent };
    });
    const samples: Array<{ t: number; depth: number; ready: number }> = [];
    const t0 = performance.now();
    const sampler = setInterval(() => {
      void queueDepth(cp.metricsUrl).then((depth) => samples.push({ t: (performance.now() - t0) / 1000, depth, ready: readyAt.size }));
    }, 1000);
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        for (let i = next++; i < specs.length; i = next++) {
          const s = specs[i];
          if (s === undefined) continue;
          sent.set(s.name, performance.now());
          await api.createClusterCustomObject({
            group,
            version,
            plural: "nodegroups",
            body: { apiVersion: `${group}/${version}`, kind: "NodeGroup", metadata: { name: s.name }, spec: { cluster: s.cluster, ...(s.parent ? { parent: s.parent } : {}) } },
          });
        }
      }),
    );
    const createdAt = performance.now();
    while (readyAt.size < total) await new Promise((r) => setTimeout(r, 20));
    const done = performance.now();
    clearInterval(sampler);
    w1.abort();
    w2.abort();

    const lat = specs.map((s) => (readyAt.get(s.name) ?? NaN) - (sent.get(s.name) ?? NaN)).sort((a, b) => a - b);
    const seconds = (done - t0) / 1000;
    const out = {
      groups: total,
      clusters: nClusters,
      concurrency,
      workers: Number(values.workers),
      fsync: true,
      createSeconds: +((createdAt - t0) / 1000).toFixed(2),
      allReadySeconds: +seconds.toFixed(2),
      objectsPerSecond: +(total / seconds).toFixed(1),
      latencyMs: { p50: Math.round(percentile(lat, 50)), p90: Math.round(percentile(lat, 90)), p99: Math.round(percentile(lat, 99)), max: Math.round(lat[lat.length - 1] ?? NaN) },
      queueDepthSamples: samples.map((s) => `${s.t.toFixed(0)}s:${s.depth}(${s.ready} ready)`).join(" "),
    };
    process.stdout.write(JSON.stringify(out, null, 2) + "\n");
  } finally {
    await cp.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${String(err)}\n`);
  process.exit(1);
});
