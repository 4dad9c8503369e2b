/**
 * Manager: owns the metrics Registry, runs the informers of its controllers
 * (always, so a standby has warm caches) and runs the controllers only while
 * this instance leads. When leadership ends, workers stop and run() waits for
 * in-flight reconciles before the lease is released or campaigned for again.
 */
import type { KubernetesObject } from "@kubernetes/client-node";
import { Registry, collectDefaultMetrics } from "prom-client";
import { logger, type Logger } from "../../lib/log.js";
import type { Controller } from "./controller.js";
import type { Informer } from "./informer.js";
import { LeaderElector, type AuthorityTerm, type LeaderElectorOptions } from "./leader-election.js";

/** Options of Manager. */
export interface ManagerOptions {
  /** Default: a new Registry. */
  registry?: Registry;
  /** Also export Node process metrics (default false). */
  defaultMetrics?: boolean;
  /**
   * Lease election settings. Without them this instance always leads (single
   * instance, tests); the authority term is still drawn once at start.
   */
  leaderElection?: Omit<LeaderElectorOptions, "callbacks" | "authority" | "registry">;
  authority?: AuthorityTerm;
  /** Identity for the authority term when there is no leader election. */
  identity?: string;
  log?: Logger;
}

/** See the module comment. */
export class Manager {
  readonly registry: Registry;
  private readonly opts: ManagerOptions;
  private readonly log: Logger;
  private readonly controllers: Array<Controller<KubernetesObject>> = [];
  private readonly informers = new Set<Informer<KubernetesObject>>();
  private elector: LeaderElector | undefined;
  private leading = false;
  private started = false;

  constructor(opts: ManagerOptions = {}) {
    this.opts = opts;
    this.registry = opts.registry ?? new Registry();
    if (opts.defaultMetrics) collectDefaultMetrics({ register: this.registry });
    this.log = opts.log ?? logger("manager");
  }

  /** Adds a controller (and its informers). Call before start(). */
  add<T extends KubernetesObject>(controller: Controller<T>): this {
    if (this.started) throw new Error("manager: add controllers before start");
    this.controllers.push(controller as unknown as Controller<KubernetesObject>);
    for (const i of controller.informers()) this.informers.add(i);
    return this;
  }

  /** Adds an informer that no controller owns (e.g. a cache read by an API handler). */
  addInformer<T extends KubernetesObject>(informer: Informer<T>): this {
    if (this.started) throw new Error("manager: add informers before start");
    this.informers.add(informer as unknown as Informer<KubernetesObject>);
    return this;
  }

  /** True while the controllers run (this instance leads). */
  isLeader(): boolean {
    return this.leading;
  }

  /** Resolves true once every informer synced (false if signal aborts first). */
  async waitForSync(signal?: AbortSignal): Promise<boolean> {
    const r = await Promise.all([...this.informers].map((i) => i.waitForSync(signal)));
    return !r.includes(false);
  }

  /** Runs informers, election and controllers until signal aborts; resolves when all stopped. */
  async start(signal: AbortSignal): Promise<void> {
    if (this.started) throw new Error("manager already started");
    this.started = true;
    // Informers stop with the caller's signal, or when election/controllers fail.
    const stopAll = new AbortController();
    const onAbort = (): void => stopAll.abort();
    if (signal.aborted) stopAll.abort();
    else signal.addEventListener("abort", onAbort, { once: true });
    const informers = [...this.informers].map((i) =>
      i
        .run(stopAll.signal)
        .catch((err: unknown) => this.log.error("informer stopped with an error", { informer: i.name, error: err })),
    );
    try {
      const le = this.opts.leaderElection;
      if (le === undefined) {
        let term: number | undefined;
        if (this.opts.authority !== undefined) {
          term = await this.opts.authority.acquire(this.opts.identity ?? "standalone");
        }
        await this.lead(signal, term);
        this.opts.authority?.relinquish?.();
      } else {
        this.elector = new LeaderElector({
          ...le,
          authority: this.opts.authority,
          registry: this.registry,
          callbacks: {
            onStartedLeading: (s, term) => this.lead(s, term),
            onNewLeader: (id) => this.log.info("new leader observed", { leader: id }),
          },
        });
        await this.elector.run(signal);
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      stopAll.abort();
      await Promise.all(informers);
    }
  }

  private async lead(signal: AbortSignal, term: number | undefined): Promise<void> {
    this.leading = true;
    this.log.info("running controllers", { term, controllers: this.controllers.map((c) => c.name) });
    try {
      await Promise.all(
        this.controllers.map((c) =>
          c.run(signal).catch((err: unknown) => this.log.error("controller stopped with an error", { controller: c.name, error: err })),
        ),
      );
    } finally {
      this.leading = false;
      this.log.info("controllers stopped", { term });
    }
  }
}
