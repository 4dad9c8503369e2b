/**
 * Benchmark child (not a benchmark itself): one update-cache node with the
 * agent's real code (agent/update/cache.ts): it mirrors the job's artifact
 * from the control plane over mTLS, then serves it on an ephemeral port.
 * Reads its job as JSON on stdin, prints one JSON line { port } once the
 * artifact is held; exits on SIGTERM. Its own process, so the parent can
 * read its CPU time from /proc.
 */
import { readFileSync } from "node:fs";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { AgentApiClient } from "../../agent/http/client.js";
import { UpdateCache } from "../../agent/update/cache.js";
import { logger } from "../../lib/log.js";

export interface CacheJob {
  server: string;
  serverCaPem: string;
  cluster: string;
  node: string;
  caPem: string;
  certPem: string;
  keyPem: string;
  artifact: { sha256: string; length: number };
  dir: string;
}

const job = JSON.parse(readFileSync(0, "utf8")) as CacheJob;
const cache = new UpdateCache({
  dir: job.dir,
  identity: { cluster: job.cluster, node: job.node, caPem: job.caPem, certPem: job.certPem, keyPem: job.keyPem },
  port: 0,
  host: "127.0.0.1",
  advertise: "127.0.0.1:0",
  client: async () => new AgentApiClient(job.server, { ca: job.serverCaPem, cert: job.certPem, key: job.keyPem }, { maxSockets: 1 }),
  send: async () => undefined,
  log: logger("bench-cache"),
});
await cache.apply({ artifacts: [job.artifact] });
while (cache.endpoint === undefined || (await stat(join(cache.store, job.artifact.sha256)).catch(() => undefined))?.size !== job.artifact.length) {
  await new Promise((r) => setTimeout(r, 100));
}
process.stdout.write(`${JSON.stringify({ port: Number(cache.endpoint.split(":").pop()) })}\n`);
process.on("SIGTERM", () => {
  void cache.stop().then(() => process.exit(0));
});
