/**
 * Fans committed events out to watchers. Writers NOTIFY after each commit;
 * the hub reads new events from api_events in revision order, so every API
 * server process on the same database sees every write exactly once and in
 * order. A periodic poll covers a missed notification or a dropped LISTEN
 * connection.
 */
import { PgListener } from "../lib/db/listener.js";
import type { Logger } from "../lib/log.js";
import { eventsChannel, type StoredEvent, type Store } from "./store.js";

/** Receives events of one resource. */
export type EventListener = (ev: StoredEvent) => void;

/** The in-process event fan-out. */
export class WatchHub {
  /** The newest revision dispatched to listeners. */
  lastRv = 0;
  private readonly listeners = new Map<string, Set<EventListener>>();
  private readonly listener: PgListener;
  private readonly stopListening = new AbortController();
  private listening?: Promise<void>;
  private pumping = false;
  private pumpAgain = false;
  private stopped = false;
  private pollTimer?: NodeJS.Timeout;
  private readonly revisionWaiters: Array<{ rv: number; resolve: () => void }> = [];

  constructor(
    private readonly store: Store,
    private readonly databaseUrl: string,
    private readonly log: Logger,
    private readonly pollMs = 1000,
  ) {
    // A connection of its own, outside the pool: readiness follows it, and
    // watch fan-out never waits for a pool slot.
    this.listener = new PgListener({ connection: databaseUrl, channels: [eventsChannel], onNotification: () => this.pump(), onConnect: () => this.pump(), meanwhile: "polling", log });
  }

  /**
   * Starts listening; events committed before start are not dispatched.
   * Rejects when the first LISTEN fails (the database is not reachable).
   */
  async start(): Promise<void> {
    this.lastRv = (await this.store.revision()).rv;
    this.listening = this.listener.run(this.stopListening.signal);
    const failed = await this.listener.firstAttempt;
    if (failed !== undefined) {
      await this.stop();
      throw new Error("listening for watch events", { cause: failed });
    }
    this.pollTimer = setInterval(() => this.pump(), this.pollMs);
    this.pollTimer.unref();
  }

  /** Whether the LISTEN connection to PostgreSQL is up. */
  connected(): boolean {
    return this.listener.connected;
  }

  /** Stops listening and polling. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.stopListening.abort();
    await this.listening;
  }

  /** Registers a listener for one resource; returns the unsubscribe function. */
  subscribe(group: string, plural: string, fn: EventListener): () => void {
    const k = `${group}/${plural}`;
    let set = this.listeners.get(k);
    if (!set) this.listeners.set(k, (set = new Set()));
    set.add(fn);
    return () => {
      set?.delete(fn);
    };
  }

  /** Number of active listeners (watches). */
  watchCount(): number {
    let n = 0;
    for (const s of this.listeners.values()) n += s.size;
    return n;
  }

  /** Resolves once the hub has dispatched revision `rv` (or stops). */
  waitFor(rv: number): Promise<void> {
    if (this.lastRv >= rv || this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      this.revisionWaiters.push({ rv, resolve });
      this.pump();
    });
  }

  /** Reads and dispatches everything committed after lastRv. */
  pump(): void {
    if (this.stopped) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    void (async () => {
      try {
        do {
          this.pumpAgain = false;
          for (;;) {
            const batch = await this.store.events(this.lastRv, undefined, undefined, 2000);
            if (batch.length === 0) break;
            for (const ev of batch) {
              this.lastRv = ev.rv;
              const set = this.listeners.get(`${ev.group}/${ev.plural}`);
              if (set) {
                for (const fn of set) {
                  try {
                    fn(ev);
                  } catch (err) {
                    this.log.error("watch listener failed", { err });
                  }
                }
              }
            }
            if (batch.length < 2000) break;
          }
          this.releaseWaiters();
        } while (this.pumpAgain);
      } catch (err) {
        this.log.warn("reading watch events failed", { err });
      } finally {
        this.pumping = false;
      }
    })();
  }

  private releaseWaiters(): void {
    for (let i = this.revisionWaiters.length - 1; i >= 0; i--) {
      const w = this.revisionWaiters[i];
      if (w && w.rv <= this.lastRv) {
        this.revisionWaiters.splice(i, 1);
        w.resolve();
      }
    }
  }
}
