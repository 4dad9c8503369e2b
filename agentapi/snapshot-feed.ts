/**
 * The long-poll wake-up of the agent API. Pending snapshot polls wait here,
 * keyed by node; nothing per poll touches PostgreSQL while it waits. One
 * LISTEN connection hears the builder's commit notification; the feed then
 * reads what changed since the last change_seq it saw (one indexed range
 * scan, whatever the number of pending polls) and wakes only the polls of
 * those nodes. A periodic read of the same feed (default 2 s) covers a lost
 * notification or a dropped LISTEN connection.
 */
import type pg from "pg";
import { PgListener } from "../lib/db/listener.js";
import type { Logger } from "../lib/log.js";
import { changesSince, currentChangeSeq, SNAPSHOT_CHANGED_CHANNEL } from "../lib/state/snapshots.js";

interface Waiter {
  after: number;
  resolve: (serial: number | undefined) => void;
}

/** See the module comment. */
export class SnapshotFeed {
  private readonly waiters = new Map<string, Set<Waiter>>();
  private lastSeq = 0;
  private readonly listener: PgListener;
  private readonly stopListening = new AbortController();
  private listening: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private reading: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private pending = 0;

  constructor(
    private readonly pool: pg.Pool,
    private readonly log: Logger,
    private readonly pollMs = 2000,
  ) {
    this.listener = new PgListener({ connection: pool, channels: [SNAPSHOT_CHANGED_CHANNEL], onNotification: () => this.refresh(), onConnect: () => this.refresh(), meanwhile: "polling", log });
  }

  /** Starts listening; resolves once the feed position is known (and the first LISTEN attempt made). */
  async start(): Promise<void> {
    this.lastSeq = await currentChangeSeq(this.pool);
    this.listening = this.listener.run(this.stopListening.signal);
    await this.listener.firstAttempt;
    this.timer = setInterval(() => this.refresh(), this.pollMs);
    this.timer.unref();
  }

  /** Reads the change feed now (coalesced: at most one read in flight, one queued). */
  refresh(): void {
    if (this.reading !== undefined) {
      this.again = true;
      return;
    }
    this.reading = (async () => {
      do {
        this.again = false;
        try {
          for (;;) {
            const changes = await changesSince(this.pool, this.lastSeq);
            for (const ch of changes) {
              this.lastSeq = Math.max(this.lastSeq, ch.changeSeq);
              this.wake(ch.node, ch.serial);
            }
            if (changes.length < 10_000) break;
          }
        } catch (err) {
          this.log.warn("reading the snapshot change feed failed", { error: (err as Error).message });
        }
      } while (this.again && !this.stopped);
      this.reading = undefined;
    })();
  }

  private wake(node: string, serial: number): void {
    const set = this.waiters.get(node);
    if (set === undefined) return;
    for (const w of set) {
      if (serial > w.after) {
        set.delete(w);
        this.pending--;
        w.resolve(serial);
      }
    }
    if (set.size === 0) this.waiters.delete(node);
  }

  /** Polls waiting now. */
  pendingPolls(): number {
    return this.pending;
  }

  /**
   * Waits until a serial above `after` is stored for `node` (resolves with
   * it), or `timeoutMs` passes or `signal` aborts (resolves undefined).
   */
  wait(node: string, after: number, timeoutMs: number, signal: AbortSignal): Promise<number | undefined> {
    return new Promise((resolve) => {
      let set = this.waiters.get(node);
      if (set === undefined) {
        set = new Set();
        this.waiters.set(node, set);
      }
      const waiters = set;
      const w: Waiter = {
        after,
        resolve: (serial) => {
          clearTimeout(t);
          signal.removeEventListener("abort", cancel);
          resolve(serial);
        },
      };
      const cancel = (): void => {
        if (waiters.delete(w)) {
          this.pending--;
          if (waiters.size === 0 && this.waiters.get(node) === waiters) this.waiters.delete(node);
        }
        w.resolve(undefined);
      };
      const t = setTimeout(cancel, timeoutMs);
      waiters.add(w);
      this.pending++;
      signal.addEventListener("abort", cancel, { once: true });
    });
  }

  /** Stops listening and releases every pending poll. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.stopListening.abort();
    if (this.timer !== undefined) clearInterval(this.timer);
    for (const [, set] of this.waiters) for (const w of set) w.resolve(undefined);
    this.waiters.clear();
    this.pending = 0;
    await this.reading;
    await this.listening;
  }
}
