/**
 * The API server's error middleware: an unexpected exception in a handler is
 * a logged 500 metav1.Status carrying the request's Audit-Id, counted in
 * apiserver_request_total by verb, resource and code; the server keeps serving.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import client from "prom-client";
import type { Logger, LogFields } from "../../lib/log.js";
import { OpenApiDocs } from "../../apiserver/discovery.js";
import { loadCrds, Registry } from "../../apiserver/registry.js";
import { ResourceHandler, type ResourceRequest } from "../../apiserver/rest/handler.js";
import { createApp } from "../../apiserver/server.js";
import type { Store } from "../../apiserver/store.js";
import type { WatchHub } from "../../apiserver/watch-hub.js";

/** A handler whose every request throws a plain (non-Status) error. */
class ThrowingHandler extends ResourceHandler {
  constructor() {
    super({} as Store, {} as WatchHub, { maxBodyBytes: 1024, bookmarkIntervalMs: 1000, watchTimeoutMs: 1000 });
  }
  override handle(_ctx: unknown, _req: ResourceRequest): Promise<void> {
    return Promise.reject(new TypeError("Cannot read properties of null (reading 'preconditions')"));
  }
}

/** A logger that records what it was told. */
function recordingLogger(lines: Array<{ level: string; msg: string; fields?: LogFields }>): Logger {
  const at = (level: string) => (msg: string, fields?: LogFields) => void lines.push({ level, msg, fields });
  const log: Logger = { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error"), with: () => log };
  return log;
}

describe("API server: unexpected errors", () => {
  let server: http.Server;
  let base: string;
  const metrics = new client.Registry();
  const lines: Array<{ level: string; msg: string; fields?: LogFields }> = [];

  before(async () => {
    const app = createApp({
      registry: new Registry(loadCrds()),
      handler: new ThrowingHandler(),
      openapi: new OpenApiDocs(),
      adminToken: "t",
      metrics,
      log: recordingLogger(lines),
      serverAddress: () => "127.0.0.1:0",
      ready: () => true,
    });
    server = http.createServer(app.callback());
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${String((server.address() as AddressInfo).port)}`;
  });

  after(() => new Promise<void>((r) => server.close(() => r())));

  it("answers a logged 500 Status naming the Audit-Id, counts it by verb, resource and code, and keeps serving", async () => {
    const res = await fetch(`${base}/api/v1/namespaces/default/configmaps/x`, { method: "DELETE", headers: { Authorization: "Bearer t" } });
    assert.equal(res.status, 500);
    const id = res.headers.get("audit-id") ?? "";
    assert.match(id, /^[0-9a-f-]{36}$/);
    const body = (await res.json()) as { kind: string; status: string; reason: string; code: number; message: string };
    assert.equal(body.kind, "Status");
    assert.equal(body.status, "Failure");
    assert.equal(body.reason, "InternalError");
    assert.equal(body.code, 500);
    assert.ok(body.message.includes(id), body.message);
    assert.doesNotMatch(body.message, /preconditions/, "internal details stay in the log");
    const logged = lines.find((l) => l.level === "error" && l.fields?.auditId === id);
    assert.ok(logged, JSON.stringify(lines));

    const text = await metrics.metrics();
    assert.match(text, /apiserver_request_total\{verb="DELETE",resource="configmaps",code="500"\} 1/);

    const health = await fetch(`${base}/healthz`);
    assert.equal(health.status, 200);
  });
});
