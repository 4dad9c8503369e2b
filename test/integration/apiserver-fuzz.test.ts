/**
 * A seeded fuzz of the API server: at least 10,000 generated requests, most
 * of them hostile (see test/support/fuzz/), against the real shared control
 * plane over HTTP/1.1 keep-alive with a few in flight. The server must never
 * answer 5xx, must stay ready and usable, and must have stored only objects
 * that are valid against their schema and kube's ObjectMeta rules.
 *
 * FABRIC_FUZZ_SEED picks another seed (the default is fixed, so CI runs the
 * same requests every time); FABRIC_FUZZ_REQUESTS another count;
 * FABRIC_FUZZ_REPORT a file to write every server error to (JSON lines).
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import https from "node:https";
import { sharedControlPlane, type TestControlPlane } from "../support/controlplane.js";
import { describeRequest, isTooLargeResourceVersion, runRequests, type FuzzResult } from "../support/fuzz/client.js";
import { fuzzLabel, RequestGenerator, type FuzzRequest } from "../support/fuzz/requests.js";
import { Rng } from "../support/fuzz/rng.js";
import { fuzzResources } from "../support/fuzz/seeds.js";
import { servedResources, storedObjectProblems } from "../support/fuzz/stored-objects.js";
import type { ResourceDefinition } from "../../lib/api/schemas.js";

const DEFAULT_SEED = 1_013;
const seed = process.env.FABRIC_FUZZ_SEED ? Number.parseInt(process.env.FABRIC_FUZZ_SEED, 10) : DEFAULT_SEED;
const count = process.env.FABRIC_FUZZ_REQUESTS ? Number.parseInt(process.env.FABRIC_FUZZ_REQUESTS, 10) : 10_000;
/** Requests in flight: a few, so the loaded 2-core CI machine finishes well within the test's time. */
const CONCURRENCY = 4;
/** Watches held open besides them: a watch mostly waits for its deadline, so it does not take one of the 4. */
const STREAMS = 8;

/** A plain JSON request to the API server, outside the fuzz (set-up, checks and clean-up). */
async function call(cp: TestControlPlane, method: string, path: string, body?: unknown, contentType = "application/json"): Promise<{ status: number; body: unknown }> {
  const { url, adminToken, caPem } = cp.cp.api;
  const u = new URL(path, url);
  const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = https.request(
      u,
      { method, ca: caPem, headers: { authorization: `Bearer ${adminToken}`, accept: "application/json", ...(data ? { "content-type": contentType, "content-length": data.length } : {}) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // Not JSON (e.g. /readyz).
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      },
    );
    req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${path}: timeout`)));
    req.on("error", reject);
    req.end(data);
  });
}

function collectionOf(def: ResourceDefinition): string {
  return def.group === "" ? `/api/${def.version}/${def.plural}` : `/apis/${def.group}/${def.version}/${def.plural}`;
}

interface Stored {
  def: ResourceDefinition;
  object: { metadata?: { name?: unknown; namespace?: unknown; finalizers?: unknown } };
}

/** Every stored object of every served resource, and the lists that failed. */
async function listEverything(cp: TestControlPlane): Promise<{ objects: Stored[]; failures: string[] }> {
  const objects: Stored[] = [];
  const failures: string[] = [];
  for (const def of servedResources()) {
    const res = await call(cp, "GET", collectionOf(def));
    const items = (res.body as { items?: unknown }).items;
    if (res.status !== 200 || !Array.isArray(items)) {
      failures.push(`GET ${collectionOf(def)} answered ${res.status}: ${JSON.stringify(res.body).slice(0, 300)}`);
      continue;
    }
    for (const object of items) objects.push({ def, object: object as Stored["object"] });
  }
  return { objects, failures };
}

function keyOf(s: Stored): string {
  return `${s.def.group}/${s.def.plural}/${String(s.object.metadata?.namespace ?? "")}/${String(s.object.metadata?.name)}`;
}

function objectPath(s: Stored): string {
  const { def } = s;
  const ns = s.object.metadata?.namespace;
  const prefix = def.group === "" ? `/api/${def.version}` : `/apis/${def.group}/${def.version}`;
  const name = encodeURIComponent(String(s.object.metadata?.name));
  return def.scope === "Namespaced" && typeof ns === "string" ? `${prefix}/namespaces/${encodeURIComponent(ns)}/${def.plural}/${name}` : `${prefix}/${def.plural}/${name}`;
}

describe("API server: seeded fuzz", function () {
  this.timeout(240_000);

  const tag = (seed >>> 0).toString(36);
  const namespaces = [`fuzz-${tag}`, `fuzz-${tag}-b`];
  let cp: TestControlPlane;
  let existing = new Set<string>();
  const serverErrors: FuzzResult[] = [];
  const codes = new Map<number, number>();
  /** The last successful write of each object, so an invalid stored object comes with the request that stored it. */
  const lastWrite = new Map<string, FuzzRequest>();

  before(async () => {
    console.log(`      apiserver fuzz: seed ${seed}, ${count} requests, ${CONCURRENCY} in flight (and up to ${STREAMS} watches)`);
    console.log(`      rerun this seed: FABRIC_FUZZ_SEED=${seed} npx mocha test/integration/apiserver-fuzz.test.ts`);
    cp = await sharedControlPlane();
    existing = new Set((await listEverything(cp)).objects.map(keyOf));
    for (const name of namespaces) {
      const res = await call(cp, "POST", "/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name, labels: { [fuzzLabel]: tag } } });
      assert.equal(res.status, 201, `creating namespace ${name}: ${JSON.stringify(res.body)}`);
    }
  });

  after(async function () {
    this.timeout(120_000);
    if (cp === undefined) return;
    // Everything the run left: objects that were not there before it (their namespaces last).
    const { objects } = await listEverything(cp);
    const created = objects.filter((s) => !existing.has(keyOf(s)));
    const undeletable: string[] = [];
    for (const s of [...created.filter((c) => c.def.kind !== "Namespace"), ...created.filter((c) => c.def.kind === "Namespace")]) {
      const path = objectPath(s);
      if (Array.isArray(s.object.metadata?.finalizers) && s.def.kind !== "Namespace") {
        await call(cp, "PATCH", path, { metadata: { finalizers: null } }, "application/merge-patch+json").catch(() => undefined);
      }
      const res = await call(cp, "DELETE", path).catch((err: unknown) => ({ status: 0, body: String(err) }));
      if (res.status >= 300 && res.status !== 404) undeletable.push(`${path}: ${res.status}`);
    }
    if (undeletable.length > 0) console.log(`      fuzz clean-up could not delete ${undeletable.length} objects:\n        ${undeletable.slice(0, 20).join("\n        ")}`);
  });

  it(`answers ${count} generated requests without a single 5xx`, async () => {
    const started = Date.now();
    const gen = new RequestGenerator(new Rng(seed), fuzzResources(), tag, namespaces, cp.cp.api.adminToken);
    const next = (): FuzzRequest => gen.next();
    await runRequests({ url: cp.cp.api.url, caPem: cp.cp.api.caPem, concurrency: CONCURRENCY, streams: STREAMS, watchDeadlineMs: 1_500, timeoutMs: 30_000 }, count, next, (r) => {
      codes.set(r.status, (codes.get(r.status) ?? 0) + 1);
      if (r.status >= 200 && r.status < 300) {
        gen.observe(r.request.path, r.body);
        const meta = (r.body as { metadata?: { name?: unknown; namespace?: unknown } } | undefined)?.metadata;
        if (r.request.method !== "GET" && typeof meta?.name === "string") lastWrite.set(`${r.request.classes[1] ?? ""}|${String(meta.namespace ?? "")}|${meta.name}`, r.request);
      }
      const contract = r.status === 504 && isTooLargeResourceVersion(r.body);
      if ((r.status >= 500 && !contract) || r.status === 0 || (r.streamErrorCode ?? 0) >= 500) serverErrors.push(r);
    });
    if (process.env.FABRIC_FUZZ_REPORT) {
      const lines = serverErrors.map((r) => JSON.stringify({ status: r.status, streamErrorCode: r.streamErrorCode, error: r.error, ...r.request, body: r.request.body?.toString("base64") }));
      writeFileSync(process.env.FABRIC_FUZZ_REPORT, lines.join("\n") + "\n");
    }
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    const summary = [...codes.entries()].sort(([a], [b]) => a - b).map(([c, n]) => `${c}:${n}`).join(" ");
    console.log(`      ${count} requests in ${seconds} s; status codes ${summary}`);
    const report = serverErrors
      .slice(0, 50)
      .map((r) => `--- ${r.status === 0 ? `no response (${r.error ?? "?"})` : r.streamErrorCode ? `watch ERROR event ${r.streamErrorCode}` : `HTTP ${r.status}`}\n${describeRequest(r.request)}\n  response: ${JSON.stringify(r.body).slice(0, 300)}`)
      .join("\n");
    assert.equal(
      serverErrors.length,
      0,
      `${serverErrors.length} requests got a server error (seed ${seed}; first 50 below; rerun with FABRIC_FUZZ_SEED=${seed}):\n${report}`,
    );
  });

  it("is ready afterwards and serves a normal create and get", async () => {
    const ready = await call(cp, "GET", "/readyz");
    assert.equal(ready.status, 200, `/readyz: ${JSON.stringify(ready.body)}`);
    const ns = namespaces[0] ?? "default";
    const name = `after-fuzz-${tag}`;
    const created = await call(cp, "POST", `/api/v1/namespaces/${ns}/configmaps`, { apiVersion: "v1", kind: "ConfigMap", metadata: { name, labels: { [fuzzLabel]: tag } }, data: { ok: "yes" } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const got = await call(cp, "GET", `/api/v1/namespaces/${ns}/configmaps/${name}`);
    assert.equal(got.status, 200, JSON.stringify(got.body));
    assert.deepEqual((got.body as { data?: unknown }).data, { ok: "yes" });
  });

  it("stored only objects valid against their schema and the ObjectMeta rules", async () => {
    const { objects, failures } = await listEverything(cp);
    const problems = [...failures];
    for (const s of objects) {
      const found = storedObjectProblems(s.def, s.object);
      if (found.length === 0) continue;
      const ns = String(s.object.metadata?.namespace ?? "");
      const name = String(s.object.metadata?.name);
      const write = lastWrite.get(`${s.def.kind}|${ns}|${name}`);
      problems.push(`--- ${s.def.kind} ${JSON.stringify(ns)}/${JSON.stringify(name)}: ${found.join("; ")}${write ? `\n  last stored by:\n${describeRequest(write)}` : ""}`);
    }
    assert.equal(problems.length, 0, `${problems.length} stored objects are invalid (seed ${seed}; first 50 below):\n${problems.slice(0, 50).join("\n")}`);
  });
});
