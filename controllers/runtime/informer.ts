/**
 * A shared informer: a list+watch loop feeding an immutable in-memory cache
 * and event handlers (client-go's Reflector + DeltaFIFO + Indexer, minus
 * indexes).
 *
 * Robustness, each case covered by unit tests with a fake source:
 * - watch error or close: restart from the last resourceVersion with
 *   exponential backoff and full jitter (immediately after a healthy stream
 *   ended normally, as client-go does);
 * - 410 Gone (HTTP status or an ERROR event): relist and deliver the
 *   difference as add/update/delete, so deletions missed while disconnected
 *   reach the handlers (with finalStateUnknown);
 * - a watch that goes silent without closing: a watchdog aborts it after
 *   silenceTimeoutMs without any event or bookmark and resumes; after
 *   relistAfterSilentRestarts consecutive silent restarts it relists;
 * - bookmarks (allowWatchBookmarks=true) advance the resourceVersion on quiet
 *   resources so a resume rarely needs a relist;
 * - periodic resync re-delivers every cached object as an update.
 * The list/watch source is injectable (default: client-node, see source.ts).
 */
import type { KubernetesObject } from "@kubernetes/client-node";
import { Registry } from "prom-client";
import { logger, type Logger } from "../../lib/log.js";
import { fullJitter, type RandomSource } from "./backoff.js";
import { realClock, sleep, type Clock, type TimerHandle } from "./clock.js";
import { runtimeMetrics, type RuntimeMetrics } from "./metrics.js";
import { cacheKey, deepFreeze, keyOf, type ObjectKey } from "./object.js";
import { httpStatusOf, type ListWatchSource, type WatchEvent } from "./source.js";

/** Why a watch stream ended (the reason label of fabric_informer_watch_restarts_total). */
export type WatchEndReason = "closed" | "error" | "gone" | "silent" | "timeout";

/** Details passed with a delete. */
export interface DeleteInfo {
  /**
   * true when the deletion was inferred from a relist (the watch missed the
   * DELETED event): obj is the last state the cache knew, not the final one.
   */
  finalStateUnknown: boolean;
}

/** Event handlers. They should only enqueue keys: they run synchronously in the informer loop. */
export interface InformerHandlers<T> {
  onAdd?(obj: T): void;
  /** Also called by periodic resync with oldObj === newObj. */
  onUpdate?(oldObj: T, newObj: T): void;
  onDelete?(obj: T, info: DeleteInfo): void;
}

/** Options of Informer. */
export interface InformerOptions<T extends KubernetesObject> {
  /** Name for logs and metrics, usually the kind ("FabricNode"). */
  name: string;
  source: ListWatchSource<T>;
  /** Re-deliver all cached objects as updates this often (default 10 min); 0 disables. */
  resyncPeriodMs?: number;
  /** Abort a watch that delivered no event or bookmark for this long (default 30 s). */
  silenceTimeoutMs?: number;
  /** Relist after this many consecutive silent watches (default 10); 0 relists after every one. */
  relistAfterSilentRestarts?: number;
  /** Reconnect backoff: full jitter between 0 and min(max, base * 2^attempt) (defaults 800 ms, 30 s, like client-go). */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Server-side watch timeout, picked at random in [min, max] seconds per watch (default 300-600, like client-go). */
  watchTimeoutSeconds?: { min: number; max: number };
  clock?: Clock;
  random?: RandomSource;
  registry?: Registry;
  log?: Logger;
}

interface WatchOutcome {
  reason: WatchEndReason | "stopped";
  events: number;
  error?: unknown;
}

/** A stream that lasted this long counts as healthy even without events. */
const HEALTHY_WATCH_MS = 10_000;

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function resourceVersionOf(obj: KubernetesObject): string | undefined {
  const rv = obj.metadata?.resourceVersion;
  return typeof rv === "string" && rv !== "" ? rv : undefined;
}

function isTimeout(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { name?: unknown }).name === "TimeoutError";
}

/** See the module comment. */
export class Informer<T extends KubernetesObject> {
  readonly name: string;
  private readonly source: ListWatchSource<T>;
  private readonly clock: Clock;
  private readonly random: RandomSource;
  private readonly log: Logger;
  private readonly metrics: RuntimeMetrics | undefined;
  private readonly resyncPeriodMs: number;
  private readonly silenceTimeoutMs: number;
  private readonly relistAfterSilentRestarts: number;
  private readonly backoffBaseMs: number;
  private readonly backoffMaxMs: number;
  private readonly watchTimeout: { min: number; max: number };

  private store = new Map<string, T>();
  private readonly handlers = new Set<InformerHandlers<T>>();
  private resourceVersion = "";
  private synced = false;
  private syncWaiters: Array<(ok: boolean) => void> = [];
  private running = false;
  private stopped = false;

  constructor(opts: InformerOptions<T>) {
    this.name = opts.name;
    this.source = opts.source;
    this.clock = opts.clock ?? realClock;
    this.random = opts.random ?? Math.random;
    this.log = opts.log ?? logger("informer", { informer: opts.name });
    this.metrics = opts.registry ? runtimeMetrics(opts.registry) : undefined;
    this.resyncPeriodMs = opts.resyncPeriodMs ?? 10 * 60_000;
    this.silenceTimeoutMs = opts.silenceTimeoutMs ?? 30_000;
    this.relistAfterSilentRestarts = opts.relistAfterSilentRestarts ?? 10;
    this.backoffBaseMs = opts.backoffBaseMs ?? 800;
    this.backoffMaxMs = opts.backoffMaxMs ?? 30_000;
    this.watchTimeout = opts.watchTimeoutSeconds ?? { min: 300, max: 600 };
  }

  /**
   * Registers handlers and returns a function that removes them. If the
   * cache has synced, the handlers first receive every cached object as an add.
   */
  addHandlers(h: InformerHandlers<T>): () => void {
    this.handlers.add(h);
    if (this.synced) for (const obj of this.store.values()) this.call(h, "onAdd", () => h.onAdd?.(obj));
    return () => {
      this.handlers.delete(h);
    };
  }

  /** The cached object (deep-frozen: never mutate it; copy with mutableCopy). */
  get(key: ObjectKey): T | undefined {
    return this.store.get(cacheKey(key));
  }

  /** The cached object for a "namespace/name" or "name" cache key. */
  getByKey(key: string): T | undefined {
    return this.store.get(key);
  }

  /** Cached objects (deep-frozen), all or those of one namespace. */
  list(namespace?: string): T[] {
    const all = [...this.store.values()];
    return namespace === undefined ? all : all.filter((o) => o.metadata?.namespace === namespace);
  }

  /**
   * The ObjectKeys of the cached objects `keep` accepts: what a secondary
   * watch maps an event to when "which of my objects care" is a filter over
   * the cache.
   */
  keysWhere(keep: (obj: T) => boolean): ObjectKey[] {
    const out: ObjectKey[] = [];
    for (const obj of this.store.values()) {
      const key = keep(obj) ? keyOf(obj) : undefined;
      if (key !== undefined) out.push(key);
    }
    return out;
  }

  /** Cache keys ("namespace/name" or "name"). */
  keys(): string[] {
    return [...this.store.keys()];
  }

  /** Number of cached objects. */
  size(): number {
    return this.store.size;
  }

  /** The resourceVersion the next watch would resume from. */
  lastResourceVersion(): string {
    return this.resourceVersion;
  }

  /** True once the first list completed and its objects were delivered. */
  hasSynced(): boolean {
    return this.synced;
  }

  /** Resolves true once synced, false if the signal aborts or the informer stops first. */
  waitForSync(signal?: AbortSignal): Promise<boolean> {
    if (this.synced) return Promise.resolve(true);
    if (signal?.aborted || this.stopped) return Promise.resolve(false);
    return new Promise((resolve) => {
      const onAbort = (): void => {
        this.syncWaiters = this.syncWaiters.filter((w) => w !== done);
        resolve(false);
      };
      const done = (ok: boolean): void => {
        signal?.removeEventListener("abort", onAbort);
        resolve(ok);
      };
      this.syncWaiters.push(done);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Runs the list/watch loop until signal aborts. An informer runs once. */
  async run(signal: AbortSignal): Promise<void> {
    if (this.running || this.stopped) throw new Error(`informer ${this.name} already ran`);
    this.running = true;
    let resync: TimerHandle | undefined;
    const scheduleResync = (): void => {
      if (this.resyncPeriodMs <= 0 || signal.aborted) return;
      resync = this.clock.setTimeout(() => {
        this.resync();
        scheduleResync();
      }, this.resyncPeriodMs);
    };
    scheduleResync();
    let attempt = 0;
    let needList = true;
    let silentRestarts = 0;
    try {
      while (!signal.aborted) {
        if (needList) {
          try {
            await this.relist(signal);
            needList = false;
          } catch (err) {
            if (signal.aborted) break;
            const delay = fullJitter(attempt++, this.backoffBaseMs, this.backoffMaxMs, this.random);
            this.log.warn("list failed, retrying", { error: err, delayMs: delay, attempt });
            await sleep(this.clock, delay, signal);
            continue;
          }
        }
        const started = this.clock.now();
        const out = await this.watchOnce(signal);
        if (out.reason === "stopped") break;
        this.metrics?.informerWatchRestarts.inc({ informer: this.name, reason: out.reason });
        const healthy = out.events > 0 || this.clock.now() - started >= HEALTHY_WATCH_MS;
        if (healthy) attempt = 0;
        let delay = 0;
        switch (out.reason) {
          case "gone":
            this.log.info("watch expired (410 Gone), relisting", { resourceVersion: this.resourceVersion });
            needList = true;
            silentRestarts = 0;
            break;
          case "silent":
          case "timeout":
            // Already throttled by the silence itself: resume at once.
            silentRestarts++;
            this.log.info("watch went silent, restarting", { reason: out.reason, silentRestarts });
            if (silentRestarts >= this.relistAfterSilentRestarts) {
              needList = true;
              silentRestarts = 0;
            }
            break;
          case "closed":
            if (out.events > 0) silentRestarts = 0;
            if (!healthy) delay = fullJitter(attempt++, this.backoffBaseMs, this.backoffMaxMs, this.random);
            this.log.debug("watch closed, restarting", { delayMs: delay });
            break;
          case "error":
            if (out.events > 0) silentRestarts = 0;
            delay = fullJitter(attempt++, this.backoffBaseMs, this.backoffMaxMs, this.random);
            this.log.warn("watch failed, restarting", { error: out.error, delayMs: delay, attempt });
            break;
        }
        if (delay > 0) await sleep(this.clock, delay, signal);
      }
    } finally {
      resync?.cancel();
      this.running = false;
      this.stopped = true;
      for (const w of this.syncWaiters.splice(0)) w(false);
    }
  }

  private async relist(signal: AbortSignal): Promise<void> {
    this.metrics?.informerRelists.inc({ informer: this.name });
    const result = await this.source.list(signal);
    if (signal.aborted) return;
    const next = new Map<string, T>();
    for (const item of result.items) {
      const key = keyOf(item);
      if (key === undefined) {
        this.log.warn("listed object without metadata.name ignored");
        continue;
      }
      next.set(cacheKey(key), deepFreeze(item));
    }
    const previous = this.store;
    // Swap first, then notify: handlers that read the cache see the new state.
    this.store = next;
    this.resourceVersion = result.resourceVersion;
    this.metrics?.informerObjects.set({ informer: this.name }, next.size);
    for (const [k, obj] of next) {
      const old = previous.get(k);
      if (old === undefined) this.emitAdd(obj);
      else if (resourceVersionOf(old) !== resourceVersionOf(obj) || resourceVersionOf(obj) === undefined) this.emitUpdate(old, obj);
    }
    for (const [k, old] of previous) {
      if (!next.has(k)) this.emitDelete(old, { finalStateUnknown: true });
    }
    if (!this.synced) {
      this.synced = true;
      this.log.info("cache synced", { objects: next.size, resourceVersion: this.resourceVersion });
      for (const w of this.syncWaiters.splice(0)) w(true);
    }
  }

  private watchOnce(signal: AbortSignal): Promise<WatchOutcome> {
    const ac = new AbortController();
    let reason: WatchEndReason | undefined;
    let events = 0;
    let watchdog: TimerHandle | undefined;
    const end = (r: WatchEndReason): void => {
      reason ??= r;
      ac.abort();
    };
    const arm = (): void => {
      watchdog?.cancel();
      watchdog = this.clock.setTimeout(() => end("silent"), this.silenceTimeoutMs);
    };
    const onStop = (): void => ac.abort();
    signal.addEventListener("abort", onStop, { once: true });
    arm();
    const { min, max } = this.watchTimeout;
    const timeoutSeconds = Math.floor(min + this.random() * Math.max(0, max - min));
    const onEvent = (ev: WatchEvent): void => {
      if (ac.signal.aborted) return;
      events++;
      arm();
      const r = this.handleEvent(ev);
      if (r !== undefined) end(r);
    };
    return this.source
      .watch({ resourceVersion: this.resourceVersion, allowWatchBookmarks: true, timeoutSeconds, signal: ac.signal }, onEvent)
      .then(
        (): WatchOutcome => ({ reason: signal.aborted ? "stopped" : (reason ?? "closed"), events }),
        (error: unknown): WatchOutcome => {
          if (signal.aborted) return { reason: "stopped", events };
          if (reason !== undefined) return { reason, events };
          if (httpStatusOf(error) === 410) return { reason: "gone", events, error };
          if (isTimeout(error)) return { reason: "timeout", events, error };
          return { reason: "error", events, error };
        },
      )
      .finally(() => {
        watchdog?.cancel();
        signal.removeEventListener("abort", onStop);
      });
  }

  /** Applies one event; returns a reason when the watch must end. */
  private handleEvent(ev: WatchEvent): WatchEndReason | undefined {
    this.metrics?.informerEvents.inc({ informer: this.name, type: ev.type });
    if (ev.type === "ERROR") {
      const status = isRecord(ev.object) ? ev.object : {};
      const code = status.code;
      if (code === 410 || status.reason === "Expired" || status.reason === "Gone") return "gone";
      this.log.warn("watch error event", { code, reason: status.reason, message: status.message });
      return "error";
    }
    if (!isRecord(ev.object)) {
      this.log.warn("watch event without an object ignored", { type: ev.type });
      return undefined;
    }
    const obj = ev.object as T;
    const rv = resourceVersionOf(obj);
    if (ev.type === "BOOKMARK") {
      if (rv !== undefined) this.resourceVersion = rv;
      return undefined;
    }
    const key = keyOf(obj);
    if (key === undefined) {
      this.log.warn("watch event object without metadata.name ignored", { type: ev.type });
      return undefined;
    }
    const k = cacheKey(key);
    const frozen = deepFreeze(obj);
    switch (ev.type) {
      case "ADDED":
      case "MODIFIED": {
        const old = this.store.get(k);
        this.store.set(k, frozen);
        if (old === undefined) this.emitAdd(frozen);
        else this.emitUpdate(old, frozen);
        break;
      }
      case "DELETED":
        this.store.delete(k);
        this.emitDelete(frozen, { finalStateUnknown: false });
        break;
      default:
        this.log.warn("unknown watch event type ignored", { type: ev.type });
        return undefined;
    }
    if (rv !== undefined) this.resourceVersion = rv;
    this.metrics?.informerObjects.set({ informer: this.name }, this.store.size);
    return undefined;
  }

  private resync(): void {
    if (!this.synced) return;
    this.metrics?.informerResyncs.inc({ informer: this.name });
    for (const obj of this.store.values()) this.emitUpdate(obj, obj);
  }

  private emitAdd(obj: T): void {
    for (const h of this.handlers) this.call(h, "onAdd", () => h.onAdd?.(obj));
  }

  private emitUpdate(oldObj: T, newObj: T): void {
    for (const h of this.handlers) this.call(h, "onUpdate", () => h.onUpdate?.(oldObj, newObj));
  }

  private emitDelete(obj: T, info: DeleteInfo): void {
    for (const h of this.handlers) this.call(h, "onDelete", () => h.onDelete?.(obj, info));
  }

  private call(_h: InformerHandlers<T>, what: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      // A handler bug must not kill the informer loop; it is logged loudly.
      this.log.error("event handler threw", { handler: what, error: err });
    }
  }
}
