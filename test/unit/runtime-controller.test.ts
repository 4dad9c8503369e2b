import assert from "node:assert/strict";
import type { KubernetesObject } from "@kubernetes/client-node";
import { Registry } from "prom-client";
import { FakeClock, flushMicrotasks } from "../../controllers/runtime/clock.js";
import { Controller, type Reconciler, type ReconcileContext } from "../../controllers/runtime/controller.js";
import { TerminalError } from "../../controllers/runtime/errors.js";
import { Informer } from "../../controllers/runtime/informer.js";
import type { LeaseClient, LeaseRecord } from "../../controllers/runtime/leader-election.js";
import { Manager } from "../../controllers/runtime/manager.js";
import type { ObjectKey } from "../../controllers/runtime/object.js";
import type { CustomResourceRef, ListWatchSource, WatchEvent } from "../../controllers/runtime/source.js";
import { GenerationChanged, IgnoreUpdates, UpdateWhen, watchSecondary, type Predicate } from "../../controllers/runtime/watch.js";

function obj(name: string, rv = "1", labels?: Record<string, string>): KubernetesObject {
  return { metadata: { name, resourceVersion: rv, labels } };
}

/** A list+watch source whose list is gated until release() and whose watch stays open. */
class GatedSource implements ListWatchSource<KubernetesObject> {
  private gate: Promise<void>;
  release!: () => void;
  emit: (e: WatchEvent) => void = () => undefined;
  constructor(private readonly items: KubernetesObject[], gated = false) {
    this.gate = gated ? new Promise((r) => (this.release = r)) : Promise.resolve();
  }
  async list() {
    await this.gate;
    return { items: this.items.map((o) => structuredClone(o)), resourceVersion: "1" };
  }
  watch(req: { signal: AbortSignal }, onEvent: (e: WatchEvent) => void): Promise<void> {
    this.emit = onEvent;
    return new Promise((resolve) => req.signal.addEventListener("abort", () => resolve(), { once: true }));
  }
}

/** A reconciler scripted per call; records calls and overlap. */
class ScriptedReconciler implements Reconciler {
  calls: string[] = [];
  inFlight = new Set<string>();
  overlaps = 0;
  script: Array<(key: ObjectKey, ctx: ReconcileContext) => Promise<{ requeueAfterMs?: number } | void>> = [];
  hold: Promise<void> | undefined;
  async reconcile(key: ObjectKey, ctx: ReconcileContext) {
    const k = key.name;
    if (this.inFlight.has(k)) this.overlaps++;
    this.inFlight.add(k);
    this.calls.push(k);
    try {
      if (this.hold) await this.hold;
      const step = this.script.shift();
      return step ? await step(key, ctx) : undefined;
    } finally {
      this.inFlight.delete(k);
    }
  }
}

function setup(items: KubernetesObject[], opts: { gated?: boolean; workers?: number } = {}) {
  const clock = new FakeClock();
  const registry = new Registry();
  const source = new GatedSource(items, opts.gated);
  const informer = new Informer({ name: "Thing", source, clock, registry, resyncPeriodMs: 0, silenceTimeoutMs: 3_600_000 });
  const reconciler = new ScriptedReconciler();
  const controller = new Controller({
    name: "thing",
    kind: "Thing",
    informer,
    reconciler,
    workers: opts.workers ?? 2,
    clock,
    registry,
    rateLimiter: { baseDelayMs: 100, maxDelayMs: 10_000, jitter: 0 },
  });
  const ac = new AbortController();
  const start = (): Promise<void> => {
    void informer.run(ac.signal);
    return controller.run(ac.signal);
  };
  return { clock, registry, source, informer, reconciler, controller, ac, start };
}

describe("runtime Controller", () => {
  it("starts workers only after the caches synced, then reconciles every object once", async () => {
    const t = setup([obj("a"), obj("b")], { gated: true });
    const done = t.start();
    await flushMicrotasks();
    assert.deepEqual(t.reconciler.calls, []);
    t.source.release();
    await flushMicrotasks();
    assert.deepEqual(t.reconciler.calls.sort(), ["a", "b"]);
    t.ac.abort();
    await done;
  });

  it("reconciles a key again when a watch event arrives", async () => {
    const t = setup([obj("a")]);
    const done = t.start();
    await flushMicrotasks();
    t.source.emit({ type: "MODIFIED", object: obj("a", "2") });
    t.source.emit({ type: "ADDED", object: obj("c", "3") });
    await flushMicrotasks();
    assert.deepEqual(t.reconciler.calls, ["a", "a", "c"]);
    t.ac.abort();
    await done;
  });

  it("retries a failing reconcile with growing backoff and resets it after success", async () => {
    const t = setup([obj("a")]);
    const fail = async (): Promise<void> => {
      throw new Error("database unavailable", { cause: new Error("ECONNREFUSED") });
    };
    t.reconciler.script = [fail, fail, async () => undefined];
    const done = t.start();
    await flushMicrotasks();
    assert.equal(t.reconciler.calls.length, 1);
    await t.clock.advance(100);
    assert.equal(t.reconciler.calls.length, 2);
    await t.clock.advance(199);
    assert.equal(t.reconciler.calls.length, 2);
    await t.clock.advance(1);
    assert.equal(t.reconciler.calls.length, 3);
    const m = await t.registry.metrics();
    assert.match(m, /controller_runtime_reconcile_total\{controller="thing",result="error"\} 2/);
    assert.match(m, /controller_runtime_reconcile_total\{controller="thing",result="success"\} 1/);
    assert.match(m, /controller_runtime_reconcile_errors_total\{controller="thing"\} 2/);
    t.ac.abort();
    await done;
  });

  it("does not retry a TerminalError", async () => {
    const t = setup([obj("a")]);
    t.reconciler.script = [
      async () => {
        throw new TerminalError("spec.cluster names no cluster");
      },
    ];
    const done = t.start();
    await flushMicrotasks();
    await t.clock.advance(60_000);
    assert.deepEqual(t.reconciler.calls, ["a"]);
    assert.match(await t.registry.metrics(), /result="terminal_error"\} 1/);
    t.ac.abort();
    await done;
  });

  it("honours requeueAfterMs", async () => {
    const t = setup([obj("a")]);
    t.reconciler.script = [async () => ({ requeueAfterMs: 5_000 })];
    const done = t.start();
    await flushMicrotasks();
    await t.clock.advance(4_999);
    assert.equal(t.reconciler.calls.length, 1);
    await t.clock.advance(1);
    assert.equal(t.reconciler.calls.length, 2);
    t.ac.abort();
    await done;
  });

  it("never runs two reconciles of one key at once, even with several workers", async () => {
    const t = setup([obj("a")], { workers: 4 });
    let release!: () => void;
    t.reconciler.hold = new Promise((r) => (release = r));
    const done = t.start();
    await flushMicrotasks();
    for (let i = 0; i < 5; i++) t.source.emit({ type: "MODIFIED", object: obj("a", String(10 + i)) });
    await flushMicrotasks();
    assert.equal(t.reconciler.calls.length, 1);
    t.reconciler.hold = undefined;
    release();
    await flushMicrotasks();
    assert.equal(t.reconciler.calls.length, 2, "the five events collapse into one more reconcile");
    assert.equal(t.reconciler.overlaps, 0);
    t.ac.abort();
    await done;
  });

  it("maps secondary informer events to primary keys", async () => {
    const t = setup([obj("a"), obj("b")]);
    const secondarySource = new GatedSource([]);
    const secrets = new Informer({ name: "Secret", source: secondarySource, clock: t.clock, resyncPeriodMs: 0 });
    const ctrl = new Controller({
      name: "thing2",
      kind: "Thing",
      informer: t.informer,
      reconciler: t.reconciler,
      watches: [watchSecondary(secrets, (s) => [{ name: s.metadata?.labels?.owner ?? "" }])],
      clock: t.clock,
    });
    void t.informer.run(t.ac.signal);
    void secrets.run(t.ac.signal);
    const done = ctrl.run(t.ac.signal);
    await flushMicrotasks();
    t.reconciler.calls.length = 0;
    secondarySource.emit({ type: "ADDED", object: obj("s1", "5", { owner: "b" }) });
    await flushMicrotasks();
    assert.deepEqual(t.reconciler.calls, ["b"]);
    t.ac.abort();
    await done;
  });

  const secret = (rv: string, owner: string, generation: number): KubernetesObject => ({ metadata: { name: "s1", resourceVersion: rv, generation, labels: { owner } } });
  /** A controller on t's informer watching a secondary "Secret" informer through watchSecondary(predicates). */
  function withSecondary(t: ReturnType<typeof setup>, ...predicates: Array<Predicate<KubernetesObject>>) {
    const source = new GatedSource([secret("5", "b", 1)]);
    const secrets = new Informer({ name: "Secret", source, clock: t.clock, resyncPeriodMs: 0 });
    const ctrl = new Controller({
      name: "thing3",
      kind: "Thing",
      informer: t.informer,
      reconciler: t.reconciler,
      watches: [watchSecondary(secrets, (s) => [{ name: s.metadata?.labels?.owner ?? "" }], ...predicates)],
      clock: t.clock,
    });
    void t.informer.run(t.ac.signal);
    void secrets.run(t.ac.signal);
    return { source, done: ctrl.run(t.ac.signal) };
  }

  it("maps an update to the keys of both the old and the new object", async () => {
    const t = setup([obj("a"), obj("b")]);
    const w = withSecondary(t);
    await flushMicrotasks();
    t.reconciler.calls.length = 0;
    w.source.emit({ type: "MODIFIED", object: secret("6", "a", 1) });
    await flushMicrotasks();
    assert.deepEqual(t.reconciler.calls.sort(), ["a", "b"]);
    t.ac.abort();
    await w.done;
  });

  it("maps only generation changes with GenerationChanged, and still adds and deletes", async () => {
    const t = setup([obj("a"), obj("b")]);
    const w = withSecondary(t, GenerationChanged);
    await flushMicrotasks();
    t.reconciler.calls.length = 0;
    w.source.emit({ type: "MODIFIED", object: secret("6", "b", 1) });
    w.source.emit({ type: "MODIFIED", object: secret("7", "b", 1) });
    await flushMicrotasks();
    assert.deepEqual(t.reconciler.calls, [], "a status-only update (same generation) maps to nothing");
    w.source.emit({ type: "MODIFIED", object: secret("8", "a", 2) });
    await flushMicrotasks();
    assert.deepEqual(t.reconciler.calls.sort(), ["a", "b"]);
    t.reconciler.calls.length = 0;
    w.source.emit({ type: "DELETED", object: secret("9", "a", 2) });
    await flushMicrotasks();
    assert.deepEqual(t.reconciler.calls, ["a"]);
    t.ac.abort();
    await w.done;
  });

  it("maps no update with IgnoreUpdates, but adds and deletes", async () => {
    const t = setup([obj("a"), obj("b")]);
    const w = withSecondary(t, IgnoreUpdates);
    await flushMicrotasks();
    t.reconciler.calls.length = 0;
    w.source.emit({ type: "MODIFIED", object: secret("6", "a", 2) });
    await flushMicrotasks();
    assert.deepEqual(t.reconciler.calls, []);
    w.source.emit({ type: "ADDED", object: obj("s2", "7", { owner: "a" }) });
    w.source.emit({ type: "DELETED", object: secret("8", "b", 2) });
    await flushMicrotasks();
    assert.deepEqual(t.reconciler.calls.sort(), ["a", "b"]);
    t.ac.abort();
    await w.done;
  });

  it("maps only the updates a custom UpdateWhen accepts, never a resync", async () => {
    const t = setup([obj("a"), obj("b")]);
    const seen: Array<[string | undefined, string | undefined]> = [];
    const w = withSecondary(
      t,
      UpdateWhen((o, n) => {
        seen.push([o.metadata?.resourceVersion, n.metadata?.resourceVersion]);
        return o.metadata?.labels?.owner !== n.metadata?.labels?.owner;
      }),
    );
    await flushMicrotasks();
    t.reconciler.calls.length = 0;
    w.source.emit({ type: "MODIFIED", object: secret("6", "b", 1) });
    await flushMicrotasks();
    assert.deepEqual(t.reconciler.calls, [], "same owner: rejected");
    w.source.emit({ type: "MODIFIED", object: secret("7", "a", 1) });
    await flushMicrotasks();
    assert.deepEqual(t.reconciler.calls.sort(), ["a", "b"]);
    assert.deepEqual(seen, [
      ["5", "6"],
      ["6", "7"],
    ]);
    const resync = UpdateWhen(() => true).update;
    const same = obj("x");
    assert.equal(resync?.(same, same), false, "a resync (same object) never passes");
    t.ac.abort();
    await w.done;
  });

  it("waits for in-flight reconciles when stopped and drops queued keys", async () => {
    const t = setup([obj("a"), obj("b")], { workers: 1 });
    let release!: () => void;
    t.reconciler.hold = new Promise((r) => (release = r));
    const done = t.start();
    await flushMicrotasks();
    assert.equal(t.reconciler.calls.length, 1);
    let stopped = false;
    void done.then(() => (stopped = true));
    t.ac.abort();
    await flushMicrotasks();
    assert.equal(stopped, false, "an in-flight reconcile is awaited");
    assert.equal(t.reconciler.calls.length, 1);
    release();
    await done;
    assert.equal(t.reconciler.calls.length, 1, "the queued key is dropped");
  });
});

describe("runtime Manager", () => {
  it("runs controllers without leader election and stops them with the signal", async () => {
    const clock = new FakeClock();
    const manager = new Manager({ identity: "solo" });
    const informer = new Informer({ name: "Thing", source: new GatedSource([obj("a")]), clock, registry: manager.registry });
    const reconciler = new ScriptedReconciler();
    manager.add(new Controller({ name: "thing", kind: "Thing", informer, reconciler, clock, registry: manager.registry }));
    const ac = new AbortController();
    const done = manager.start(ac.signal);
    await flushMicrotasks();
    assert.equal(manager.isLeader(), true);
    assert.deepEqual(reconciler.calls, ["a"]);
    ac.abort();
    await done;
    assert.equal(manager.isLeader(), false);
  });
});

describe("runtime Manager as the place kinds set up with", () => {
  const things: CustomResourceRef = { group: "example.io", version: "v1", plural: "things" };

  it("hands out one informer per resource, runs it, and enqueues every controller's objects on enqueueAll", async () => {
    const clock = new FakeClock();
    const made: CustomResourceRef[] = [];
    const manager = new Manager({
      identity: "solo",
      informers: {
        source: (ref) => {
          made.push(ref);
          return new GatedSource([obj("a"), obj("b")]);
        },
        defaults: { clock, resyncPeriodMs: 0 },
      },
    });
    const first = manager.informerFor(things, "Thing");
    const second = manager.informerFor({ ...things }, "Thing");
    assert.equal(first, second, "one informer per resource");
    assert.notEqual(manager.informerFor({ ...things, plural: "others" }, "Other"), first);
    assert.deepEqual(made.map((r) => r.plural), ["things", "others"]);
    const reconciler = new ScriptedReconciler();
    manager.add(new Controller({ name: "thing", kind: "Thing", informer: first, reconciler, clock }));
    const ac = new AbortController();
    const done = manager.start(ac.signal);
    await flushMicrotasks();
    assert.deepEqual(reconciler.calls.sort(), ["a", "b"], "the manager ran the shared informer");
    reconciler.calls.length = 0;
    manager.enqueueAll();
    await flushMicrotasks();
    assert.deepEqual(reconciler.calls.sort(), ["a", "b"]);
    assert.throws(() => manager.informerFor({ ...things, plural: "late" }, "Late"), /before start/);
    ac.abort();
    await done;
  });

  it("wakes the controller of a kind by name, whenever it was added", async () => {
    const clock = new FakeClock();
    const manager = new Manager({ identity: "solo" });
    const wakeThing = manager.wake("Thing");
    const wakeNobody = manager.wake("Nobody");
    const informer = new Informer({ name: "Thing", source: new GatedSource([obj("a")]), clock, resyncPeriodMs: 0 });
    manager.addInformer(informer);
    const reconciler = new ScriptedReconciler();
    manager.add(new Controller({ name: "thing", kind: "Thing", informer, reconciler, clock }));
    const ac = new AbortController();
    const done = manager.start(ac.signal);
    await flushMicrotasks();
    reconciler.calls.length = 0;
    wakeThing({ name: "z" });
    wakeNobody({ name: "z" });
    await flushMicrotasks();
    assert.deepEqual(reconciler.calls, ["z"]);
    ac.abort();
    await done;
  });

  it("runs runnables until stop, leading or not, and waits for them", async () => {
    const manager = new Manager({ identity: "solo" });
    let started = 0;
    let finished = 0;
    manager.addRunnable("loop", async (signal) => {
      started++;
      await new Promise<void>((r) => signal.addEventListener("abort", () => r(), { once: true }));
      await flushMicrotasks();
      finished++;
    });
    const ac = new AbortController();
    const done = manager.start(ac.signal);
    await flushMicrotasks();
    assert.equal(started, 1);
    assert.throws(() => manager.addRunnable("late", async () => undefined), /before start/);
    ac.abort();
    await done;
    assert.equal(finished, 1, "start() resolves after its runnables returned");
  });
});

describe("runtime Manager with leader election", () => {
  it("stops workers when the lease is lost, waits for the in-flight reconcile, and resumes on re-election", async () => {
    const clock = new FakeClock();
    let record: LeaseRecord | undefined;
    let rv = 0;
    let partitioned = false;
    const check = (): void => {
      if (partitioned) throw new Error("connection refused");
    };
    const lease: LeaseClient = {
      describe: () => "ns/lease",
      get: async () => (check(), record === undefined ? undefined : { record, resourceVersion: String(rv) }),
      create: async (r) => {
        check();
        record = r;
        rv++;
      },
      update: async (r, v) => {
        check();
        if (v !== String(rv)) throw new Error("conflict");
        record = r;
        rv++;
      },
    };
    const terms: number[] = [];
    const manager = new Manager({
      leaderElection: { lease, identity: "me", clock, random: () => 0 },
      authority: { acquire: async () => terms.push(terms.length + 1) },
    });
    const informer = new Informer({ name: "Thing", source: new GatedSource([obj("a")]), clock, resyncPeriodMs: 0, silenceTimeoutMs: 3_600_000 });
    const reconciler = new ScriptedReconciler();
    let release!: () => void;
    reconciler.hold = new Promise((r) => (release = r));
    manager.add(new Controller({ name: "thing", kind: "Thing", informer, reconciler, clock }));
    const ac = new AbortController();
    const done = manager.start(ac.signal);
    await flushMicrotasks();
    assert.equal(manager.isLeader(), true);
    assert.deepEqual(terms, [1]);
    assert.deepEqual(reconciler.calls, ["a"]);

    partitioned = true;
    for (let i = 0; i < 120; i++) await clock.advance(100);
    assert.equal(manager.isLeader(), true, "controllers keep the leader flag until the in-flight reconcile ends");
    reconciler.hold = undefined;
    release();
    await flushMicrotasks();
    assert.equal(manager.isLeader(), false);

    partitioned = false;
    for (let i = 0; i < 200; i++) await clock.advance(100);
    assert.equal(manager.isLeader(), true);
    assert.deepEqual(terms, [1, 2], "a new term on re-election");
    assert.deepEqual(reconciler.calls, ["a", "a"], "every object is reconciled again under the new term");
    ac.abort();
    await done;
  });
});
