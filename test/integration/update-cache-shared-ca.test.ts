/**
 * The update cache's refusal by cluster (agent/update/cache.ts) when two
 * clusters share a CA: a client certificate that chains to the cache's CA
 * passes the TLS handshake, so only the cluster the certificate names can
 * refuse it. A real cache server (UpdateCache, HTTPS with mutual TLS) of
 * node uc.cache holding a mirrored artifact, node certificates issued with
 * the production issuer from one CA for clusters uc and ux:
 *
 * - a node of uc downloads the artifact (200, the bytes);
 * - a node of ux gets 403 naming its cluster, also when its node name
 *   imitates one of uc (`uc.n2`), for a named digest, an unknown one, a
 *   Range request and HEAD; no byte is counted as served to it;
 * - the fetcher side refuses a cache of ux that carries the pinned key
 *   (UpdateCacheClient checks the cluster the certificate names).
 */
import assert from "node:assert/strict";
import { createHash, randomBytes, X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { CacheRefused, UpdateCacheClient } from "../../agent/update/cache-client.js";
import { UpdateCache } from "../../agent/update/cache.js";
import type { ArtifactClient } from "../../agent/update/fetch.js";
import { publicKeyFingerprint } from "../../lib/crypto/x509.js";
import { logger } from "../../lib/log.js";
import type { StatusReport } from "../../lib/agent-protocol.js";
import { eventually } from "../support/controlplane.js";
import { clusterCa, nodeCreds, type NodeCreds } from "../support/mesh-certs.js";
import { mtlsRequest, type MtlsAnswer } from "../support/mtls-request.js";

const CLUSTER = "uc";
const OTHER = "ux";

describe("update cache: a node of another cluster under the same CA is refused by cluster", function () {
  this.timeout(60_000);
  const ca = clusterCa("shared");
  const cacheCreds = nodeCreds(ca, CLUSTER, `${CLUSTER}.cache`);
  const bytes = randomBytes(64 * 1024);
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  const dirs: string[] = [];
  const caches: UpdateCache[] = [];
  let port = 0;

  /** An UpdateCache of `creds` whose control-plane client serves `bytes`; resolves with it and its endpoint once it listens. */
  async function startCache(cluster: string, creds: NodeCreds, artifacts: Array<{ sha256: string; length: number }>): Promise<{ cache: UpdateCache; endpoint: string }> {
    const dir = mkdtempSync(join(tmpdir(), "afst-uc-"));
    dirs.push(dir);
    const reports: StatusReport[] = [];
    const client: ArtifactClient = {
      async stream() {
        return Object.assign(Readable.from([bytes]), { statusCode: 200, headers: {} }) as unknown as IncomingMessage;
      },
    };
    const cache = new UpdateCache({
      dir,
      identity: { cluster, node: creds.node, caPem: ca.certPem, certPem: creds.certPem, keyPem: creds.keyPem },
      port: 0,
      host: "127.0.0.1",
      advertise: "127.0.0.1:0",
      client: async () => client,
      send: async (r) => {
        reports.push(r);
      },
      log: logger("test-update-cache"),
    });
    caches.push(cache);
    await cache.apply({ artifacts });
    const endpoint = await eventually(() => cache.endpoint, 10_000, 20);
    return { cache, endpoint };
  }

  function request(creds: NodeCreds, path: string, o: { method?: string; headers?: Record<string, string> } = {}): Promise<MtlsAnswer> {
    return mtlsRequest(port, { caPem: ca.certPem, certPem: creds.certPem, keyPem: creds.keyPem }, path, { ...o, timeoutMs: 10_000 });
  }


  let cache: UpdateCache | undefined;
  before(async () => {
    const started = await startCache(CLUSTER, cacheCreds, [{ sha256, length: bytes.length }]);
    cache = started.cache;
    port = Number(started.endpoint.split(":")[1]);
    // The mirror holds the artifact (downloaded through the fake control-plane client and verified).
    const n2 = nodeCreds(ca, CLUSTER, `${CLUSTER}.n2`);
    await eventually(async () => (await request(n2, `/v1/artifacts/${sha256}`, { method: "HEAD" })).status === 200, 10_000, 50);
  });
  after(async () => {
    for (const c of caches) await c.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("serves a node of its own cluster", async () => {
    const n2 = nodeCreds(ca, CLUSTER, `${CLUSTER}.n2`);
    const r = await request(n2, `/v1/artifacts/${sha256}`);
    assert.equal(r.status, 200, r.body.toString());
    assert.deepEqual(r.body, bytes);
  });

  it("refuses (403) a node of another cluster whose certificate chains to the same CA, whatever it asks", async () => {
    const served = new Map(cache?.servedBytes);
    for (const creds of [nodeCreds(ca, OTHER, `${OTHER}.f1`), nodeCreds(ca, OTHER, `${CLUSTER}.n2`)]) {
      const cases: Array<[string, { method?: string; headers?: Record<string, string> }]> = [
        [`/v1/artifacts/${sha256}`, {}],
        [`/v1/artifacts/${sha256}`, { headers: { Range: "bytes=0-9" } }],
        [`/v1/artifacts/${sha256}`, { method: "HEAD" }],
        [`/v1/artifacts/${"e".repeat(64)}`, {}],
        [`/v1/artifacts/%00`, {}],
      ];
      for (const [path, o] of cases) {
        const r = await request(creds, path, o);
        assert.equal(r.status, 403, `${creds.node} ${o.method ?? "GET"} ${path} ${JSON.stringify(o.headers ?? {})}: ${r.status} ${r.body.toString()}`);
        if (o.method !== "HEAD") assert.match(r.body.toString(), new RegExp(`client refused: a node of cluster ${OTHER}`));
      }
    }
    assert.deepEqual(new Map(cache?.servedBytes), served, "no byte served to the other cluster");
    // The cache keeps serving its own cluster.
    assert.equal((await request(nodeCreds(ca, CLUSTER, `${CLUSTER}.n1`), `/v1/artifacts/${sha256}`)).status, 200);
  });

  it("a fetcher refuses a cache of another cluster that carries the pinned key", async () => {
    const foreignCreds = nodeCreds(ca, OTHER, `${CLUSTER}.cache2`);
    const foreign = await startCache(OTHER, foreignCreds, [{ sha256, length: bytes.length }]);
    const n2 = nodeCreds(ca, CLUSTER, `${CLUSTER}.n2`);
    const pin = publicKeyFingerprint(new X509Certificate(foreignCreds.certPem).publicKey);
    const client = new UpdateCacheClient({ node: `${CLUSTER}.cache2`, endpoint: foreign.endpoint, certificateFingerprint: pin }, { cluster: CLUSTER, caPem: ca.certPem, certPem: n2.certPem, keyPem: n2.keyPem });
    try {
      await assert.rejects(client.stream(`/v1/artifacts/${sha256}`), (err: unknown) => !(err instanceof CacheRefused) && /names ux\/uc\.cache2, not uc\/uc\.cache2/.test(String(err)));
    } finally {
      client.close();
    }
  });
});
