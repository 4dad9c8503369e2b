/**
 * Lease-based leader election on coordination.k8s.io/v1 (client-go's
 * leaderelection package with a LeaseLock), plus the AuthorityTerm hook that
 * fences the leader's decisions in PostgreSQL.
 *
 * Semantics follow client-go:
 * - a candidate tries every retryPeriod (with jitter) to create the Lease or
 *   take it over once the holder has not renewed for leaseDuration, measured
 *   on the local clock from when this instance observed the record change
 *   (immune to clock skew between instances);
 * - writes use optimistic concurrency (replace with metadata.resourceVersion),
 *   so two candidates never both win one round;
 * - the leader renews every retryPeriod and steps down when renewDeadline
 *   passes without a successful renewal, or at once when it sees another holder;
 * - on graceful stop (ReleaseOnCancel) it waits for its leading work to finish,
 *   then clears holderIdentity so a successor need not wait out the lease.
 * Unlike client-go (whose callers usually exit on loss), run() goes back to
 * being a candidate after losing the lease.
 */
import { CoordinationV1Api, V1MicroTime, type V1Lease } from "@kubernetes/client-node";
import { Registry } from "prom-client";
import { logger, type Logger } from "../../lib/log.js";
import type { RandomSource } from "./backoff.js";
import { realClock, sleep, type Clock } from "./clock.js";
import { runtimeMetrics, type RuntimeMetrics } from "./metrics.js";
import { httpStatusOf } from "./source.js";

/**
 * Draws a new authority term on every leadership acquisition, before
 * onStartedLeading. Implemented by PgAuthority (authority.ts).
 */
export interface AuthorityTerm {
  /** Increments the term for identity and returns it. */
  acquire(identity: string): Promise<number>;
  /** Called when leadership ends: fenced operations must fail from now on. */
  relinquish?(): void;
}

/** The leader election fields of a Lease spec. */
export interface LeaseRecord {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: Date;
  renewTime?: Date;
  leaseTransitions?: number;
}

/** Reads and writes one Lease. Writes must fail on a resourceVersion conflict. */
export interface LeaseClient {
  /** The Lease, or undefined when it does not exist. */
  get(): Promise<{ record: LeaseRecord; resourceVersion: string } | undefined>;
  /** Creates the Lease; fails if it exists. */
  create(record: LeaseRecord): Promise<void>;
  /** Replaces the Lease spec if its resourceVersion is still resourceVersion. */
  update(record: LeaseRecord, resourceVersion: string): Promise<void>;
  /** Human-readable "namespace/name" for logs. */
  describe(): string;
}

/** A LeaseClient over client-node's CoordinationV1Api. */
export function kubeLeaseClient(api: CoordinationV1Api, namespace: string, name: string): LeaseClient {
  const toSpec = (r: LeaseRecord): V1Lease["spec"] => ({
    holderIdentity: r.holderIdentity,
    leaseDurationSeconds: r.leaseDurationSeconds,
    leaseTransitions: r.leaseTransitions,
    // MicroTime serialises with microsecond precision, as the API requires.
    acquireTime: r.acquireTime ? new V1MicroTime(r.acquireTime.getTime()) : undefined,
    renewTime: r.renewTime ? new V1MicroTime(r.renewTime.getTime()) : undefined,
  });
  const toDate = (d: Date | string | undefined): Date | undefined => (d === undefined ? undefined : new Date(d));
  return {
    describe: () => `${namespace}/${name}`,
    async get() {
      let lease: V1Lease;
      try {
        lease = await api.readNamespacedLease({ name, namespace });
      } catch (err) {
        if (httpStatusOf(err) === 404) return undefined;
        throw err;
      }
      const s = lease.spec ?? {};
      return {
        resourceVersion: lease.metadata?.resourceVersion ?? "",
        record: {
          holderIdentity: s.holderIdentity,
          leaseDurationSeconds: s.leaseDurationSeconds,
          leaseTransitions: s.leaseTransitions,
          acquireTime: toDate(s.acquireTime),
          renewTime: toDate(s.renewTime),
        },
      };
    },
    async create(record) {
      await api.createNamespacedLease({
        namespace,
        body: { apiVersion: "coordination.k8s.io/v1", kind: "Lease", metadata: { name, namespace }, spec: toSpec(record) },
      });
    },
    async update(record, resourceVersion) {
      await api.replaceNamespacedLease({
        name,
        namespace,
        body: {
          apiVersion: "coordination.k8s.io/v1",
          kind: "Lease",
          metadata: { name, namespace, resourceVersion },
          spec: toSpec(record),
        },
      });
    },
  };
}

/** Callbacks of LeaderElector. */
export interface LeaderCallbacks {
  /**
   * Called when this instance becomes leader, after AuthorityTerm.acquire.
   * signal aborts when leadership ends; the returned promise should settle
   * once the work it started has stopped (run() waits for it).
   */
  onStartedLeading(signal: AbortSignal, term: number | undefined): void | Promise<void>;
  /** Called once leadership ended and the leading work settled. */
  onStoppedLeading?(): void;
  /** Called when the observed holder changes (including to this instance). */
  onNewLeader?(identity: string): void;
}

/** Options of LeaderElector. Durations follow client-go's defaults. */
export interface LeaderElectorOptions {
  lease: LeaseClient;
  /** Unique per process (e.g. hostname + random suffix). */
  identity: string;
  callbacks: LeaderCallbacks;
  /** How long a lease is honoured without renewal (default 15 s). */
  leaseDurationMs?: number;
  /** The leader steps down when it could not renew for this long (default 10 s). */
  renewDeadlineMs?: number;
  /** Interval between acquire and renew attempts (default 2 s). */
  retryPeriodMs?: number;
  /** Clear the lease on graceful stop (default true). */
  releaseOnCancel?: boolean;
  authority?: AuthorityTerm;
  /** Label of leader_election_master_status (default: the lease's namespace/name). */
  name?: string;
  clock?: Clock;
  random?: RandomSource;
  registry?: Registry;
  log?: Logger;
}

type Attempt = "ok" | "held" | "error";

function sameRecord(a: LeaseRecord | undefined, b: LeaseRecord | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return (
    a.holderIdentity === b.holderIdentity &&
    a.leaseDurationSeconds === b.leaseDurationSeconds &&
    a.leaseTransitions === b.leaseTransitions &&
    a.acquireTime?.getTime() === b.acquireTime?.getTime() &&
    a.renewTime?.getTime() === b.renewTime?.getTime()
  );
}

/** See the module comment. */
export class LeaderElector {
  readonly identity: string;
  private readonly lease: LeaseClient;
  private readonly callbacks: LeaderCallbacks;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly releaseOnCancel: boolean;
  private readonly authority: AuthorityTerm | undefined;
  private readonly name: string;
  private readonly clock: Clock;
  private readonly random: RandomSource;
  private readonly metrics: RuntimeMetrics | undefined;
  private readonly log: Logger;

  private leading = false;
  private term: number | undefined;
  private observed: LeaseRecord | undefined;
  private observedAt = 0;
  private leader: string | undefined;

  constructor(opts: LeaderElectorOptions) {
    this.identity = opts.identity;
    this.lease = opts.lease;
    this.callbacks = opts.callbacks;
    this.leaseDurationMs = opts.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = opts.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = opts.retryPeriodMs ?? 2_000;
    this.releaseOnCancel = opts.releaseOnCancel ?? true;
    this.authority = opts.authority;
    this.name = opts.name ?? opts.lease.describe();
    this.clock = opts.clock ?? realClock;
    this.random = opts.random ?? Math.random;
    this.metrics = opts.registry ? runtimeMetrics(opts.registry) : undefined;
    this.log = opts.log ?? logger("leader-election", { lease: opts.lease.describe(), identity: opts.identity });
    if (!(this.leaseDurationMs > this.renewDeadlineMs && this.renewDeadlineMs > this.retryPeriodMs * 1.2)) {
      throw new Error("leader election needs leaseDuration > renewDeadline > 1.2 * retryPeriod");
    }
    if (opts.identity === "") throw new Error("leader election needs a non-empty identity");
    this.metrics?.leaderStatus.set({ name: this.name }, 0);
  }

  /** True while this instance holds the lease and its authority term. */
  isLeader(): boolean {
    return this.leading;
  }

  /** The authority term of the current leadership, if leading. */
  currentTerm(): number | undefined {
    return this.leading ? this.term : undefined;
  }

  /** The last observed holder of the lease. */
  currentLeader(): string | undefined {
    return this.leader;
  }

  /** Campaigns, leads and campaigns again after a loss, until signal aborts. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      if (!(await this.acquire(signal))) break;
      await this.lead(signal);
    }
  }

  /** Tries until the lease is ours; false when signal aborted first. */
  private async acquire(signal: AbortSignal): Promise<boolean> {
    this.log.info("attempting to acquire leader lease");
    while (!signal.aborted) {
      if ((await this.tryAcquireOrRenew()) === "ok") {
        this.log.info("acquired leader lease");
        return true;
      }
      const wait = this.retryPeriodMs + this.random() * 1.2 * this.retryPeriodMs;
      await sleep(this.clock, wait, signal);
    }
    return false;
  }

  /** Holds the lease: draws a term, runs onStartedLeading, renews until lost or stopped. */
  private async lead(signal: AbortSignal): Promise<void> {
    const renewStop = new AbortController();
    const leaderCtl = new AbortController();
    let lost = false;
    const renewing = this.renewLoop(renewStop.signal).then((r) => {
      if (r === "lost") {
        lost = true;
        this.log.warn("lost leader lease");
        leaderCtl.abort();
      }
    });
    const onStop = (): void => leaderCtl.abort();
    signal.addEventListener("abort", onStop, { once: true });
    // A stop that arrived while the lease was being acquired must not be missed.
    if (signal.aborted) leaderCtl.abort();

    let started = false;
    let work: Promise<void> = Promise.resolve();
    try {
      if (this.authority !== undefined) {
        // Not abortable: a term drawn must be known so it can be relinquished.
        this.term = await this.authority.acquire(this.identity);
      }
      if (!leaderCtl.signal.aborted) {
        started = true;
        this.leading = true;
        this.metrics?.leaderStatus.set({ name: this.name }, 1);
        this.metrics?.leaderTransitions.inc({ name: this.name });
        this.log.info("started leading", { term: this.term });
        const term = this.term;
        work = Promise.resolve()
          .then(() => this.callbacks.onStartedLeading(leaderCtl.signal, term))
          .catch((err: unknown) => this.log.error("leading work failed", { error: err }));
        await new Promise<void>((resolve) => {
          if (leaderCtl.signal.aborted) resolve();
          else leaderCtl.signal.addEventListener("abort", () => resolve(), { once: true });
        });
      }
    } catch (err) {
      this.log.error("drawing authority term failed; giving up the lease", { error: err });
    } finally {
      signal.removeEventListener("abort", onStop);
      this.leading = false;
      this.metrics?.leaderStatus.set({ name: this.name }, 0);
      if (lost) this.authority?.relinquish?.();
      // Keep renewing while the work winds down, so a graceful handover never
      // overlaps with a successor (a lost lease stops renewing by itself).
      await work;
      this.authority?.relinquish?.();
      this.term = undefined;
      renewStop.abort();
      await renewing;
      if (!lost && (this.releaseOnCancel || !started)) await this.release();
      if (started) {
        this.log.info("stopped leading");
        this.callbacks.onStoppedLeading?.();
      }
      if (!started && !signal.aborted) await sleep(this.clock, this.retryPeriodMs, signal);
    }
  }

  /** Renews every retryPeriod; "lost" after renewDeadline without success or on seeing another holder. */
  private async renewLoop(stop: AbortSignal): Promise<"lost" | "stopped"> {
    let lastRenew = this.clock.now();
    for (;;) {
      if (!(await sleep(this.clock, this.retryPeriodMs, stop))) return "stopped";
      const remaining = this.renewDeadlineMs - (this.clock.now() - lastRenew);
      const timeout = new AbortController();
      const result = await Promise.race([
        this.tryAcquireOrRenew(),
        sleep(this.clock, Math.max(0, remaining), timeout.signal).then((): Attempt => "error"),
      ]);
      timeout.abort();
      if (stop.aborted) return "stopped";
      if (result === "ok") {
        lastRenew = this.clock.now();
        continue;
      }
      if (result === "held") return "lost";
      if (this.clock.now() - lastRenew >= this.renewDeadlineMs) return "lost";
      this.log.warn("failed to renew leader lease, retrying", { sinceLastRenewMs: this.clock.now() - lastRenew });
    }
  }

  private async tryAcquireOrRenew(): Promise<Attempt> {
    const now = new Date(this.clock.now());
    const desired: LeaseRecord = {
      holderIdentity: this.identity,
      leaseDurationSeconds: Math.ceil(this.leaseDurationMs / 1000),
      acquireTime: now,
      renewTime: now,
      leaseTransitions: 0,
    };
    let current: Awaited<ReturnType<LeaseClient["get"]>>;
    try {
      current = await this.lease.get();
    } catch (err) {
      this.log.warn("reading leader lease failed", { error: err });
      return "error";
    }
    if (current === undefined) {
      try {
        await this.lease.create(desired);
      } catch (err) {
        this.log.info("creating leader lease failed", { error: err });
        return "error";
      }
      this.observe(desired);
      return "ok";
    }
    const rec = current.record;
    if (!sameRecord(rec, this.observed)) this.observe(rec);
    const holder = rec.holderIdentity ?? "";
    if (holder !== "" && holder !== this.identity && this.observedAt + this.leaseDurationMs > this.clock.now()) {
      return "held";
    }
    if (holder === this.identity) {
      desired.acquireTime = rec.acquireTime ?? now;
      desired.leaseTransitions = rec.leaseTransitions ?? 0;
    } else {
      desired.leaseTransitions = (rec.leaseTransitions ?? 0) + 1;
    }
    try {
      await this.lease.update(desired, current.resourceVersion);
    } catch (err) {
      this.log.info("updating leader lease failed", { error: err, conflict: httpStatusOf(err) === 409 });
      return "error";
    }
    this.observe(desired);
    return "ok";
  }

  private observe(rec: LeaseRecord): void {
    this.observed = rec;
    this.observedAt = this.clock.now();
    const holder = rec.holderIdentity ?? "";
    if (holder !== "" && holder !== this.leader) {
      this.leader = holder;
      try {
        this.callbacks.onNewLeader?.(holder);
      } catch (err) {
        this.log.error("onNewLeader threw", { error: err });
      }
    }
  }

  /** Clears holderIdentity if this instance still holds the lease (conflict-safe). */
  private async release(): Promise<void> {
    try {
      const current = await this.lease.get();
      if (current === undefined || current.record.holderIdentity !== this.identity) return;
      const now = new Date(this.clock.now());
      await this.lease.update(
        {
          holderIdentity: "",
          leaseDurationSeconds: 1,
          acquireTime: now,
          renewTime: now,
          leaseTransitions: current.record.leaseTransitions ?? 0,
        },
        current.resourceVersion,
      );
      this.observed = undefined;
      this.log.info("released leader lease");
    } catch (err) {
      this.log.warn("releasing leader lease failed", { error: err });
    }
  }
}
