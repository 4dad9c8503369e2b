/**
 * The one streamed GET of artifact downloads (streamGet, agent/http/client.ts)
 * as its two clients use it, against a real local HTTPS server with mutual
 * TLS: the update cache's client (agent/update/cache-client.ts) turns any
 * non-2xx answer into CacheRefused and caps its idle timeout at 5 s whatever
 * the caller asks; the agent API client turns it into AgentApiRequestError
 * from the JSON problem body (Retry-After kept). A refusal with a large body
 * still rejects (only its start is kept).
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { AgentApiClient, AgentApiRequestError, RequestTimeoutError } from "../../agent/http/client.js";
import { CacheRefused, UpdateCacheClient } from "../../agent/update/cache-client.js";
import { createCertificateAuthority, issueServingCertificate } from "../../lib/crypto/pki.js";
import { publicKeyFingerprint } from "../../lib/crypto/x509.js";
import { clusterCa, nodeCreds } from "../support/mesh-certs.js";

const CLUSTER = "uc";

async function readAll(res: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe("artifact stream clients (streamGet): refusals and timeouts", function () {
  this.timeout(30_000);
  const ca = clusterCa(CLUSTER);
  const serverCreds = nodeCreds(ca, CLUSTER, `${CLUSTER}.cache`);
  const clientCreds = nodeCreds(ca, CLUSTER, `${CLUSTER}.n1`);
  // The agent API side: a serving certificate for 127.0.0.1 from its own CA.
  const apiCa = createCertificateAuthority("test agent api CA");
  const apiServing = issueServingCertificate(apiCa, "agent api", [], ["127.0.0.1"]);
  const hanging = new Set<ServerResponse>();
  const servers: https.Server[] = [];
  let endpoint = "";
  let apiEndpoint = "";

  function handle(req: IncomingMessage, res: ServerResponse): void {
      if (req.url === "/ok") res.end("the bytes");
      else if (req.url === "/missing") {
        res.statusCode = 404;
        res.end("this cache does not hold that artifact\n");
      } else if (req.url === "/big-refusal") {
        res.statusCode = 503;
        res.end(Buffer.alloc(1024 * 1024, 0x61));
      } else if (req.url === "/problem") {
        res.statusCode = 429;
        res.setHeader("Content-Type", "application/json");
        res.setHeader("Retry-After", "7");
        res.end(JSON.stringify({ error: { code: "TooManyRequests", message: "slow down" } }));
      } else hanging.add(res);
  }
  async function listen(o: https.ServerOptions): Promise<string> {
    const server = https.createServer(o, handle);
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return `127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  before(async () => {
    endpoint = await listen({ key: serverCreds.keyPem, cert: serverCreds.certPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: true });
    apiEndpoint = await listen({ key: apiServing.keyPem, cert: apiServing.certPem });
  });
  after(async () => {
    for (const r of hanging) r.destroy();
    for (const s of servers) {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
  });

  const cacheClient = (): UpdateCacheClient =>
    new UpdateCacheClient(
      { node: `${CLUSTER}.cache`, endpoint, certificateFingerprint: publicKeyFingerprint(new X509Certificate(serverCreds.certPem).publicKey) },
      { cluster: CLUSTER, caPem: ca.certPem, certPem: clientCreds.certPem, keyPem: clientCreds.keyPem },
    );
  const apiClient = (): AgentApiClient => new AgentApiClient(`https://${apiEndpoint}`, { ca: apiCa.certPem }, { maxSockets: 1 });

  it("the cache client streams a 2xx and refuses any other status with CacheRefused, also with a large body", async () => {
    const c = cacheClient();
    try {
      assert.equal((await readAll(await c.stream("/ok"))).toString(), "the bytes");
      await assert.rejects(c.stream("/missing"), (e: unknown) => e instanceof CacheRefused && e.status === 404 && e.message === `update cache ${CLUSTER}.cache answered 404`);
      await assert.rejects(c.stream("/big-refusal"), (e: unknown) => e instanceof CacheRefused && e.status === 503);
    } finally {
      c.close();
    }
  });

  it("the cache client's idle timeout is the caller's when shorter, and capped at 5 s when longer", async () => {
    const c = cacheClient();
    try {
      await assert.rejects(c.stream("/hang", {}, { timeoutMs: 200, what: "artifact download" }), (e: unknown) => e instanceof RequestTimeoutError && e.timeoutMs === 200 && e.message === `artifact download from update cache ${CLUSTER}.cache timed out`);
      await assert.rejects(c.stream("/hang", {}, { timeoutMs: 60_000 }), (e: unknown) => e instanceof RequestTimeoutError && e.timeoutMs === 5000);
    } finally {
      c.close();
    }
  });

  it("the agent API client refuses a non-2xx stream with AgentApiRequestError from the problem body", async () => {
    const c = apiClient();
    try {
      await assert.rejects(c.stream("/problem"), (e: unknown) => e instanceof AgentApiRequestError && e.status === 429 && e.code === "TooManyRequests" && e.message === "slow down" && e.retryAfterSeconds === 7);
      await assert.rejects(c.stream("/missing"), (e: unknown) => e instanceof AgentApiRequestError && e.status === 404 && e.code === "Http404" && /does not hold/.test(e.message));
      await assert.rejects(c.stream("/hang", {}, { timeoutMs: 200 }), (e: unknown) => e instanceof RequestTimeoutError && e.message === "agent api request timed out");
    } finally {
      c.close();
    }
  });
});
