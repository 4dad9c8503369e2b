/**
 * Benchmark child (not a benchmark itself): runs N agent downloads at once
 * with the agent's real code (agent/update/fetch.ts over mTLS, each node
 * with its own certificate and connection), so that the parent process,
 * which runs the control plane, measures only the control plane's CPU.
 * With `cache`, every download tries that update-cache node first
 * (agent/update/cache-client.ts, pinned) and counts the fallbacks to the
 * control plane. Reads its job as JSON on stdin, prints one JSON line with
 * the timings.
 */
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { AgentApiClient } from "../../agent/http/client.js";
import { UpdateCacheClient } from "../../agent/update/cache-client.js";
import { fetchArtifact } from "../../agent/update/fetch.js";

export interface DownloadJob {
  server: string;
  serverCaPem: string;
  nodes: Array<{ certPem: string; keyPem: string }>;
  artifact: { sha256: string; length: number };
  dir: string;
  /** An update-cache node to try first, and the cluster CA its certificate chains to. */
  cache?: { node: string; endpoint: string; certificateFingerprint: string; cluster: string; caPem: string };
}

const job = JSON.parse(readFileSync(0, "utf8")) as DownloadJob;
let fallbacks = 0;
const started = performance.now();
const perNode = await Promise.all(
  job.nodes.map(async (n, i) => {
    const client = new AgentApiClient(job.server, { ca: job.serverCaPem, cert: n.certPem, key: n.keyPem }, { maxSockets: 1 });
    const c = job.cache;
    const cache = c === undefined ? undefined : new UpdateCacheClient(c, { cluster: c.cluster, caPem: c.caPem, certPem: n.certPem, keyPem: n.keyPem });
    const t = performance.now();
    try {
      const dir = join(job.dir, `n${i}`);
      await fetchArtifact(client, job.artifact, dir, { timeoutMs: 120_000, caches: cache === undefined ? [] : [cache], onCacheFailure: () => fallbacks++ });
      rmSync(dir, { recursive: true, force: true });
      return performance.now() - t;
    } finally {
      client.close();
      cache?.close();
    }
  }),
);
process.stdout.write(`${JSON.stringify({ wallMs: performance.now() - started, perNodeMs: perNode, fallbacks })}\n`);
