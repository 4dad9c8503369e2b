/**
 * A rate-limited, delaying work queue with client-go semantics.
 *
 * - A key is queued at most once: adding a key that is already waiting is a
 *   no-op (the "dirty" set).
 * - A key is processed by at most one worker at a time: a key added while it
 *   is being processed is remembered and queued again when done() is called
 *   (the "processing" set).
 * - addAfter() delays an add; two delayed adds of one key keep the earlier.
 * - addRateLimited() delays by the per-key exponential backoff; forget() resets it.
 * - shutdown() stops accepting adds; get() hands out what is still queued
 *   (when draining) and then resolves undefined so workers exit.
 */
import { Registry } from "prom-client";
import { ExponentialRateLimiter, type ExponentialRateLimiterOptions, type RateLimiter } from "./backoff.js";
import { realClock, type Clock, type TimerHandle } from "./clock.js";
import { runtimeMetrics, type RuntimeMetrics } from "./metrics.js";

/** Options of WorkQueue. */
export interface WorkQueueOptions {
  /** Name used as the metrics label (usually the controller name). */
  name: string;
  clock?: Clock;
  /** A rate limiter, or options for the default ExponentialRateLimiter. */
  rateLimiter?: RateLimiter | ExponentialRateLimiterOptions;
  /** Registry for the workqueue_* metrics; none when omitted. */
  registry?: Registry;
}

/** Options of WorkQueue.shutdown. */
export interface ShutdownOptions {
  /**
   * true: keys already queued are still handed out by get() before it
   * resolves undefined. false (default): queued and delayed keys are dropped;
   * only in-flight keys finish.
   */
  drain?: boolean;
}

interface Delayed {
  readyAt: number;
  handle: TimerHandle;
}

function isRateLimiter(x: RateLimiter | ExponentialRateLimiterOptions | undefined): x is RateLimiter {
  return x !== undefined && typeof (x as Partial<RateLimiter>).when === "function";
}

/** See the module comment. Keys are strings such as "kind/namespace/name". */
export class WorkQueue {
  readonly name: string;
  private readonly clock: Clock;
  private readonly limiter: RateLimiter;
  private readonly metrics: RuntimeMetrics | undefined;
  private readonly unregister: Array<() => void> = [];

  private queue: string[] = [];
  private head = 0;
  private readonly dirty = new Set<string>();
  /** Key -> time processing started. */
  private readonly processing = new Map<string, number>();
  /** Key -> time it entered the queue (for latency and oldest-item age). */
  private readonly enqueuedAt = new Map<string, number>();
  private readonly delayed = new Map<string, Delayed>();
  private readonly waiters: Array<(key: string | undefined) => void> = [];
  private idleWaiters: Array<() => void> = [];
  private shuttingDown = false;

  constructor(opts: WorkQueueOptions) {
    this.name = opts.name;
    this.clock = opts.clock ?? realClock;
    this.limiter = isRateLimiter(opts.rateLimiter) ? opts.rateLimiter : new ExponentialRateLimiter(opts.rateLimiter);
    this.metrics = opts.registry ? runtimeMetrics(opts.registry) : undefined;
    const m = this.metrics;
    if (m !== undefined) {
      this.unregister.push(
        m.addSource(m.queueDepth, this.name, () => this.len()),
        m.addSource(m.queueLongestRunning, this.name, () => this.longestRunningMs() / 1000),
        m.addSource(m.queueUnfinishedWork, this.name, () => this.unfinishedWorkMs() / 1000),
        m.addSource(m.queueOldestItemAge, this.name, () => this.oldestItemAgeMs() / 1000),
      );
    }
  }

  /** Queues key unless it is already queued; if it is being processed, queues it again after done(). */
  add(key: string): void {
    if (this.shuttingDown) return;
    this.metrics?.queueAdds.inc({ name: this.name });
    this.cancelDelayed(key);
    if (this.dirty.has(key)) return;
    this.dirty.add(key);
    if (this.processing.has(key)) return;
    this.push(key);
  }

  /** Adds key after ms milliseconds. A pending delayed add of key keeps whichever fires first. */
  addAfter(key: string, ms: number): void {
    if (this.shuttingDown) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const readyAt = this.clock.now() + ms;
    const existing = this.delayed.get(key);
    if (existing !== undefined) {
      if (existing.readyAt <= readyAt) return;
      existing.handle.cancel();
    }
    const handle = this.clock.setTimeout(() => {
      const d = this.delayed.get(key);
      if (d?.handle !== handle) return;
      this.delayed.delete(key);
      this.add(key);
    }, ms);
    this.delayed.set(key, { readyAt, handle });
  }

  /** Adds key after its rate-limiter delay (one more failure counted). */
  addRateLimited(key: string): void {
    if (this.shuttingDown) return;
    this.metrics?.queueRetries.inc({ name: this.name });
    this.addAfter(key, this.limiter.when(key));
  }

  /** Resets the backoff of key (call after a successful reconcile). */
  forget(key: string): void {
    this.limiter.forget(key);
  }

  /** Failures counted for key since the last forget. */
  numRequeues(key: string): number {
    return this.limiter.numRequeues(key);
  }

  /**
   * The next key to process; the caller must call done(key) when finished.
   * Resolves undefined once the queue is shut down (and drained).
   */
  get(): Promise<string | undefined> {
    if (this.head < this.queue.length) return Promise.resolve(this.take());
    if (this.shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Marks key as processed; if it was added meanwhile, queues it again. */
  done(key: string): void {
    const started = this.processing.get(key);
    if (started === undefined) return;
    this.processing.delete(key);
    this.metrics?.queueWorkDuration.observe({ name: this.name }, (this.clock.now() - started) / 1000);
    if (this.dirty.has(key)) {
      if (this.shuttingDown && !this.draining) this.dirty.delete(key);
      else this.push(key);
    }
    this.notifyIdle();
  }

  /** Keys waiting to be processed (not delayed, not in flight). */
  len(): number {
    return this.queue.length - this.head;
  }

  /** Keys currently being processed. */
  inFlight(): number {
    return this.processing.size;
  }

  /** Keys waiting for a delayed or rate-limited add. */
  delayedCount(): number {
    return this.delayed.size;
  }

  /** Whether shutdown() was called. */
  isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  private draining = false;

  /**
   * Stops the queue: later adds are ignored, delayed adds are cancelled and
   * idle workers' get() resolves undefined. See ShutdownOptions.drain.
   */
  shutdown(opts: ShutdownOptions = {}): void {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    this.draining = opts.drain ?? false;
    for (const d of this.delayed.values()) d.handle.cancel();
    this.delayed.clear();
    if (!this.draining) {
      for (let i = this.head; i < this.queue.length; i++) {
        const k = this.queue[i];
        if (k !== undefined) {
          this.dirty.delete(k);
          this.enqueuedAt.delete(k);
        }
      }
      this.queue = [];
      this.head = 0;
      for (const k of [...this.dirty]) if (!this.processing.has(k)) this.dirty.delete(k);
    }
    if (this.len() === 0) {
      for (const w of this.waiters.splice(0)) w(undefined);
    }
    for (const u of this.unregister.splice(0)) u();
    this.notifyIdle();
  }

  /**
   * Resolves when nothing is in flight and (when draining) nothing is queued.
   * Use after shutdown() to wait for workers to finish.
   */
  awaitIdle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private isIdle(): boolean {
    return this.processing.size === 0 && (!this.shuttingDown || this.len() === 0);
  }

  private notifyIdle(): void {
    if (!this.isIdle()) return;
    const ws = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of ws) w();
  }

  private push(key: string): void {
    this.queue.push(key);
    this.enqueuedAt.set(key, this.clock.now());
    const w = this.waiters.shift();
    if (w !== undefined) w(this.take());
  }

  private take(): string {
    const key = this.queue[this.head];
    this.head++;
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    if (key === undefined) throw new Error("workqueue invariant: take from an empty queue");
    const now = this.clock.now();
    const since = this.enqueuedAt.get(key);
    this.enqueuedAt.delete(key);
    if (since !== undefined) this.metrics?.queueLatency.observe({ name: this.name }, (now - since) / 1000);
    this.dirty.delete(key);
    this.processing.set(key, now);
    if (this.shuttingDown && this.len() === 0) {
      for (const w of this.waiters.splice(0)) w(undefined);
    }
    return key;
  }

  private cancelDelayed(key: string): void {
    const d = this.delayed.get(key);
    if (d === undefined) return;
    d.handle.cancel();
    this.delayed.delete(key);
  }

  private longestRunningMs(): number {
    const now = this.clock.now();
    let longest = 0;
    for (const started of this.processing.values()) longest = Math.max(longest, now - started);
    return longest;
  }

  private unfinishedWorkMs(): number {
    const now = this.clock.now();
    let sum = 0;
    for (const started of this.processing.values()) sum += now - started;
    return sum;
  }

  private oldestItemAgeMs(): number {
    const now = this.clock.now();
    let oldest = 0;
    for (const at of this.enqueuedAt.values()) oldest = Math.max(oldest, now - at);
    return oldest;
  }
}
