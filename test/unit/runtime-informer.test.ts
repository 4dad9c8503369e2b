import assert from "node:assert/strict";
import type { KubernetesObject } from "@kubernetes/client-node";
import { Registry } from "prom-client";
import { FakeClock, flushMicrotasks } from "../../controllers/runtime/clock.js";
import { Informer, type DeleteInfo } from "../../controllers/runtime/informer.js";
import type { ListResult, ListWatchSource, WatchEvent, WatchRequest } from "../../controllers/runtime/source.js";

interface Obj extends KubernetesObject {
  spec?: { value: number };
}

function obj(name: string, rv: string, value = 0, namespace?: string): Obj {
  return { apiVersion: "v1", kind: "Thing", metadata: { name, namespace, resourceVersion: rv }, spec: { value } };
}

/** An open watch stream under test control. */
interface FakeStream {
  req: WatchRequest;
  emit(type: string, object: unknown): void;
  close(): void;
  fail(err: unknown): void;
  ended: boolean;
}

/** A scripted API server: list returns `objects`, each watch() opens a FakeStream. */
class FakeSource implements ListWatchSource<Obj> {
  objects = new Map<string, Obj>();
  listRV = "1";
  listCalls = 0;
  listErrors: unknown[] = [];
  watchErrors: unknown[] = [];
  streams: FakeStream[] = [];

  set(...objs: Obj[]): void {
    for (const o of objs) this.objects.set(o.metadata?.name ?? "", structuredClone(o));
  }

  async list(): Promise<ListResult<Obj>> {
    this.listCalls++;
    const err = this.listErrors.shift();
    if (err !== undefined) throw err;
    return { items: [...this.objects.values()].map((o) => structuredClone(o)), resourceVersion: this.listRV };
  }

  watch(req: WatchRequest, onEvent: (e: WatchEvent) => void): Promise<void> {
    const err = this.watchErrors.shift();
    if (err !== undefined) return Promise.reject(err);
    return new Promise((resolve, reject) => {
      const stream: FakeStream = {
        req,
        ended: false,
        emit: (type, object) => {
          if (!stream.ended) onEvent({ type, object: structuredClone(object) });
        },
        close: () => {
          stream.ended = true;
          resolve();
        },
        fail: (e) => {
          stream.ended = true;
          reject(e);
        },
      };
      req.signal.addEventListener("abort", () => stream.close(), { once: true });
      this.streams.push(stream);
    });
  }

  current(): FakeStream {
    const s = this.streams[this.streams.length - 1];
    if (s === undefined) throw new Error("no watch opened");
    return s;
  }
}

interface Recorded {
  events: string[];
  deletes: Array<{ name: string; info: DeleteInfo }>;
}

function setup(opts: { relistAfterSilentRestarts?: number; resyncPeriodMs?: number } = {}) {
  const clock = new FakeClock();
  const source = new FakeSource();
  const registry = new Registry();
  const informer = new Informer<Obj>({
    name: "Thing",
    source,
    clock,
    registry,
    random: () => 1,
    backoffBaseMs: 100,
    backoffMaxMs: 1000,
    silenceTimeoutMs: 30_000,
    resyncPeriodMs: opts.resyncPeriodMs ?? 0,
    relistAfterSilentRestarts: opts.relistAfterSilentRestarts ?? 3,
  });
  const rec: Recorded = { events: [], deletes: [] };
  informer.addHandlers({
    onAdd: (o) => rec.events.push(`add ${o.metadata?.name}@${o.metadata?.resourceVersion}`),
    onUpdate: (a, b) => rec.events.push(`update ${b.metadata?.name}@${a.metadata?.resourceVersion}->${b.metadata?.resourceVersion}`),
    onDelete: (o, info) => {
      rec.events.push(`delete ${o.metadata?.name}`);
      rec.deletes.push({ name: o.metadata?.name ?? "", info });
    },
  });
  const ac = new AbortController();
  let done = false;
  const start = async (): Promise<void> => {
    void informer.run(ac.signal).then(() => {
      done = true;
    });
    await flushMicrotasks();
  };
  return { clock, source, registry, informer, rec, ac, start, isDone: () => done };
}

async function metric(registry: Registry, pattern: RegExp): Promise<void> {
  assert.match(await registry.metrics(), pattern);
}

describe("runtime Informer", () => {
  it("lists, marks itself synced and delivers the initial objects as adds", async () => {
    const t = setup();
    t.source.set(obj("a", "1"), obj("b", "1", 0, "ns"));
    const synced = t.informer.waitForSync();
    assert.equal(t.informer.hasSynced(), false);
    await t.start();
    assert.equal(await synced, true);
    assert.deepEqual(t.rec.events.sort(), ["add a@1", "add b@1"]);
    assert.equal(t.informer.get({ name: "a" })?.metadata?.name, "a");
    assert.equal(t.informer.get({ namespace: "ns", name: "b" })?.metadata?.name, "b");
    assert.equal(t.informer.list("ns").length, 1);
    assert.equal(t.source.current().req.resourceVersion, "1");
    assert.equal(t.source.current().req.allowWatchBookmarks, true);
    t.ac.abort();
  });

  it("keysWhere gives the keys of the cached objects a filter accepts, with the namespace of namespaced ones", async () => {
    const t = setup();
    t.source.set(obj("a", "1", 1), obj("b", "1", 2, "ns"), obj("c", "1", 3));
    await t.start();
    const keys = t.informer.keysWhere((o) => (o.spec?.value ?? 0) >= 2);
    assert.deepEqual(keys.sort((x, y) => x.name.localeCompare(y.name)), [{ namespace: "ns", name: "b" }, { name: "c" }]);
    assert.deepEqual(t.informer.keysWhere(() => false), []);
    t.ac.abort();
  });

  it("hands out frozen objects that callers cannot mutate", async () => {
    const t = setup();
    t.source.set(obj("a", "1", 1));
    await t.start();
    const a = t.informer.get({ name: "a" });
    assert.ok(a?.spec);
    const spec = a.spec;
    assert.throws(() => {
      spec.value = 2;
    }, TypeError);
    assert.equal(t.informer.get({ name: "a" })?.spec?.value, 1);
    t.ac.abort();
  });

  it("applies watch events to the cache and tracks bookmark resourceVersions", async () => {
    const t = setup();
    t.source.set(obj("a", "1"));
    await t.start();
    const s = t.source.current();
    s.emit("ADDED", obj("b", "2"));
    s.emit("MODIFIED", obj("a", "3", 7));
    s.emit("DELETED", obj("b", "4"));
    s.emit("BOOKMARK", { kind: "Thing", metadata: { resourceVersion: "9" } });
    assert.deepEqual(t.rec.events, ["add a@1", "add b@2", "update a@1->3", "delete b"]);
    assert.deepEqual(t.rec.deletes[0]?.info, { finalStateUnknown: false });
    assert.equal(t.informer.get({ name: "a" })?.spec?.value, 7);
    assert.equal(t.informer.get({ name: "b" }), undefined);
    assert.equal(t.informer.lastResourceVersion(), "9");
    s.close();
    await flushMicrotasks();
    assert.equal(t.source.streams.length, 2, "a healthy stream that closed is reopened at once");
    assert.equal(t.source.current().req.resourceVersion, "9", "resumes from the bookmark");
    assert.equal(t.source.listCalls, 1);
    await metric(t.registry, /fabric_informer_events_total\{informer="Thing",type="BOOKMARK"\} 1/);
    await metric(t.registry, /fabric_informer_watch_restarts_total\{informer="Thing",reason="closed"\} 1/);
    t.ac.abort();
  });

  it("restarts a failed watch with exponential backoff from the last resourceVersion", async () => {
    const t = setup();
    await t.start();
    t.source.current().emit("ADDED", obj("a", "5"));
    t.source.current().fail(Object.assign(new Error("connection reset"), { code: "ECONNRESET" }));
    t.source.watchErrors.push(new Error("refused"), new Error("refused"));
    await flushMicrotasks();
    // random() = 1: delays are exactly base * 2^attempt: 100 (first failure after events), 200, 400.
    assert.equal(t.source.streams.length, 1);
    await t.clock.advance(99);
    assert.equal(t.source.watchErrors.length, 2);
    await t.clock.advance(1);
    assert.equal(t.source.watchErrors.length, 1, "second watch attempt after 100 ms");
    await t.clock.advance(199);
    assert.equal(t.source.watchErrors.length, 1);
    await t.clock.advance(1);
    assert.equal(t.source.watchErrors.length, 0, "third attempt after 200 ms more");
    await t.clock.advance(400);
    assert.equal(t.source.streams.length, 2, "fourth attempt after 400 ms more opens a stream");
    assert.equal(t.source.current().req.resourceVersion, "5");
    assert.equal(t.source.listCalls, 1, "no relist for ordinary errors");
    await metric(t.registry, /fabric_informer_watch_restarts_total\{informer="Thing",reason="error"\} 3/);
    t.ac.abort();
  });

  it("relists on a 410 ERROR event and delivers what changed while disconnected, deletions included", async () => {
    const t = setup();
    t.source.set(obj("keep", "1"), obj("change", "1"), obj("gone", "1"));
    await t.start();
    t.rec.events.length = 0;
    t.source.objects.delete("gone");
    t.source.set(obj("change", "7", 1), obj("new", "8"));
    t.source.listRV = "8";
    t.source.current().emit("ERROR", { kind: "Status", code: 410, reason: "Expired", message: "too old resource version" });
    await flushMicrotasks();
    assert.equal(t.source.listCalls, 2);
    assert.deepEqual(t.rec.events.sort(), ["add new@8", "delete gone", "update change@1->7"]);
    assert.deepEqual(t.rec.deletes, [{ name: "gone", info: { finalStateUnknown: true } }]);
    assert.deepEqual(t.informer.keys().sort(), ["change", "keep", "new"]);
    assert.equal(t.source.current().req.resourceVersion, "8");
    await metric(t.registry, /fabric_informer_relists_total\{informer="Thing"\} 2/);
    await metric(t.registry, /fabric_informer_watch_restarts_total\{informer="Thing",reason="gone"\} 1/);
    t.ac.abort();
  });

  it("relists when the watch request itself answers 410 Gone", async () => {
    const t = setup();
    await t.start();
    t.source.watchErrors.push(Object.assign(new Error("Gone"), { statusCode: 410 }));
    t.source.current().emit("ADDED", obj("a", "2"));
    t.source.current().close();
    await flushMicrotasks();
    assert.equal(t.source.listCalls, 2);
    t.ac.abort();
  });

  it("aborts a watch that goes silent and resumes it from the last resourceVersion", async () => {
    const t = setup();
    await t.start();
    const first = t.source.current();
    first.emit("ADDED", obj("a", "4"));
    await t.clock.advance(29_999);
    assert.equal(first.ended, false);
    first.emit("BOOKMARK", { metadata: { resourceVersion: "6" } });
    await t.clock.advance(29_999);
    assert.equal(first.ended, false, "a bookmark resets the watchdog");
    await t.clock.advance(1);
    assert.equal(first.ended, true, "the watchdog aborted the stream");
    assert.equal(t.source.streams.length, 2);
    assert.equal(t.source.current().req.resourceVersion, "6");
    assert.equal(t.source.listCalls, 1);
    await metric(t.registry, /fabric_informer_watch_restarts_total\{informer="Thing",reason="silent"\} 1/);
    t.ac.abort();
  });

  it("relists after several consecutive silent watches", async () => {
    const t = setup({ relistAfterSilentRestarts: 3 });
    await t.start();
    await t.clock.advance(30_000);
    await t.clock.advance(30_000);
    assert.equal(t.source.listCalls, 1);
    await t.clock.advance(30_000);
    assert.equal(t.source.listCalls, 2);
    assert.equal(t.source.streams.length, 4);
  });

  it("treats client-node's inactivity TimeoutError like silence: resume at once", async () => {
    const t = setup();
    await t.start();
    const timeout = new Error("The operation was aborted due to timeout");
    timeout.name = "TimeoutError";
    t.source.current().fail(timeout);
    await flushMicrotasks();
    assert.equal(t.source.streams.length, 2);
    await metric(t.registry, /fabric_informer_watch_restarts_total\{informer="Thing",reason="timeout"\} 1/);
    t.ac.abort();
  });

  it("backs off when a stream closes right away without events", async () => {
    const t = setup();
    await t.start();
    t.source.current().close();
    await flushMicrotasks();
    assert.equal(t.source.streams.length, 1);
    await t.clock.advance(100);
    assert.equal(t.source.streams.length, 2);
    t.ac.abort();
  });

  it("re-delivers every cached object as an update on resync", async () => {
    const t = setup({ resyncPeriodMs: 60_000 });
    t.source.set(obj("a", "1"), obj("b", "2"));
    await t.start();
    t.rec.events.length = 0;
    // keep the watch alive across the resync period
    for (let i = 0; i < 3; i++) {
      t.source.current().emit("BOOKMARK", { metadata: { resourceVersion: "2" } });
      await t.clock.advance(20_000);
    }
    assert.deepEqual(t.rec.events.sort(), ["update a@1->1", "update b@2->2"]);
    await metric(t.registry, /fabric_informer_resyncs_total\{informer="Thing"\} 1/);
    t.ac.abort();
  });

  it("retries a failed initial list and syncs afterwards", async () => {
    const t = setup();
    t.source.listErrors.push(new Error("connection refused"));
    t.source.set(obj("a", "1"));
    await t.start();
    assert.equal(t.informer.hasSynced(), false);
    await t.clock.advance(100);
    assert.equal(t.informer.hasSynced(), true);
    assert.equal(t.source.listCalls, 2);
    t.ac.abort();
  });

  it("resolves waitForSync false when its signal aborts first", async () => {
    const t = setup();
    const ac = new AbortController();
    const p = t.informer.waitForSync(ac.signal);
    ac.abort();
    assert.equal(await p, false);
  });

  it("replays the cache as adds to handlers registered after sync", async () => {
    const t = setup();
    t.source.set(obj("a", "1"));
    await t.start();
    const seen: string[] = [];
    t.informer.addHandlers({ onAdd: (o) => seen.push(o.metadata?.name ?? "") });
    assert.deepEqual(seen, ["a"]);
    t.ac.abort();
  });

  it("keeps running when a handler throws", async () => {
    const t = setup();
    await t.start();
    t.informer.addHandlers({
      onAdd: () => {
        throw new Error("handler bug");
      },
    });
    t.source.current().emit("ADDED", obj("a", "2"));
    t.source.current().emit("ADDED", obj("b", "3"));
    assert.equal(t.informer.size(), 2);
    t.ac.abort();
  });

  it("stops the loop and ends the watch when aborted", async () => {
    const t = setup();
    await t.start();
    const s = t.source.current();
    t.ac.abort();
    await flushMicrotasks();
    assert.equal(s.ended, true);
    assert.equal(t.isDone(), true);
    assert.equal(t.clock.pending(), 0, "no timers left behind");
  });
});
