import assert from "node:assert/strict";
import type { CoreV1Event } from "@kubernetes/client-node";
import { Registry } from "prom-client";
import { EventRecorder, type EventSink, type ObjectRef } from "../../lib/kube/events.js";
import { metricNamesOf } from "../support/promql.js";

/** An in-memory events API: creates and merge patches, keyed by namespace/name. */
class FakeSink implements EventSink {
  readonly events = new Map<string, CoreV1Event>();
  calls: string[] = [];
  /** While set, every write waits for it. */
  gate: Promise<void> | undefined;
  async create(namespace: string, event: CoreV1Event): Promise<void> {
    await this.gate;
    this.calls.push("create");
    this.events.set(`${namespace}/${event.metadata?.name ?? ""}`, structuredClone(event));
  }
  async patch(namespace: string, name: string, patch: { count: number; lastTimestamp: string; message: string }): Promise<void> {
    await this.gate;
    this.calls.push("patch");
    const e = this.events.get(`${namespace}/${name}`);
    if (e === undefined) throw Object.assign(new Error("not found"), { code: 404 });
    this.events.set(`${namespace}/${name}`, { ...e, count: patch.count, lastTimestamp: new Date(patch.lastTimestamp), message: patch.message });
  }
  list(): CoreV1Event[] {
    return [...this.events.values()];
  }
}

const token: ObjectRef = { apiVersion: "accessfabric.io/v1alpha1", kind: "JoinToken", name: "t1", uid: "uid-1" };

function setup(o: { spam?: { burst: number; refillEveryMs: number }; queueSize?: number } = {}) {
  let now = Date.parse("2030-01-01T00:00:00Z");
  const sink = new FakeSink();
  const registry = new Registry();
  const rec = new EventRecorder({ sink, component: "test", host: "h1", now: () => now, registry, ...o });
  return { sink, rec, registry, advance: (ms: number) => (now += ms) };
}

async function metric(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const m = await registry.getSingleMetric(name)?.get();
  const v = m?.values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l));
  return v?.value ?? 0;
}

describe("EventRecorder", () => {
  it("writes an event of a cluster-scoped object to the default namespace, its reference without namespace", async () => {
    const { sink, rec } = setup();
    rec.event(token, "Warning", "JoinRefused", "node x refused");
    await rec.flush();
    const [e] = sink.list();
    assert.equal(e?.metadata?.namespace, "default");
    assert.deepEqual(e?.involvedObject, { apiVersion: "accessfabric.io/v1alpha1", kind: "JoinToken", name: "t1", uid: "uid-1" });
    assert.equal(e?.count, 1);
    assert.deepEqual(e?.source, { component: "test", host: "h1" });
    assert.equal(e?.reportingComponent, "test");
  });

  it("keeps a namespaced object's events in its namespace and takes the reference from the object", async () => {
    const { sink, rec } = setup();
    rec.event({ apiVersion: "v1", kind: "Secret", metadata: { name: "s", namespace: "fabric-system", uid: "u" } }, "Normal", "Seen", "m");
    await rec.flush();
    assert.equal(sink.list()[0]?.metadata?.namespace, "fabric-system");
    assert.equal(sink.list()[0]?.involvedObject.namespace, "fabric-system");
  });

  it("counts identical events up on the event written, with a patch, and moves lastTimestamp", async () => {
    const { sink, rec, advance } = setup();
    rec.event(token, "Normal", "TokenRevoked", "revoked");
    advance(1000);
    rec.event(token, "Normal", "TokenRevoked", "revoked");
    advance(1000);
    rec.event(token, "Normal", "TokenRevoked", "revoked");
    await rec.flush();
    assert.deepEqual(sink.calls, ["create", "patch", "patch"]);
    const [e] = sink.list();
    assert.equal(sink.list().length, 1);
    assert.equal(e?.count, 3);
    assert.equal(e?.firstTimestamp?.toISOString(), "2030-01-01T00:00:00.000Z");
    assert.equal(e?.lastTimestamp?.toISOString(), "2030-01-01T00:00:02.000Z");
  });

  it("creates a new event for an identical one after the deduplication window", async () => {
    const { sink, rec, advance } = setup();
    rec.event(token, "Normal", "TokenRevoked", "revoked");
    advance(3_600_001);
    rec.event(token, "Normal", "TokenRevoked", "revoked");
    await rec.flush();
    assert.equal(sink.list().length, 2);
  });

  it("writes an event anew, keeping its count, when the one to count up is gone", async () => {
    const { sink, rec } = setup();
    rec.event(token, "Normal", "R", "m");
    await rec.flush();
    sink.events.clear();
    rec.event(token, "Normal", "R", "m");
    await rec.flush();
    assert.deepEqual(sink.calls, ["create", "patch", "create"]);
    assert.equal(sink.list()[0]?.count, 2);
  });

  it("combines similar events (same reason, other messages) after 10 in 10 minutes", async () => {
    const { sink, rec, advance } = setup();
    for (let i = 0; i < 14; i++) {
      rec.event(token, "Warning", "JoinRefused", `node n${i} refused`);
      advance(1000);
    }
    await rec.flush();
    const events = sink.list();
    assert.equal(events.length, 11, "10 distinct events, then one combined");
    const combined = events.find((e) => e.message?.startsWith("(combined from similar events): "));
    assert.equal(combined?.message, "(combined from similar events): node n13 refused");
    assert.equal(combined?.count, 4);
    // After the interval, distinct messages are written as themselves again.
    advance(600_001);
    rec.event(token, "Warning", "JoinRefused", "node late refused");
    await rec.flush();
    assert.ok(sink.list().some((e) => e.message === "node late refused"));
  });

  it("drops events past the per-object burst and refills one token every 5 minutes", async () => {
    const { sink, rec, advance, registry } = setup();
    for (let i = 0; i < 30; i++) rec.event(token, "Normal", `Reason${i}`, "m");
    await rec.flush();
    assert.equal(sink.list().length, 25);
    assert.equal(await metric(registry, "fabric_events_dropped_total", { reason: "spam_filtered" }), 5);
    // Another object has its own bucket.
    rec.event({ ...token, name: "t2", uid: "uid-2" }, "Normal", "Other", "m");
    advance(299_000);
    rec.event(token, "Normal", "TooSoon", "m");
    advance(1_000);
    rec.event(token, "Normal", "Refilled", "m");
    await rec.flush();
    const reasons = sink.list().map((e) => e.reason);
    assert.ok(reasons.includes("Other"));
    assert.ok(!reasons.includes("TooSoon"));
    assert.ok(reasons.includes("Refilled"));
  });

  it("never blocks the caller: a stalled API fills the bounded queue and the rest is counted as dropped", async () => {
    const { sink, rec, registry } = setup({ queueSize: 5, spam: { burst: 1000, refillEveryMs: 1 } });
    let open: () => void = () => undefined;
    sink.gate = new Promise<void>((resolve) => (open = resolve));
    const started = Date.now();
    for (let i = 0; i < 20; i++) rec.event(token, "Normal", `R${i}`, "m");
    assert.ok(Date.now() - started < 1000);
    // Five wait (the writer starts after the caller's turn); the other fifteen are dropped.
    assert.equal(rec.pending(), 5);
    assert.equal(await metric(registry, "fabric_events_dropped_total", { reason: "queue_full" }), 15);
    await new Promise((r) => setImmediate(r));
    assert.equal(rec.pending(), 4, "one write in flight, stalled");
    open();
    await rec.flush();
    assert.equal(sink.list().length, 5);
    assert.equal(await metric(registry, "fabric_events_recorded_total", { type: "Normal" }), 5);
  });

  it("never throws at the caller: a failing API is counted and logged", async () => {
    const { rec, registry } = setup();
    const failing = new EventRecorder({ sink: { create: () => Promise.reject(new Error("boom")), patch: () => Promise.reject(new Error("boom")) }, component: "x", registry });
    assert.doesNotThrow(() => failing.event(token, "Warning", "R", "m"));
    await failing.flush();
    assert.equal(await metric(registry, "fabric_events_dropped_total", { component: "x", reason: "write_failed" }), 1);
    await rec.stop();
    rec.event(token, "Normal", "AfterStop", "m");
    assert.equal(rec.pending(), 0);
  });

  it("truncates messages to 1024 characters", async () => {
    const { sink, rec } = setup();
    rec.event(token, "Normal", "Long", "x".repeat(5000));
    await rec.flush();
    assert.equal(sink.list()[0]?.message?.length, 1024);
  });
});

describe("PromQL metric names (test support)", () => {
  it("finds the selectors, not functions, labels, durations or grouping labels", () => {
    assert.deepEqual(
      metricNamesOf('histogram_quantile(0.99, sum by (le, route) (rate(fabric_agentapi_request_duration_seconds_bucket{route!="/v1/snapshot"}[$__rate_interval])))'),
      ["fabric_agentapi_request_duration_seconds_bucket"],
    );
    assert.deepEqual(metricNamesOf("(fabric_role_coverage_assigned_nodes > 0) and (fabric_role_coverage_ready_nodes == 0)"), ["fabric_role_coverage_assigned_nodes", "fabric_role_coverage_ready_nodes"]);
    assert.deepEqual(metricNamesOf("max(fabric_authority_term) < 1 or absent(fabric_authority_term)"), ["fabric_authority_term"]);
    assert.deepEqual(metricNamesOf("(x_seconds - time()) < 2 * 3600 offset 5m"), ["x_seconds"]);
  });
});
