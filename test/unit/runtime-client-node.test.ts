/**
 * The runtime's client-node paths against a minimal local HTTP server that
 * speaks the few kube-apiserver endpoints involved: proves request shapes
 * (paths, query, Content-Type, bodies) without the real API server.
 */
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { CoordinationV1Api, CustomObjectsApi, KubeConfig, type KubernetesObject } from "@kubernetes/client-node";
import { patchStatusIfChanged } from "../../controllers/runtime/conditions.js";
import { flushMicrotasks } from "../../controllers/runtime/clock.js";
import { Informer } from "../../controllers/runtime/informer.js";
import { kubeLeaseClient } from "../../controllers/runtime/leader-election.js";
import { customResourceSource, type WatchEvent } from "../../controllers/runtime/source.js";

interface Seen {
  method: string;
  url: URL;
  contentType: string | undefined;
  body: unknown;
}

type Handler = (req: Seen, res: ServerResponse) => void;

async function withServer(handler: Handler, fn: (kc: KubeConfig, seen: Seen[]) => Promise<void>): Promise<void> {
  const seen: Seen[] = [];
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      const s: Seen = {
        method: req.method ?? "",
        url: new URL(req.url ?? "/", "http://localhost"),
        contentType: req.headers["content-type"],
        body: text === "" ? undefined : (JSON.parse(text) as unknown),
      };
      seen.push(s);
      handler(s, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "c", server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
    users: [{ name: "u", token: "t" }],
    contexts: [{ name: "x", cluster: "c", user: "u" }],
    currentContext: "x",
  });
  try {
    await fn(kc, seen);
  } finally {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
}

function json(res: ServerResponse, code: number, body: unknown): void {
  res.writeHead(code, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 5));
  }
}

const thing = (name: string, rv: string): KubernetesObject => ({
  apiVersion: "accessfabric.io/v1alpha1",
  kind: "Thing",
  metadata: { name, resourceVersion: rv },
});

describe("runtime over client-node", () => {
  it("patches status with a merge patch only when it changed", async () => {
    await withServer(
      (s, res) => json(res, 200, { metadata: { name: "a" }, status: {} }),
      async (kc, seen) => {
        const api = kc.makeApiClient(CustomObjectsApi);
        const target = { group: "accessfabric.io", version: "v1alpha1", plural: "things", name: "a" };
        assert.equal(await patchStatusIfChanged(api, target, { a: 1, b: { c: 2 } }, { b: { c: 2 }, a: 1 }), false);
        assert.equal(seen.length, 0);
        assert.equal(
          await patchStatusIfChanged(api, target, { a: 1, gone: true }, { a: 2 }, { resourceVersion: "7", fieldManager: "fabric" }),
          true,
        );
        const req = seen[0];
        assert.ok(req);
        assert.equal(req.method, "PATCH");
        assert.equal(req.url.pathname, "/apis/accessfabric.io/v1alpha1/things/a/status");
        assert.equal(req.contentType, "application/merge-patch+json");
        assert.equal(req.url.searchParams.get("fieldManager"), "fabric");
        assert.deepEqual(req.body, { status: { a: 2, gone: null }, metadata: { resourceVersion: "7" } });
        await patchStatusIfChanged(api, { ...target, namespace: "org" }, {}, { x: 1 });
        assert.equal(seen[1]?.url.pathname, "/apis/accessfabric.io/v1alpha1/namespaces/org/things/a/status");
        assert.equal(seen[1]?.contentType, "application/merge-patch+json");
      },
    );
  });

  it("lists all pages and watches with bookmarks from the list's resourceVersion", async () => {
    let watchRes: ServerResponse | undefined;
    await withServer(
      (s, res) => {
        if (s.url.searchParams.get("watch") === "true") {
          res.writeHead(200, { "content-type": "application/json" });
          res.flushHeaders();
          watchRes = res;
          return;
        }
        if (s.url.searchParams.get("continue") === "p2") {
          json(res, 200, { metadata: { resourceVersion: "10" }, items: [thing("b", "9")] });
        } else {
          json(res, 200, { metadata: { resourceVersion: "10", continue: "p2" }, items: [thing("a", "8")] });
        }
      },
      async (kc, seen) => {
        const source = customResourceSource(kc, { group: "accessfabric.io", version: "v1alpha1", plural: "things" }, { pageSize: 1 });
        const listed = await source.list(new AbortController().signal);
        assert.deepEqual(listed.items.map((i) => i.metadata?.name), ["a", "b"]);
        assert.equal(listed.resourceVersion, "10");
        assert.equal(seen[0]?.url.searchParams.get("limit"), "1");

        const ac = new AbortController();
        const events: WatchEvent[] = [];
        const watching = source.watch({ resourceVersion: "10", allowWatchBookmarks: true, timeoutSeconds: 300, signal: ac.signal }, (e) =>
          events.push(e),
        );
        await until(() => watchRes !== undefined);
        const w = seen[seen.length - 1];
        assert.equal(w?.url.pathname, "/apis/accessfabric.io/v1alpha1/things");
        assert.equal(w?.url.searchParams.get("allowWatchBookmarks"), "true");
        assert.equal(w?.url.searchParams.get("resourceVersion"), "10");
        assert.equal(w?.url.searchParams.get("timeoutSeconds"), "300");
        watchRes?.write(JSON.stringify({ type: "ADDED", object: thing("c", "11") }) + "\n");
        watchRes?.write(JSON.stringify({ type: "BOOKMARK", object: { kind: "Thing", metadata: { resourceVersion: "12" } } }) + "\n");
        await until(() => events.length === 2);
        assert.deepEqual(events.map((e) => e.type), ["ADDED", "BOOKMARK"]);
        ac.abort();
        await watching;
      },
    );
  });

  it("rejects a watch answered with 410 Gone, carrying the status code", async () => {
    await withServer(
      (_s, res) => json(res, 410, { kind: "Status", code: 410, reason: "Expired" }),
      async (kc) => {
        const source = customResourceSource(kc, { group: "g", version: "v1", plural: "things" });
        await assert.rejects(
          source.watch({ resourceVersion: "1", allowWatchBookmarks: true, timeoutSeconds: 300, signal: new AbortController().signal }, () => undefined),
          (err: unknown) => (err as { statusCode?: number }).statusCode === 410,
        );
      },
    );
  });

  it("runs an Informer end to end: list, watch, 410 in the stream, relist with the deletion", async () => {
    let lists = 0;
    const streams: ServerResponse[] = [];
    await withServer(
      (s, res) => {
        if (s.url.searchParams.get("watch") === "true") {
          res.writeHead(200, { "content-type": "application/json" });
          res.flushHeaders();
          streams.push(res);
          return;
        }
        lists++;
        const items = lists === 1 ? [thing("a", "1"), thing("b", "2")] : [thing("a", "1")];
        json(res, 200, { metadata: { resourceVersion: lists === 1 ? "2" : "20" }, items });
      },
      async (kc) => {
        const informer = new Informer({
          name: "Thing",
          source: customResourceSource(kc, { group: "g", version: "v1", plural: "things" }),
          resyncPeriodMs: 0,
          backoffBaseMs: 10,
        });
        const deleted: string[] = [];
        informer.addHandlers({ onDelete: (o) => deleted.push(o.metadata?.name ?? "") });
        const ac = new AbortController();
        const running = informer.run(ac.signal);
        assert.equal(await informer.waitForSync(), true);
        await until(() => streams.length === 1);
        streams[0]?.write(JSON.stringify({ type: "ERROR", object: { kind: "Status", code: 410, reason: "Expired" } }) + "\n");
        await until(() => lists === 2 && streams.length === 2);
        assert.deepEqual(deleted, ["b"]);
        assert.equal(informer.lastResourceVersion(), "20");
        ac.abort();
        await running;
        await flushMicrotasks();
      },
    );
  });

  it("reads, creates and replaces a Lease with MicroTime timestamps and the resourceVersion precondition", async () => {
    await withServer(
      (s, res) => {
        if (s.method === "GET") json(res, 404, { kind: "Status", code: 404, reason: "NotFound" });
        else json(res, s.method === "POST" ? 201 : 200, s.body);
      },
      async (kc, seen) => {
        const lease = kubeLeaseClient(kc.makeApiClient(CoordinationV1Api), "fabric-system", "controlplane");
        assert.equal(await lease.get(), undefined);
        const t = new Date("2025-01-01T00:00:00.123Z");
        await lease.create({ holderIdentity: "a", leaseDurationSeconds: 15, acquireTime: t, renewTime: t, leaseTransitions: 0 });
        const post = seen[1];
        assert.equal(post?.method, "POST");
        assert.equal(post?.url.pathname, "/apis/coordination.k8s.io/v1/namespaces/fabric-system/leases");
        const spec = (post?.body as { spec: Record<string, unknown> }).spec;
        assert.equal(spec.renewTime, "2025-01-01T00:00:00.123000Z");
        assert.equal(spec.holderIdentity, "a");
        await lease.update({ holderIdentity: "b", renewTime: t }, "42");
        const put = seen[2];
        assert.equal(put?.method, "PUT");
        assert.equal(put?.url.pathname, "/apis/coordination.k8s.io/v1/namespaces/fabric-system/leases/controlplane");
        assert.equal((put?.body as { metadata: { resourceVersion: string } }).metadata.resourceVersion, "42");
      },
    );
  });
});
