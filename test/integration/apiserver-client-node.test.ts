/**
 * The embedded API server driven by @kubernetes/client-node: optimistic
 * concurrency, watch resumption and 410 Gone, and clean answers to bad input.
 */
import assert from "node:assert/strict";
import https from "node:https";
import * as k8s from "@kubernetes/client-node";
import { eventually, startTestControlPlane, type TestControlPlane } from "../support/controlplane.js";

const group = "accessfabric.io";
const version = "v1alpha1";
const plural = "nodegroups";

interface NodeGroup {
  apiVersion: string;
  kind: string;
  metadata: { name: string; resourceVersion?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: { cluster: string; description?: string };
}

function ng(name: string, description?: string): NodeGroup {
  return { apiVersion: `${group}/${version}`, kind: "NodeGroup", metadata: { name }, spec: { cluster: "cn", ...(description ? { description } : {}) } };
}

function codeOf(err: unknown): number | undefined {
  return err instanceof k8s.ApiException ? err.code : undefined;
}

/** Raw HTTPS request against the API server with or without the admin token. */
function raw(t: TestControlPlane, method: string, path: string, body?: Buffer | string, headers: Record<string, string> = {}, auth = true): Promise<{ status: number; body: string }> {
  const url = new URL(t.cp.api.url);
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: url.hostname,
        port: url.port,
        method,
        path,
        ca: t.cp.api.caPem,
        headers: { ...(auth ? { Authorization: `Bearer ${t.cp.api.adminToken}` } : {}), ...headers },
      },
      (res) => {
        let data = "";
        res.on("data", (c: Buffer) => (data += c.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: data }));
      },
    );
    req.on("error", reject);
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

describe("API server with client-node", function () {
  this.timeout(120_000);
  let t: TestControlPlane;
  let api: k8s.CustomObjectsApi;

  before(async () => {
    t = await startTestControlPlane({ watchHistoryEvents: 5, compactIntervalMs: 3_600_000, bookmarkIntervalMs: 500 });
    api = t.kc.makeApiClient(k8s.CustomObjectsApi);
  });
  after(async () => {
    await t?.stop();
  });

  it("answers a stale update with 409 Conflict", async () => {
    const created = (await api.createClusterCustomObject({ group, version, plural, body: ng("stale-a") })) as NodeGroup;
    const first = { ...created, spec: { ...created.spec, description: "one" } };
    await api.replaceClusterCustomObject({ group, version, plural, name: "stale-a", body: first });
    const stale = { ...created, spec: { ...created.spec, description: "two" } };
    await assert.rejects(api.replaceClusterCustomObject({ group, version, plural, name: "stale-a", body: stale }), (err: unknown) => {
      assert.equal(codeOf(err), 409);
      assert.match(String((err as k8s.ApiException<unknown>).body), /the object has been modified/);
      return true;
    });
    const now = (await api.getClusterCustomObject({ group, version, plural, name: "stale-a" })) as NodeGroup;
    assert.equal(now.spec.description, "one");
  });

  it("never loses a write under concurrent read-modify-write with retries", async () => {
    await api.createClusterCustomObject({ group, version, plural, body: { ...ng("counter"), metadata: { name: "counter", annotations: { count: "0" } } } });
    const writers = 8;
    const perWriter = 10;
    let conflicts = 0;
    const incr = async () => {
      for (;;) {
        const cur = (await api.getClusterCustomObject({ group, version, plural, name: "counter" })) as NodeGroup;
        const n = Number(cur.metadata.annotations?.count ?? "0");
        cur.metadata.annotations = { ...cur.metadata.annotations, count: String(n + 1) };
        try {
          await api.replaceClusterCustomObject({ group, version, plural, name: "counter", body: cur });
          return;
        } catch (err) {
          if (codeOf(err) !== 409) throw err;
          conflicts++;
        }
      }
    };
    await Promise.all(Array.from({ length: writers }, async () => {
      for (let i = 0; i < perWriter; i++) await incr();
    }));
    const final = (await api.getClusterCustomObject({ group, version, plural, name: "counter" })) as NodeGroup;
    assert.equal(final.metadata.annotations?.count, String(writers * perWriter));
    assert.ok(conflicts > 0, "the test did not exercise any conflict");
  });

  it("answers a watch from a compacted resourceVersion with 410 Gone; an informer recovers by relisting", async () => {
    const first = (await api.createClusterCustomObject({ group, version, plural, body: ng("old-rv") })) as NodeGroup;
    const oldRv = first.metadata.resourceVersion ?? "";
    for (let i = 0; i < 10; i++) await api.createClusterCustomObject({ group, version, plural, body: ng(`filler-${i}`) });
    await t.cp.api.compact(5, 3600);

    // A raw watch from the compacted revision gets an ERROR event carrying a 410 Status.
    const watch = new k8s.Watch(t.kc);
    const events: Array<{ type: string; obj: { code?: number; reason?: string } }> = [];
    const done = new Promise<void>((resolve) => {
      void watch.watch(`/apis/${group}/${version}/${plural}`, { resourceVersion: oldRv }, (type, obj: { code?: number; reason?: string }) => events.push({ type, obj }), () => resolve());
    });
    await done;
    assert.equal(events[0]?.type, "ERROR");
    assert.equal(events[0]?.obj.code, 410);
    assert.equal(events[0]?.obj.reason, "Expired");

    // client-node's informer relists on 410 and keeps delivering.
    const listFn = () => api.listClusterCustomObject({ group, version, plural }) as Promise<k8s.KubernetesListObject<k8s.KubernetesObject>>;
    const informer = k8s.makeInformer(t.kc, `/apis/${group}/${version}/${plural}`, listFn);
    const seen = new Set<string>();
    informer.on("add", (o) => seen.add(o.metadata?.name ?? ""));
    informer.on("update", (o) => seen.add(o.metadata?.name ?? ""));
    await informer.start();
    try {
      await eventually(() => seen.has("filler-9"));
      await api.createClusterCustomObject({ group, version, plural, body: ng("after-informer") });
      await eventually(() => seen.has("after-informer"));
    } finally {
      await informer.stop();
    }
  });

  it("sends bookmarks when asked", async () => {
    const watch = new k8s.Watch(t.kc);
    const types: string[] = [];
    const list = (await api.listClusterCustomObject({ group, version, plural })) as { metadata: { resourceVersion: string } };
    const req = await watch.watch(`/apis/${group}/${version}/${plural}`, { resourceVersion: list.metadata.resourceVersion, allowWatchBookmarks: true }, (type) => types.push(type), () => undefined);
    try {
      await eventually(() => types.includes("BOOKMARK"), 5000);
    } finally {
      req.abort();
    }
  });

  it("refuses requests without the admin credential with 401", async () => {
    const r = await raw(t, "GET", `/apis/${group}/${version}/${plural}`, undefined, {}, false);
    assert.equal(r.status, 401);
    assert.equal((JSON.parse(r.body) as { reason: string }).reason, "Unauthorized");
    const wrong = await raw(t, "GET", `/apis/${group}/${version}/${plural}`, undefined, { Authorization: "Bearer nope" }, false);
    assert.equal(wrong.status, 401);
  });

  it("answers malformed, oversized and unknown-field bodies with clean 4xx and stores nothing", async () => {
    const path = `/apis/${group}/${version}/${plural}`;
    const bad = await raw(t, "POST", path, "{not json", { "Content-Type": "application/json" });
    assert.equal(bad.status, 400);
    assert.equal((JSON.parse(bad.body) as { kind: string }).kind, "Status");
    const badYaml = await raw(t, "POST", path, "a: [b\n", { "Content-Type": "application/yaml" });
    assert.equal(badYaml.status, 400);
    const big = Buffer.alloc(4 * 1024 * 1024, 0x20);
    const tooBig = await raw(t, "POST", path, big, { "Content-Type": "application/json" });
    assert.equal(tooBig.status, 413);
    const unknown = await raw(t, "POST", `${path}?fieldValidation=Strict`, JSON.stringify({ ...ng("unknown-a"), spec: { cluster: "cn", nope: true } }), { "Content-Type": "application/json" });
    assert.equal(unknown.status, 400);
    assert.match(unknown.body, /unknown field \\"spec.nope\\"/);
    const invalid = await raw(t, "POST", path, JSON.stringify({ ...ng("Invalid_Name") }), { "Content-Type": "application/json" });
    assert.equal(invalid.status, 422);
    const causes = (JSON.parse(invalid.body) as { details: { causes: Array<{ field: string }> } }).details.causes;
    assert.ok(causes.some((c) => c.field === "metadata.name"));
    const patchBad = await raw(t, "PATCH", `${path}/stale-a`, "[{]", { "Content-Type": "application/json-patch+json" });
    assert.equal(patchBad.status, 400);
    const list = (await api.listClusterCustomObject({ group, version, plural })) as { items: NodeGroup[] };
    assert.ok(!list.items.some((i) => i.metadata.name === "unknown-a" || i.metadata.name === "Invalid_Name"));
    // Still serving.
    const health = await raw(t, "GET", "/readyz");
    assert.equal(health.status, 200);
  });

  it("serves JSON patch, merge patch and the /status subresource with kube semantics", async () => {
    await api.createClusterCustomObject({ group, version, plural, body: ng("status-a") });
    const withStatus = await raw(t, "PATCH", `/apis/${group}/${version}/${plural}/status-a/status`, JSON.stringify({ status: { memberCount: 3 }, spec: { description: "ignored" } }), { "Content-Type": "application/merge-patch+json" });
    assert.equal(withStatus.status, 200, withStatus.body);
    const afterStatus = (await api.getClusterCustomObject({ group, version, plural, name: "status-a" })) as NodeGroup & { status?: { memberCount?: number }; metadata: { generation?: number } };
    assert.equal(afterStatus.status?.memberCount, 3);
    assert.equal(afterStatus.spec.description, undefined, "spec changed through /status");
    assert.equal(afterStatus.metadata.generation, 1, "status write bumped generation");
    const main = await raw(t, "PATCH", `/apis/${group}/${version}/${plural}/status-a`, JSON.stringify([{ op: "add", path: "/spec/description", value: "via json patch" }, { op: "add", path: "/status", value: { memberCount: 99 } }]), { "Content-Type": "application/json-patch+json" });
    assert.equal(main.status, 200, main.body);
    const afterMain = (await api.getClusterCustomObject({ group, version, plural, name: "status-a" })) as NodeGroup & { status?: { memberCount?: number }; metadata: { generation?: number } };
    assert.equal(afterMain.spec.description, "via json patch");
    assert.equal(afterMain.status?.memberCount, 3, "status changed through the main resource");
    assert.equal(afterMain.metadata.generation, 2);
  });

  it("exposes request metrics by verb, resource and code, and the watch count; /healthz and /readyz answer", async () => {
    for (const path of ["/healthz", "/readyz"]) {
      const r = await raw(t, "GET", path);
      assert.equal(r.status, 200, `${path}: ${r.body}`);
      assert.equal(r.body.trim(), "ok");
    }
    await api.listClusterCustomObject({ group, version, plural });
    const watch = new k8s.Watch(t.kc);
    const req = await watch.watch(`/apis/${group}/${version}/${plural}`, {}, () => undefined, () => undefined);
    try {
      const body = await eventually(async () => {
        const text = await (await fetch(t.cp.metricsUrl)).text();
        return /apiserver_registered_watchers [1-9]/.test(text) ? text : undefined;
      }, 10_000);
      assert.match(body, /apiserver_request_total\{verb="LIST",resource="nodegroups",code="200"\} [1-9]/);
      assert.match(body, /apiserver_request_total\{verb="POST",resource="nodegroups",code="201"\}/);
      assert.match(body, /apiserver_request_duration_seconds_bucket\{le="[0-9.]+",verb="GET",resource="nodegroups"\}/);
    } finally {
      req.abort();
    }
  });

  it("/readyz answers 503 once PostgreSQL is gone, while /healthz stays 200", async () => {
    // Last in this file: it stops the database under the control plane.
    assert.equal((await raw(t, "GET", "/readyz")).status, 200);
    await t.cp.db.close();
    await eventually(async () => (await raw(t, "GET", "/readyz")).status === 503, 20_000);
    assert.equal((await raw(t, "GET", "/readyz")).body.trim(), "not ready");
    assert.equal((await raw(t, "GET", "/healthz")).status, 200);
  });
});
