/**
 * A kind-agnostic Kubernetes Event recorder, shaped like client-go's
 * record.EventRecorder with its EventBroadcaster and EventCorrelator, so
 * that `kubectl describe` and `kubectl events --for` show what the control
 * plane decided about an object, and why.
 *
 * It lives in lib/ because both sides record: the controllers (through
 * controllers/runtime, which re-exports it) and the agent API (refused
 * enrollments happen there, before any controller sees them).
 *
 * Every call is correlated synchronously, then written asynchronously:
 *
 * - identical events (same involved object, type, reason, message and
 *   source) within `dedupWindowMs` bump `count` and `lastTimestamp` of the
 *   event already written, with a merge patch, instead of creating another
 *   (client-go's eventLogger);
 * - after `aggregate.maxEvents` (10) similar events (same object, type and
 *   reason, different messages) within `aggregate.intervalMs` (10 min),
 *   further ones become one event "(combined from similar events): <latest
 *   message>" that is counted up (client-go's EventAggregator);
 * - a token bucket per involved object and source (burst 25, one token
 *   back every 5 minutes, client-go's defaults) drops the rest
 *   (client-go's EventSourceObjectSpamFilter);
 * - writes go through a bounded queue drained by one loop: `event()` never
 *   blocks nor throws, and a full queue, a spam-filtered event or a failed
 *   write is counted in `fabric_events_dropped_total{reason}`, never
 *   propagated to the reconcile that recorded it.
 *
 * Like kube, an event of a cluster-scoped object lives in the "default"
 * namespace and its involvedObject has no namespace.
 */
import { PatchStrategy, setHeaderOptions, type CoreV1Api, type CoreV1Event, type KubernetesObject } from "@kubernetes/client-node";
import { Counter, type Registry } from "prom-client";
import type { Logger } from "../log.js";

/** The two event types kube knows. */
export type EventType = "Normal" | "Warning";

/** What an event is about (core/v1 ObjectReference, the fields a recorder fills). */
export interface ObjectRef {
  apiVersion: string;
  kind: string;
  name: string;
  /** Absent for cluster-scoped objects. */
  namespace?: string;
  /** Set it whenever known: `kubectl describe` selects events by uid. */
  uid?: string;
}

/** Records events (client-go's record.EventRecorder). Never blocks, never throws. */
export interface EventRecorderLike {
  /** Records `reason` (PascalCase, constant) with a human `message` about `obj`. */
  event(obj: KubernetesObject | ObjectRef, type: EventType, reason: string, message: string): void;
}

/** Where events are written: the core/v1 events API, or a fake in tests. */
export interface EventSink {
  create(namespace: string, event: CoreV1Event): Promise<void>;
  /** Merge-patches count, lastTimestamp and message; rejects with an error whose httpStatus/code is 404 when the event is gone. */
  patch(namespace: string, name: string, patch: { count: number; lastTimestamp: string; message: string }): Promise<void>;
}

/** An EventSink writing through client-node's CoreV1Api. */
export function coreV1EventSink(core: CoreV1Api): EventSink {
  const merge = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);
  return {
    async create(namespace, body) {
      await core.createNamespacedEvent({ namespace, body });
    },
    async patch(namespace, name, body) {
      await core.patchNamespacedEvent({ namespace, name, body }, merge);
    },
  };
}

/** Options of EventRecorder. */
export interface EventRecorderOptions {
  sink: EventSink;
  /** source.component and reportingComponent, e.g. "fabric-controllers". */
  component: string;
  /** source.host and reportingInstance (e.g. the process identity). */
  host?: string;
  /** Epoch milliseconds (injected in tests). */
  now?: () => number;
  /** Writes waiting at most (default 1000); more are dropped and counted. */
  queueSize?: number;
  /** Per-object token bucket (default burst 25, one token per 5 min). */
  spam?: { burst: number; refillEveryMs: number };
  /** Similar-event aggregation (default 10 events in 10 min). */
  aggregate?: { maxEvents: number; intervalMs: number };
  /** How long an identical event is counted up rather than created anew (default 1 h, kube's event TTL). */
  dedupWindowMs?: number;
  /** Correlation entries kept (LRU, default 4096 each, like client-go). */
  cacheSize?: number;
  registry?: Registry;
  log?: Logger;
}

const MAX_MESSAGE = 1024;
const COMBINED = "(combined from similar events): ";

/** A small LRU map: get refreshes, set evicts the least recently used. */
class Lru<V> {
  private readonly m = new Map<string, V>();
  constructor(private readonly size: number) {}
  get(k: string): V | undefined {
    const v = this.m.get(k);
    if (v !== undefined) {
      this.m.delete(k);
      this.m.set(k, v);
    }
    return v;
  }
  set(k: string, v: V): void {
    this.m.delete(k);
    this.m.set(k, v);
    if (this.m.size > this.size) {
      const first = this.m.keys().next();
      if (first.done !== true) this.m.delete(first.value);
    }
  }
}

interface Written {
  name: string;
  namespace: string;
  count: number;
  firstTimestamp: string;
  lastSeenMs: number;
}

type Write = { op: "create"; namespace: string; event: CoreV1Event } | { op: "patch"; namespace: string; name: string; event: CoreV1Event };

interface EventMetrics {
  recorded: Counter<"component" | "type">;
  dropped: Counter<"component" | "reason">;
}

const metricsByRegistry = new WeakMap<Registry, EventMetrics>();

function eventMetrics(registry: Registry): EventMetrics {
  let m = metricsByRegistry.get(registry);
  if (m === undefined) {
    m = {
      recorded: new Counter({
        name: "fabric_events_recorded_total",
        help: "Kubernetes Events written (created or counted up), by recording component and type.",
        labelNames: ["component", "type"],
        registers: [registry],
      }),
      dropped: new Counter({
        name: "fabric_events_dropped_total",
        help: "Kubernetes Events not written, by reason (queue_full, spam_filtered, write_failed).",
        labelNames: ["component", "reason"],
        registers: [registry],
      }),
    };
    metricsByRegistry.set(registry, m);
  }
  return m;
}

/** The reference of an object or a reference. */
export function referenceOf(obj: KubernetesObject | ObjectRef): ObjectRef {
  if ("metadata" in obj || !("name" in obj)) {
    const o = obj as KubernetesObject;
    const ref: ObjectRef = { apiVersion: o.apiVersion ?? "", kind: o.kind ?? "", name: o.metadata?.name ?? "" };
    if (o.metadata?.namespace) ref.namespace = o.metadata.namespace;
    if (o.metadata?.uid) ref.uid = o.metadata.uid;
    return ref;
  }
  return obj as ObjectRef;
}

/** See the module comment. */
export class EventRecorder implements EventRecorderLike {
  private readonly now: () => number;
  private readonly queue: Write[] = [];
  private readonly written: Lru<Written>;
  private readonly similar: Lru<{ messages: Set<string>; firstMs: number }>;
  private readonly buckets: Lru<{ tokens: number; lastMs: number }>;
  private readonly metrics: EventMetrics | undefined;
  private draining: Promise<void> | undefined;
  private stopped = false;
  private seq = 0;

  constructor(private readonly o: EventRecorderOptions) {
    this.now = o.now ?? Date.now;
    const size = o.cacheSize ?? 4096;
    this.written = new Lru(size);
    this.similar = new Lru(size);
    this.buckets = new Lru(size);
    this.metrics = o.registry === undefined ? undefined : eventMetrics(o.registry);
  }

  /** See EventRecorderLike. Correlates now; the write happens later, in order. */
  event(obj: KubernetesObject | ObjectRef, type: EventType, reason: string, message: string): void {
    if (this.stopped) return;
    try {
      this.record(referenceOf(obj), type, reason, message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE - 3)}...` : message);
    } catch (err) {
      // A recorder bug must not fail the caller either.
      this.o.log?.warn("recording an event failed", { reason, err });
    }
  }

  /** Resolves once every queued write has been attempted (tests, shutdown). */
  async flush(): Promise<void> {
    while (this.draining !== undefined) await this.draining;
  }

  /** Stops accepting events and waits for the queued writes. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.flush();
  }

  /** Writes waiting in the queue. */
  pending(): number {
    return this.queue.length;
  }

  private record(ref: ObjectRef, type: EventType, reason: string, message: string): void {
    const nowMs = this.now();
    const objKey = [this.o.component, this.o.host ?? "", ref.apiVersion, ref.kind, ref.namespace ?? "", ref.name, ref.uid ?? ""].join("\u0000");

    // Spam filter: one bucket per source and object, whatever the reason.
    const spam = this.o.spam ?? { burst: 25, refillEveryMs: 300_000 };
    const b = this.buckets.get(objKey) ?? { tokens: spam.burst, lastMs: nowMs };
    b.tokens = Math.min(spam.burst, b.tokens + (nowMs - b.lastMs) / spam.refillEveryMs);
    b.lastMs = nowMs;
    this.buckets.set(objKey, b);
    if (b.tokens < 1) {
      this.metrics?.dropped.inc({ component: this.o.component, reason: "spam_filtered" });
      return;
    }
    b.tokens -= 1;

    // Aggregation: past maxEvents distinct messages of one reason, one combined event.
    const agg = this.o.aggregate ?? { maxEvents: 10, intervalMs: 600_000 };
    const aggKey = `${objKey}\u0000${type}\u0000${reason}`;
    let s = this.similar.get(aggKey);
    if (s === undefined || nowMs - s.firstMs > agg.intervalMs) s = { messages: new Set(), firstMs: nowMs };
    s.messages.add(message);
    this.similar.set(aggKey, s);
    let key = `${aggKey}\u0000${message}`;
    if (s.messages.size > agg.maxEvents) {
      key = aggKey;
      message = COMBINED + message;
    }

    // Deduplication: an identical event counts up the one written.
    const at = new Date(nowMs).toISOString();
    const eventNamespace = ref.namespace ?? "default";
    const involvedObject: Record<string, string> = { apiVersion: ref.apiVersion, kind: ref.kind, name: ref.name };
    if (ref.namespace !== undefined) involvedObject.namespace = ref.namespace;
    if (ref.uid !== undefined) involvedObject.uid = ref.uid;
    const prev = this.written.get(key);
    const window = this.o.dedupWindowMs ?? 3_600_000;
    const next: Written =
      prev !== undefined && nowMs - prev.lastSeenMs <= window
        ? { ...prev, count: prev.count + 1, lastSeenMs: nowMs }
        : { name: `${ref.name}.${(BigInt(nowMs) * 1_000_000n + BigInt(this.seq++ % 1_000_000)).toString(16)}`, namespace: eventNamespace, count: 1, firstTimestamp: at, lastSeenMs: nowMs };
    this.written.set(key, next);
    const event: CoreV1Event = {
      apiVersion: "v1",
      kind: "Event",
      metadata: { name: next.name, namespace: next.namespace },
      involvedObject,
      type,
      reason,
      message,
      source: { component: this.o.component, ...(this.o.host !== undefined ? { host: this.o.host } : {}) },
      reportingComponent: this.o.component,
      reportingInstance: this.o.host ?? "",
      firstTimestamp: new Date(next.firstTimestamp),
      lastTimestamp: new Date(at),
      count: next.count,
    };
    const w: Write = next.count === 1 ? { op: "create", namespace: next.namespace, event } : { op: "patch", namespace: next.namespace, name: next.name, event };
    if (this.queue.length >= (this.o.queueSize ?? 1000)) {
      this.metrics?.dropped.inc({ component: this.o.component, reason: "queue_full" });
      return;
    }
    this.queue.push(w);
    this.draining ??= this.drain().finally(() => {
      this.draining = undefined;
    });
  }

  private async drain(): Promise<void> {
    // One write at a time, in order: a count-up never overtakes its create.
    await Promise.resolve();
    for (let w = this.queue.shift(); w !== undefined; w = this.queue.shift()) {
      try {
        await this.write(w);
        this.metrics?.recorded.inc({ component: this.o.component, type: w.event.type ?? "" });
      } catch (err) {
        this.metrics?.dropped.inc({ component: this.o.component, reason: "write_failed" });
        this.o.log?.warn("writing an event failed", { reason: w.event.reason, object: w.event.involvedObject.name, err });
      }
    }
  }

  private async write(w: Write): Promise<void> {
    if (w.op === "create") return this.o.sink.create(w.namespace, w.event);
    try {
      await this.o.sink.patch(w.namespace, w.name, { count: w.event.count ?? 1, lastTimestamp: (w.event.lastTimestamp ?? new Date()).toISOString(), message: w.event.message ?? "" });
    } catch (err) {
      // Gone (expired or deleted): write it afresh, keeping the count (client-go does the same).
      if (statusOf(err) !== 404) throw err;
      await this.o.sink.create(w.namespace, w.event);
    }
  }
}

function statusOf(err: unknown): number | undefined {
  const e = err as { code?: unknown; httpStatus?: unknown; statusCode?: unknown };
  for (const v of [e.code, e.httpStatus, e.statusCode]) if (typeof v === "number") return v;
  return undefined;
}

/** A recorder that records nothing (when no API is at hand, e.g. some unit tests). */
export const noEvents: EventRecorderLike = { event: () => undefined };
