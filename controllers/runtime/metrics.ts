/**
 * Prometheus metrics of the controller runtime. Names follow controller-runtime
 * and client-go (workqueue_*, controller_runtime_*, leader_election_*) so the
 * usual dashboards work; informer metrics, which client-go does not export,
 * carry the fabric_ prefix.
 *
 * Metrics are created once per Registry (several informers, queues and
 * controllers share one set of metric objects, distinguished by labels).
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";

/** Collects values at scrape time (queue depth, age of the oldest item, ...). */
export type GaugeSource = () => number;

/** All runtime metrics registered on one Registry. */
export class RuntimeMetrics {
  readonly informerRelists: Counter<"informer">;
  readonly informerWatchRestarts: Counter<"informer" | "reason">;
  readonly informerEvents: Counter<"informer" | "type">;
  readonly informerResyncs: Counter<"informer">;
  readonly informerObjects: Gauge<"informer">;

  readonly queueDepth: Gauge<"name">;
  readonly queueAdds: Counter<"name">;
  readonly queueLatency: Histogram<"name">;
  readonly queueWorkDuration: Histogram<"name">;
  readonly queueRetries: Counter<"name">;
  readonly queueLongestRunning: Gauge<"name">;
  readonly queueUnfinishedWork: Gauge<"name">;
  readonly queueOldestItemAge: Gauge<"name">;

  readonly reconcileTotal: Counter<"controller" | "result">;
  readonly reconcileErrors: Counter<"controller">;
  readonly reconcileTime: Histogram<"controller">;
  readonly activeWorkers: Gauge<"controller">;

  readonly leaderStatus: Gauge<"name">;
  readonly leaderTransitions: Counter<"name">;
  readonly authorityTerm: Gauge<"identity">;
  readonly fencedRejections: Counter;

  /** Per-(metric, label) sources polled at scrape time. */
  private readonly collectors = new Map<Gauge<"name">, Map<string, GaugeSource>>();

  constructor(readonly registry: Registry) {
    const registers = [registry];
    const buckets = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
    // Arrow functions: prom-client calls collect with `this` bound to the metric.
    const collector = (gauge: () => Gauge<"name">) => (): void => {
      const g = gauge();
      const sources = this.collectors.get(g);
      if (sources === undefined) return;
      for (const [name, src] of sources) g.set({ name }, src());
    };

    this.informerRelists = new Counter({
      name: "fabric_informer_relists_total",
      help: "Full lists performed by an informer (initial sync, 410 Gone, silent watch).",
      labelNames: ["informer"],
      registers,
    });
    this.informerWatchRestarts = new Counter({
      name: "fabric_informer_watch_restarts_total",
      help: "Watch streams restarted, by reason (closed, error, gone, silent, timeout).",
      labelNames: ["informer", "reason"],
      registers,
    });
    this.informerEvents = new Counter({
      name: "fabric_informer_events_total",
      help: "Watch events received, by type (ADDED, MODIFIED, DELETED, BOOKMARK, ERROR).",
      labelNames: ["informer", "type"],
      registers,
    });
    this.informerResyncs = new Counter({
      name: "fabric_informer_resyncs_total",
      help: "Periodic resyncs that re-delivered the cache to handlers.",
      labelNames: ["informer"],
      registers,
    });
    this.informerObjects = new Gauge({
      name: "fabric_informer_objects",
      help: "Objects in the informer cache.",
      labelNames: ["informer"],
      registers,
    });

    this.queueDepth = new Gauge({
      name: "workqueue_depth",
      help: "Current depth of the workqueue (keys ready to be processed).",
      labelNames: ["name"],
      registers,
      collect: collector(() => this.queueDepth),
    });
    this.queueAdds = new Counter({
      name: "workqueue_adds_total",
      help: "Adds handled by the workqueue (duplicates included).",
      labelNames: ["name"],
      registers,
    });
    this.queueLatency = new Histogram({
      name: "workqueue_queue_duration_seconds",
      help: "How long a key waits in the workqueue before it is processed.",
      labelNames: ["name"],
      buckets,
      registers,
    });
    this.queueWorkDuration = new Histogram({
      name: "workqueue_work_duration_seconds",
      help: "How long processing a key takes.",
      labelNames: ["name"],
      buckets,
      registers,
    });
    this.queueRetries = new Counter({
      name: "workqueue_retries_total",
      help: "Rate-limited re-adds (retries) handled by the workqueue.",
      labelNames: ["name"],
      registers,
    });
    this.queueLongestRunning = new Gauge({
      name: "workqueue_longest_running_processor_seconds",
      help: "How long the longest running processor has been running.",
      labelNames: ["name"],
      registers,
      collect: collector(() => this.queueLongestRunning),
    });
    this.queueUnfinishedWork = new Gauge({
      name: "workqueue_unfinished_work_seconds",
      help: "Seconds of work in progress not yet observed by work_duration (sum over in-flight keys).",
      labelNames: ["name"],
      registers,
      collect: collector(() => this.queueUnfinishedWork),
    });
    this.queueOldestItemAge = new Gauge({
      name: "workqueue_oldest_item_age_seconds",
      help: "Age of the oldest key waiting in the workqueue.",
      labelNames: ["name"],
      registers,
      collect: collector(() => this.queueOldestItemAge),
    });

    this.reconcileTotal = new Counter({
      name: "controller_runtime_reconcile_total",
      help: "Reconciliations by controller and result (success, requeue, requeue_after, error, terminal_error).",
      labelNames: ["controller", "result"],
      registers,
    });
    this.reconcileErrors = new Counter({
      name: "controller_runtime_reconcile_errors_total",
      help: "Reconciliations that ended in an error (retried or terminal).",
      labelNames: ["controller"],
      registers,
    });
    this.reconcileTime = new Histogram({
      name: "controller_runtime_reconcile_time_seconds",
      help: "Duration of reconciliations.",
      labelNames: ["controller"],
      buckets,
      registers,
    });
    this.activeWorkers = new Gauge({
      name: "controller_runtime_active_workers",
      help: "Workers currently running a reconcile.",
      labelNames: ["controller"],
      registers,
    });

    this.leaderStatus = new Gauge({
      name: "leader_election_master_status",
      help: "1 while this instance holds the lease, 0 otherwise.",
      labelNames: ["name"],
      registers,
    });
    this.leaderTransitions = new Counter({
      name: "fabric_leader_election_transitions_total",
      help: "Times this instance gained leadership.",
      labelNames: ["name"],
      registers,
    });
    this.authorityTerm = new Gauge({
      name: "fabric_authority_term",
      help: "Authority term this instance acquired (0 when it holds none).",
      labelNames: ["identity"],
      registers,
    });
    this.fencedRejections = new Counter({
      name: "fabric_authority_fenced_total",
      help: "Fenced transactions refused because the authority term moved on.",
      registers,
    });
  }

  /** Registers a scrape-time source for a gauge labelled by name; returns an unregister function. */
  addSource(gauge: Gauge<"name">, name: string, src: GaugeSource): () => void {
    let sources = this.collectors.get(gauge);
    if (sources === undefined) {
      sources = new Map();
      this.collectors.set(gauge, sources);
    }
    sources.set(name, src);
    return () => {
      if (sources?.get(name) !== src) return;
      sources.delete(name);
      gauge.remove({ name });
    };
  }
}

const byRegistry = new WeakMap<Registry, RuntimeMetrics>();

/** The runtime metrics of a registry, created on first use. */
export function runtimeMetrics(registry: Registry): RuntimeMetrics {
  let m = byRegistry.get(registry);
  if (m === undefined) {
    m = new RuntimeMetrics(registry);
    byRegistry.set(registry, m);
  }
  return m;
}
