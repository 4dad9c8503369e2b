/**
 * The agent's HTTPS client for the agent API (agent/http/client.ts) against
 * a real loopback HTTPS server with a pinned CA: how answers are decoded,
 * how failures are classified (an HTTP refusal is an AgentApiRequestError,
 * everything else is a transport failure the loops retry), the size limit
 * on bodies and the idle timeout; and the sync transport built on it
 * (agent/sync/transport.ts) turning an oversized snapshot into "oversized".
 */
import assert from "node:assert/strict";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { createEcCertificateAuthority, issueEcServingCertificate } from "../../lib/crypto/ec-certs.js";
import type { StoredIdentity } from "../../agent/enroll/identity-store.js";
import { AgentApiClient, AgentApiRequestError, InvalidJsonResponseError, RequestTimeoutError, ResponseTooLargeError } from "../../agent/http/client.js";
import { SyncTransport } from "../../agent/sync/transport.js";

type Handler = (req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse) => void;

describe("agent https client", function () {
  this.timeout(20_000);
  const ca = createEcCertificateAuthority("test agent api ca");
  const serving = issueEcServingCertificate(ca, "agent-api", ["localhost"], ["127.0.0.1"]);
  let server: https.Server;
  let base: string;
  let handler: Handler = (_req, res) => res.writeHead(404).end();
  const clients: { close(): void }[] = [];
  const client = (): AgentApiClient => {
    const c = new AgentApiClient(base, { ca: ca.certPem });
    clients.push(c);
    return c;
  };

  before(async () => {
    server = https.createServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => handler(req, res));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  it("decodes a JSON answer and returns a non-JSON one as text", async () => {
    handler = (req, res) => {
      if (req.url === "/json") res.writeHead(200, { "Content-Type": "application/json" }).end('{"a":1}');
      else res.writeHead(200, { "Content-Type": "application/x-pem-file" }).end("-----BEGIN CERTIFICATE-----");
    };
    assert.deepEqual((await client().request("GET", "/json")).body, { a: 1 });
    assert.equal((await client().request("GET", "/pem")).body, "-----BEGIN CERTIFICATE-----");
  });

  it("sends a JSON body with its headers", async () => {
    handler = (req, res) => {
      let t = "";
      req.on("data", (c: Buffer) => (t += c.toString()));
      req.on("end", () => res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify({ got: JSON.parse(t), type: req.headers["content-type"], extra: req.headers["x-extra"] })));
    };
    const r = await client().request<{ got: unknown; type: string; extra: string }>("POST", "/echo", { x: [1, 2] }, { "x-extra": "yes" });
    assert.deepEqual(r.body, { got: { x: [1, 2] }, type: "application/json", extra: "yes" });
  });

  it("turns a non-2xx answer into an AgentApiRequestError with the problem's code, message and Retry-After", async () => {
    handler = (req, res) => {
      if (req.url === "/problem") res.writeHead(429, { "Content-Type": "application/json", "Retry-After": "7" }).end('{"error":{"code":"RateLimited","message":"slow down"}}');
      else res.writeHead(502, { "Content-Type": "text/plain" }).end("bad gateway");
    };
    await assert.rejects(client().request("GET", "/problem"), (e: unknown) => e instanceof AgentApiRequestError && e.status === 429 && e.code === "RateLimited" && e.message === "slow down" && e.retryAfterSeconds === 7);
    await assert.rejects(client().request("GET", "/text"), (e: unknown) => e instanceof AgentApiRequestError && e.status === 502 && e.code === "Http502" && e.message === "bad gateway" && e.retryAfterSeconds === undefined);
  });

  it("rejects invalid JSON with a typed error that is not an HTTP refusal", async () => {
    handler = (_req, res) => res.writeHead(200, { "Content-Type": "text/plain" }).end("{not json");
    await assert.rejects(client().request("POST", "/x", {}, {}, { decode: "json" }), (e: unknown) => e instanceof InvalidJsonResponseError && !(e instanceof AgentApiRequestError) && e.message === "agent api answered with invalid JSON");
  });

  it("stops reading a body over its limit", async () => {
    handler = (_req, res) => {
      res.writeHead(200, { "Content-Type": "application/json" });
      res.write("[" + "0,".repeat(50_000));
      // Never ends by itself: only the limit ends the exchange.
    };
    await assert.rejects(client().request("GET", "/big", undefined, {}, { maxBytes: 10_000 }), (e: unknown) => e instanceof ResponseTooLargeError && e.received > 10_000 && e.limit === 10_000);
  });

  it("times out an idle exchange with the request's name and aborts on the signal", async () => {
    handler = () => undefined; // never answers
    await assert.rejects(client().request("GET", "/hang", undefined, {}, { timeoutMs: 200, what: "snapshot poll" }), (e: unknown) => e instanceof RequestTimeoutError && e.message === "snapshot poll timed out");
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    await assert.rejects(client().request("GET", "/hang", undefined, {}, { signal: ac.signal }), (e: unknown) => e instanceof Error && e.name === "AbortError");
  });

  it("passes a network failure through as Node's own error, not an HTTP refusal", async () => {
    const closed = new AgentApiClient("https://127.0.0.1:1", { ca: ca.certPem });
    clients.push(closed);
    await assert.rejects(closed.request("GET", "/"), (e: unknown) => !(e instanceof AgentApiRequestError) && (e as NodeJS.ErrnoException).code === "ECONNREFUSED");
  });

  it("refuses a server whose certificate the pinned CA did not issue", async () => {
    const other = createEcCertificateAuthority("another ca");
    const c = new AgentApiClient(base, { ca: other.certPem });
    clients.push(c);
    handler = (_req, res) => res.writeHead(200).end("{}");
    await assert.rejects(c.request("GET", "/"), (e: unknown) => !(e instanceof AgentApiRequestError) && e instanceof Error);
  });

  it("reports an oversized snapshot from the sync transport as oversized, not as an error", async () => {
    handler = (req, res) => {
      if (req.url?.startsWith("/v1/snapshot?after=3&wait=0") !== true) return void res.writeHead(404).end();
      res.writeHead(200, { "Content-Type": "application/json" });
      res.write(Buffer.alloc(64 * 1024, 0x20));
    };
    const identity = { info: { server: base }, serverCaPem: ca.certPem } as unknown as StoredIdentity;
    const t = new SyncTransport(identity);
    clients.push(t);
    const r = await t.pollSnapshot(3, 0, 4096, new AbortController().signal);
    assert.equal(r.kind, "oversized");
    assert.ok(r.kind === "oversized" && r.received > 4096);
  });
});
