/**
 * One LISTEN connection kept alive for as long as its owner runs. Several
 * parts of the control plane wake on PostgreSQL notifications (watch events,
 * snapshot changes, agent identity changes, workload reports, dirty
 * snapshots) and all need the same care: a dedicated connection (LISTEN is
 * per session, so it cannot go back to the pool between uses), detection of
 * a lost connection ('error', 'end', and a periodic probe for one that died
 * silently, e.g. a dropped NAT entry), reconnection with backoff, a
 * "connected" state the owner can expose (readiness, or whether a cache may
 * be trusted), and a resync after every (re)connect, since what was
 * committed while nobody listened was never announced. Notifications only
 * wake; owners read the actual state, so a resync is "read again".
 */
import pg from "pg";
import type { Logger } from "../log.js";

/** Options of {@link PgListener}. */
export interface PgListenerOptions {
  /**
   * Where the connection comes from. A pool: a client is checked out for as
   * long as the LISTEN lasts (it holds one slot of the pool). A connection
   * string: a pg.Client of its own, outside any pool.
   */
  connection: pg.Pool | string;
  /** Channels to LISTEN on (SQL identifiers; quoted when sent). */
  channels: readonly string[];
  /** Called for every notification on the connection. A throw is logged, never propagated. */
  onNotification: (n: pg.Notification) => void;
  /**
   * Called synchronously right after `connected` becomes true, on the first
   * connection and on every reconnection: read again what may have been
   * missed while not listening. A throw is logged.
   */
  onConnect?: () => void;
  /**
   * Called synchronously right after `connected` becomes false because the
   * connection was lost (not on stop). A throw is logged.
   */
  onDisconnect?: (err: Error | undefined) => void;
  /** What the owner does while not listening, for the logs (e.g. "polling"). */
  meanwhile?: string;
  log: Logger;
  /** First delay before reconnecting, doubled per failed attempt (default 500 ms). */
  retryMs?: number;
  /** Longest delay between attempts (default 5 s, at least retryMs). */
  maxRetryMs?: number;
  /** Period of the liveness probe (`SELECT 1`) on the connection; 0 disables (default 30 s). */
  probeMs?: number;
  /** A probe or the UNLISTEN at stop taking longer than this counts as a failure (default 10 s). */
  probeTimeoutMs?: number;
}

type ListenClient = pg.Client | pg.PoolClient;

interface Handlers {
  error: (err: Error) => void;
  end: () => void;
  notification: (n: pg.Notification) => void;
}

function attach(c: ListenClient, h: Handlers): void {
  c.on("error", h.error);
  c.on("end", h.end);
  c.on("notification", h.notification);
}

function detach(c: ListenClient, h: Handlers): void {
  c.off("error", h.error);
  c.off("end", h.end);
  c.off("notification", h.notification);
}

/**
 * Keeps a LISTEN on `channels` while {@link PgListener.run} runs.
 *
 * Contract:
 * - `connected` is true exactly while the LISTEN is in place on a
 *   connection not known to be lost; every notification committed after it
 *   became true is delivered to `onNotification` while it stays true.
 * - After each successful LISTEN, `onConnect` runs (resync). After a loss,
 *   `onDisconnect` runs, then attempts repeat after `retryMs`, doubling up to
 *   `maxRetryMs` (with jitter) until one succeeds or the signal aborts.
 * - Every `probeMs` a `SELECT 1` on the connection must answer within
 *   `probeTimeoutMs`, or the connection is treated as lost and replaced.
 * - On abort: a pooled client is UNLISTENed and released (destroyed when
 *   UNLISTEN fails or times out); an own client is ended, which ends its
 *   LISTENs with the session. `run` resolves only after that and never
 *   rejects, except when called a second time: an instance runs once.
 */
export class PgListener {
  private isConnected = false;
  private ran = false;
  private resolveFirst: (err: Error | undefined) => void = () => undefined;
  private readonly listenSql: string;
  private readonly unlistenSql: string;
  /**
   * Settles once the first attempt has finished: undefined when the LISTEN
   * is in place, else that attempt's error (attempts go on in the background).
   */
  readonly firstAttempt: Promise<Error | undefined>;

  constructor(private readonly o: PgListenerOptions) {
    if (o.channels.length === 0) throw new Error("listening on no channel");
    this.listenSql = o.channels.map((c) => `LISTEN ${quoteIdent(c)}`).join("; ");
    this.unlistenSql = o.channels.map((c) => `UNLISTEN ${quoteIdent(c)}`).join("; ");
    this.firstAttempt = new Promise((resolve) => {
      this.resolveFirst = resolve;
    });
  }

  /** True while the LISTEN is in place (see the class contract). */
  get connected(): boolean {
    return this.isConnected;
  }

  /** Listens, reconnecting as needed, until `signal` aborts; resolves once the connection is given back. */
  async run(signal: AbortSignal): Promise<void> {
    if (this.ran) throw new Error("a PgListener runs once");
    this.ran = true;
    const retryMs = this.o.retryMs ?? 500;
    const maxRetryMs = Math.max(retryMs, this.o.maxRetryMs ?? 5_000);
    // Failed attempts since the last LISTEN that held.
    let failures = 0;
    try {
      while (!signal.aborted) {
        const held = await this.session(signal, failures === 0);
        if (signal.aborted) break;
        failures = held ? 0 : failures + 1;
        const delay = Math.min(maxRetryMs, retryMs * 2 ** Math.min(Math.max(failures - 1, 0), 20));
        await sleep(delay * (0.8 + 0.4 * Math.random()), signal);
      }
    } finally {
      this.isConnected = false;
      this.resolveFirst(new Error("listener stopped before listening"));
    }
  }

  /**
   * One connection: connect, LISTEN, hold until lost or aborted, give it
   * back. Resolves true when the LISTEN was in place.
   */
  private async session(signal: AbortSignal, firstFailure: boolean): Promise<boolean> {
    const log = this.o.log;
    let onLost: (err: Error | undefined) => void = () => undefined;
    const lost = new Promise<Error | undefined>((resolve) => {
      onLost = resolve;
    });
    const handlers = {
      error: (err: Error): void => onLost(err),
      end: (): void => onLost(new Error("connection ended")),
      notification: (n: pg.Notification): void => {
        try {
          this.o.onNotification(n);
        } catch (err) {
          log.error("notification handler failed", { channel: n.channel, err });
        }
      },
    };
    const onAbort = (): void => onLost(undefined);
    let client: ListenClient | undefined;
    let probe: NodeJS.Timeout | undefined;
    // Whether to UNLISTEN and keep the connection (pool) rather than destroy it.
    let healthy = false;
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      if (typeof this.o.connection === "string") {
        client = new pg.Client({ connectionString: this.o.connection, application_name: "access-fabric" });
        attach(client, handlers);
        await client.connect();
      } else {
        client = await this.o.connection.connect();
        attach(client, handlers);
      }
      const c = client;
      // A connection lost (or a stop) during LISTEN settles the race either way.
      const failed = await Promise.race([c.query(this.listenSql).then(() => undefined), lost.then((err) => err ?? new Error("stopped while listening"))]);
      if (failed !== undefined) throw failed;
      this.isConnected = true;
      log.debug("listening", { channels: this.o.channels });
      this.call("onConnect", () => this.o.onConnect?.());
      this.resolveFirst(undefined);
      const probeMs = this.o.probeMs ?? 30_000;
      if (probeMs > 0) {
        let probing = false;
        probe = setInterval(() => {
          if (probing) return;
          probing = true;
          withTimeout(c.query("SELECT 1"), this.o.probeTimeoutMs ?? 10_000, "listener probe timed out")
            .catch((err: unknown) => onLost(asError(err)))
            .finally(() => {
              probing = false;
            });
        }, probeMs);
        probe.unref();
      }
      const err = await lost;
      this.isConnected = false;
      if (signal.aborted) healthy = true;
      else {
        log.warn("postgres listener lost; reconnecting", { channels: this.o.channels, meanwhile: this.o.meanwhile, err });
        this.call("onDisconnect", () => this.o.onDisconnect?.(err));
      }
      return true;
    } catch (err) {
      if (!signal.aborted) {
        const fields = { channels: this.o.channels, meanwhile: this.o.meanwhile, err };
        // The first failure in a row is worth a warning; the retries that follow are not.
        if (firstFailure) log.warn("postgres listener cannot listen; retrying", fields);
        else log.debug("postgres listener cannot listen; retrying", fields);
        this.resolveFirst(asError(err));
      }
      return false;
    } finally {
      this.isConnected = false;
      if (probe !== undefined) clearInterval(probe);
      signal.removeEventListener("abort", onAbort);
      if (client !== undefined) await this.giveBack(client, handlers, healthy);
    }
  }

  /**
   * Gives the connection back: a pooled client believed healthy is
   * UNLISTENed and returned to the pool; any other is destroyed (an own
   * client is ended, which drops its LISTENs with the session).
   */
  private async giveBack(client: ListenClient, handlers: Handlers, healthy: boolean): Promise<void> {
    let keep = false;
    if (healthy && typeof this.o.connection !== "string") {
      keep = await withTimeout(client.query(this.unlistenSql), this.o.probeTimeoutMs ?? 10_000, "unlisten timed out").then(
        () => true,
        () => false,
      );
    }
    detach(client, handlers);
    if (typeof this.o.connection === "string") {
      // Errors while ending have no one to report to; without a listener they would crash the process.
      client.on("error", () => undefined);
      // A connection that went silent may never confirm the close: do not wait for it past the probe timeout.
      await withTimeout((client as pg.Client).end(), this.o.probeTimeoutMs ?? 10_000, "closing timed out").catch(() => undefined);
    } else {
      // The pool puts its own 'error' listener back on release.
      (client as pg.PoolClient).release(!keep);
    }
  }

  private call(what: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.o.log.error(`listener ${what} callback failed`, { channels: this.o.channels, err });
    }
  }
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
