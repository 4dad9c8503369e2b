/**
 * Fans committed events out to watchers. Writers NOTIFY after each commit;
 * the hub reads new events from api_events in revision order, so every API
 * server process on the same database sees every write exactly once and in
 * order. A periodic poll covers a missed notification or a dropped LISTEN
 * connection.
 */
import pg from "pg";
import type { Logger } from "../lib/log.js";
import { eventsChannel, type StoredEvent, type Store } from "./store.js";

/** Receives events of one resource. */
export type EventListener = (ev: StoredEvent) => void;

/** The in-process event fan-out. */
export class WatchHub {
  /** The newest revision dispatched to listeners. */
  lastRv = 0;
  private readonly listeners = new Map<string, Set<EventListener>>();
  private listenClient?: pg.Client;
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
  ) {}

  /** Starts listening; events committed before start are not dispatched. */
  async start(): Promise<void> {
    this.lastRv = (await this.store.revision()).rv;
    await this.connect();
    this.pollTimer = setInterval(() => this.pump(), this.pollMs);
    this.pollTimer.unref();
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.databaseUrl });
    client.on("error", (err) => {
      this.log.warn("watch listener connection lost", { err });
      this.listenClient = undefined;
      client.end().catch(() => undefined);
      if (!this.stopped) setTimeout(() => void this.reconnect(), 500).unref();
    });
    client.on("notification", () => this.pump());
    await client.connect();
    await client.query(`LISTEN ${eventsChannel}`);
    this.listenClient = client;
  }

  private async reconnect(): Promise<void> {
    if (this.stopped || this.listenClient) return;
    try {
      await this.connect();
      this.pump();
    } catch (err) {
      this.log.warn("watch listener reconnect failed", { err });
      setTimeout(() => void this.reconnect(), 1000).unref();
    }
  }

  /** Whether the LISTEN connection to PostgreSQL is up. */
  connected(): boolean {
    return this.listenClient !== undefined;
  }

  /** Stops listening and polling. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.pollTimer) clearInterval(this.pollTimer);
    const c = this.listenClient;
    this.listenClient = undefined;
    await c?.end().catch(() => undefined);
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
