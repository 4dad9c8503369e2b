/**
 * Manager: owns the metrics Registry, runs the informers of its controllers
 * (always, so a standby has warm caches) and runs the controllers only while
 * this instance leads. When leadership ends, workers stop and run() waits for
 * in-flight reconciles before the lease is released or campaigned for again.
 *
 * It is also what kind modules set themselves up with (controller-runtime's
 * SetupWithManager): `informerFor` hands out one shared informer per resource
 * (two controllers reading FabricNodes share one cache and one watch),
 * `wake(kind)` lets a reconciler requeue objects of a kind another
 * controller owns without knowing that controller (source.Channel in
 * controller-runtime), and `addRunnable` runs side loops (sweeps, listeners,
 * monitors) for the life of the manager. The manager knows no kind: resources
 * are data and kinds are names.
 */
import { setMaxListeners } from "node:events";
import type { KubernetesObject } from "@kubernetes/client-node";
import { Registry, collectDefaultMetrics } from "prom-client";
import { logger, type Logger } from "../../lib/log.js";
import type { Controller } from "./controller.js";
import { Informer, type InformerOptions } from "./informer.js";
import type { ObjectKey } from "./object.js";
import type { CustomResourceRef, ListWatchSource } from "./source.js";
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
  /** How informerFor builds informers; without it informerFor throws. */
  informers?: {
    /** The list+watch source of a resource (e.g. customResourceSource with the process's KubeConfig). */
    source: (ref: CustomResourceRef) => ListWatchSource<KubernetesObject>;
    /** Tuning shared by every informer (silence timeout, resync). */
    defaults?: Omit<InformerOptions<KubernetesObject>, "name" | "source" | "registry" | "log">;
    /** Logger the informers' loggers derive from (default: the manager's). */
    log?: Logger;
  };
}

/** A side loop run for the life of the manager (leading or not); it must return once signal aborts. */
export type Runnable = (signal: AbortSignal) => Promise<unknown>;

/** See the module comment. */
export class Manager {
  readonly registry: Registry;
  private readonly opts: ManagerOptions;
  private readonly log: Logger;
  private readonly controllers: Array<Controller<KubernetesObject>> = [];
  private readonly informers = new Set<Informer<KubernetesObject>>();
  private readonly shared = new Map<string, Informer<KubernetesObject>>();
  private readonly runnables: Array<{ name: string; run: Runnable }> = [];
  private readonly unknownKinds = new Set<string>();
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

  /**
   * The informer of a resource, created on first use and shared by every
   * caller (keyed by group, version, plural and namespace); the manager runs
   * it. `name` names it in logs and metrics (usually the kind). T must be the
   * object type of the resource; every caller of one resource must agree.
   */
  informerFor<T extends KubernetesObject>(ref: CustomResourceRef, name: string): Informer<T> {
    const key = `${ref.group}/${ref.version}/${ref.plural}/${ref.namespace ?? ""}`;
    let informer = this.shared.get(key);
    if (informer === undefined) {
      if (this.started) throw new Error("manager: create informers before start");
      const o = this.opts.informers;
      if (o === undefined) throw new Error("manager: informerFor needs the informers option");
      informer = new Informer<KubernetesObject>({
        ...o.defaults,
        name,
        source: o.source({ group: ref.group, version: ref.version, plural: ref.plural, namespace: ref.namespace }),
        registry: this.registry,
        log: (o.log ?? this.log).with({ informer: name }),
      });
      this.shared.set(key, informer);
      this.informers.add(informer);
    }
    return informer as unknown as Informer<T>;
  }

  /**
   * An enqueue function for the controller of `kind` (its Controller.kind),
   * resolved at call time so the order of setup does not matter. A
   * reconciler that changed a fact another kind publishes wakes that kind's
   * owner instead of writing its status. Like any enqueue, a wake is dropped
   * while the controller is not running; a kind without a controller is
   * logged once and ignored.
   */
  wake(kind: string): (key: ObjectKey) => void {
    return (key) => {
      const c = this.controllers.find((x) => x.kind === kind);
      if (c !== undefined) c.enqueue(key);
      else if (!this.unknownKinds.has(kind)) {
        this.unknownKinds.add(kind);
        this.log.error("wake of a kind without a controller ignored", { kind });
      }
    };
  }

  /** Adds a side loop run from start() until stop, leading or not (see Runnable). Call before start(). */
  addRunnable(name: string, run: Runnable): this {
    if (this.started) throw new Error("manager: add runnables before start");
    this.runnables.push({ name, run });
    return this;
  }

  /** Queues a reconcile of every cached object of every controller (a manual resync). */
  enqueueAll(): void {
    for (const c of this.controllers) c.enqueueAll();
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
    // Every informer, runnable and their sleeps wait on this one signal.
    setMaxListeners(Math.max(32, 4 * (this.informers.size + this.runnables.length)), stopAll.signal);
    const informers = [...this.informers].map((i) =>
      i
        .run(stopAll.signal)
        .catch((err: unknown) => this.log.error("informer stopped with an error", { informer: i.name, error: err })),
    );
    const runnables = this.runnables.map((r) =>
      r.run(stopAll.signal).catch((err: unknown) => this.log.error("runnable stopped with an error", { runnable: r.name, error: err })),
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
      await Promise.all([...informers, ...runnables]);
    }
  }

  private async lead(signal: AbortSignal, term: number | undefined): Promise<void> {
    // Every controller, its cache sync waits and its workers wait on this signal.
    setMaxListeners(Math.max(32, 8 * this.controllers.length), signal);
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
