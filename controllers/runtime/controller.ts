/**
 * A controller: informers feed keys into a workqueue; N workers run the
 * reconciler for one key at a time (controller-runtime's Controller).
 *
 * Event handlers only enqueue keys. Workers start after every informer has
 * synced. A thrown error requeues the key with per-key exponential backoff;
 * TerminalError and FencedError are logged and not retried;
 * { requeueAfterMs } schedules the next reconcile; success resets the backoff.
 */
import type { KubernetesObject } from "@kubernetes/client-node";
import { Registry } from "prom-client";
import { logger, type Logger } from "../../lib/log.js";
import type { ExponentialRateLimiterOptions, RateLimiter } from "./backoff.js";
import { realClock, type Clock } from "./clock.js";
import { FencedError, TerminalError } from "./errors.js";
import type { Informer } from "./informer.js";
import { runtimeMetrics, type RuntimeMetrics } from "./metrics.js";
import { keyOf, parseQueueKey, queueKey, type ObjectKey } from "./object.js";
import { WorkQueue } from "./workqueue.js";

/** What a reconcile may ask for. */
export interface ReconcileResult {
  /** Reconcile this key again after this many milliseconds (level-triggered polling). */
  requeueAfterMs?: number;
}

/** Per-call context of a reconcile. */
export interface ReconcileContext {
  /** Aborts when the controller stops (leadership lost, shutdown). */
  signal: AbortSignal;
  /** A logger carrying controller and key fields. */
  log: Logger;
  /** Consecutive failures of this key before this attempt (0 on a first try). */
  retries: number;
}

/** Converges one object. Throw to retry; throw TerminalError to stop retrying. */
export interface Reconciler {
  reconcile(key: ObjectKey, ctx: ReconcileContext): Promise<ReconcileResult | void>;
}

/** A secondary informer whose events map to primary keys. Build with watchSecondary() (watch.ts). */
export interface SecondaryWatch {
  readonly informer: Informer<KubernetesObject>;
  /** Subscribes enqueue to the informer's events; returns an unsubscribe function. */
  subscribe(enqueue: (key: ObjectKey) => void): () => void;
}

/** Options of Controller. */
export interface ControllerOptions<T extends KubernetesObject> {
  /** Unique controller name (metrics label, queue name), e.g. "fabricnode". */
  name: string;
  /** Kind of the primary objects, the first part of queue keys. */
  kind: string;
  informer: Informer<T>;
  reconciler: Reconciler;
  watches?: SecondaryWatch[];
  /** Concurrent reconciles (distinct keys); default 1. */
  workers?: number;
  rateLimiter?: RateLimiter | ExponentialRateLimiterOptions;
  clock?: Clock;
  registry?: Registry;
  log?: Logger;
  /**
   * Which updates of the primary object enqueue it (default: all). Resyncs
   * (the same object delivered again) always do. Use {@link intentChanged}
   * for reconcilers that read only the object's intent, so that their own
   * status writes do not trigger another, no-op reconcile.
   */
  primaryUpdateFilter?: (oldObj: T, newObj: T) => boolean;
}

/**
 * True when an update changed intent rather than only status: the
 * generation (spec), labels, annotations, finalizers or deletion moved.
 * Like controller-runtime's GenerationChangedPredicate, plus metadata a
 * reconciler may act on.
 */
export function intentChanged(oldObj: KubernetesObject, newObj: KubernetesObject): boolean {
  const a = oldObj.metadata ?? {};
  const b = newObj.metadata ?? {};
  return (
    a.generation !== b.generation ||
    a.deletionTimestamp !== b.deletionTimestamp ||
    JSON.stringify(a.labels ?? {}) !== JSON.stringify(b.labels ?? {}) ||
    JSON.stringify(a.annotations ?? {}) !== JSON.stringify(b.annotations ?? {}) ||
    JSON.stringify(a.finalizers ?? []) !== JSON.stringify(b.finalizers ?? [])
  );
}

/** See the module comment. */
export class Controller<T extends KubernetesObject> {
  readonly name: string;
  readonly kind: string;
  private readonly opts: ControllerOptions<T>;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly metrics: RuntimeMetrics | undefined;
  private queue: WorkQueue | undefined;
  private running = false;

  constructor(opts: ControllerOptions<T>) {
    if ((opts.workers ?? 1) < 1) throw new Error("controller needs at least one worker");
    this.opts = opts;
    this.name = opts.name;
    this.kind = opts.kind;
    this.clock = opts.clock ?? realClock;
    this.log = opts.log ?? logger(`controller.${opts.name}`);
    this.metrics = opts.registry ? runtimeMetrics(opts.registry) : undefined;
    const enqueueObj = (obj: T): void => {
      const key = keyOf(obj);
      if (key !== undefined) this.enqueue(key);
    };
    opts.informer.addHandlers({
      onAdd: enqueueObj,
      onUpdate: (oldObj, obj) => {
        const filter = opts.primaryUpdateFilter;
        if (filter && oldObj !== obj && !filter(oldObj, obj)) return;
        enqueueObj(obj);
      },
      onDelete: enqueueObj,
    });
    for (const w of opts.watches ?? []) w.subscribe((k) => this.enqueue(k));
  }

  /** Every informer the controller reads (primary first); the Manager runs them. */
  informers(): Array<Informer<KubernetesObject>> {
    return [
      this.opts.informer as unknown as Informer<KubernetesObject>,
      ...(this.opts.watches ?? []).map((w) => w.informer),
    ];
  }

  /** Queues a reconcile of every cached primary object (a manual resync); ignored while not running. */
  enqueueAll(): void {
    for (const obj of this.opts.informer.list()) {
      const key = keyOf(obj);
      if (key !== undefined) this.enqueue(key);
    }
  }

  /** Queues a reconcile of key; ignored while the controller is not running. */
  enqueue(key: ObjectKey): void {
    this.queue?.add(queueKey(this.kind, key));
  }

  /** Whether workers are running. */
  isRunning(): boolean {
    return this.running;
  }

  /**
   * Waits for the informers to sync, enqueues every primary object, runs the
   * workers until signal aborts, then drops queued keys and resolves once the
   * in-flight reconciles finished. The informers must be running (Manager).
   */
  async run(signal: AbortSignal): Promise<void> {
    if (this.running) throw new Error(`controller ${this.name} is already running`);
    this.running = true;
    const queue = new WorkQueue({
      name: this.name,
      clock: this.clock,
      rateLimiter: this.opts.rateLimiter,
      registry: this.opts.registry,
    });
    this.queue = queue;
    const stop = (): void => queue.shutdown();
    signal.addEventListener("abort", stop, { once: true });
    try {
      const synced = await Promise.all(this.informers().map((i) => i.waitForSync(signal)));
      if (signal.aborted || synced.includes(false)) return;
      // Objects delivered before the queue existed (or while another instance led) are covered here.
      for (const obj of this.opts.informer.list()) {
        const key = keyOf(obj);
        if (key !== undefined) queue.add(queueKey(this.kind, key));
      }
      const workers = this.opts.workers ?? 1;
      this.log.info("starting workers", { workers });
      await Promise.all(Array.from({ length: workers }, () => this.worker(queue, signal)));
      await queue.awaitIdle();
      this.log.info("workers stopped");
    } finally {
      signal.removeEventListener("abort", stop);
      queue.shutdown();
      if (this.queue === queue) this.queue = undefined;
      this.running = false;
    }
  }

  private async worker(queue: WorkQueue, signal: AbortSignal): Promise<void> {
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      try {
        await this.process(queue, key, signal);
      } finally {
        queue.done(key);
      }
    }
  }

  private async process(queue: WorkQueue, qkey: string, signal: AbortSignal): Promise<void> {
    const labels = { controller: this.name };
    let key: ObjectKey;
    try {
      key = parseQueueKey(qkey).key;
    } catch (err) {
      this.log.error("dropping malformed queue key", { key: qkey, error: err });
      queue.forget(qkey);
      return;
    }
    const log = this.log.with({ namespace: key.namespace, name: key.name });
    const retries = queue.numRequeues(qkey);
    const started = this.clock.now();
    this.metrics?.activeWorkers.inc(labels);
    let result: string;
    try {
      const res = await this.opts.reconciler.reconcile(key, { signal, log, retries });
      queue.forget(qkey);
      const after = res?.requeueAfterMs;
      if (after !== undefined && after > 0) {
        queue.addAfter(qkey, after);
        result = "requeue_after";
      } else {
        result = "success";
      }
    } catch (err) {
      this.metrics?.reconcileErrors.inc(labels);
      if (err instanceof TerminalError || err instanceof FencedError) {
        queue.forget(qkey);
        result = "terminal_error";
        log.error("reconcile failed permanently", { error: err, terminal: true });
      } else {
        queue.addRateLimited(qkey);
        result = "error";
        log.error("reconcile failed, retrying with backoff", { error: err, retries: retries + 1 });
      }
    } finally {
      this.metrics?.activeWorkers.dec(labels);
      this.metrics?.reconcileTime.observe(labels, (this.clock.now() - started) / 1000);
    }
    this.metrics?.reconcileTotal.inc({ ...labels, result });
  }
}
