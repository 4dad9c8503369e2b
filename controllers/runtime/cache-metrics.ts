/**
 * Gauges read from an informer cache at scrape time (kube-state-metrics in
 * miniature): the kind that owns a resource says which samples its cached
 * objects give (nodes by health, certificate expiry, role coverage, ...),
 * the runtime knows no kind. Nothing is sampled before the cache synced, so
 * a standby's warm cache reports too and a cold one reports nothing rather
 * than zeros.
 */
import type { KubernetesObject } from "@kubernetes/client-node";
import { Gauge, type Registry } from "prom-client";
import type { Informer } from "./informer.js";

/** One sample of a cache gauge. */
export interface CacheSample<L extends string> {
  labels: Record<L, string>;
  value: number;
}

/** Options of cacheGauge. */
export interface CacheGaugeOptions<T extends KubernetesObject, L extends string> {
  registry: Registry;
  name: string;
  help: string;
  labelNames: readonly L[];
  informer: Informer<T>;
  /** The samples of the cached objects (read-only: never mutate them). */
  samples: (objects: readonly T[]) => Iterable<CacheSample<L>>;
}

/** Registers a gauge sampled from `informer` at every scrape (replacing one of the same name on the registry). */
export function cacheGauge<T extends KubernetesObject, L extends string>(o: CacheGaugeOptions<T, L>): Gauge<L> {
  if (o.registry.getSingleMetric(o.name) !== undefined) o.registry.removeSingleMetric(o.name);
  return new Gauge<L>({
    name: o.name,
    help: o.help,
    labelNames: o.labelNames,
    registers: [o.registry],
    collect() {
      this.reset();
      if (!o.informer.hasSynced()) return;
      for (const s of o.samples(o.informer.list())) this.set(s.labels, s.value);
    },
  });
}

/** Counts objects by the labels `key` gives them (undefined: not counted). */
export function countBy<T, L extends string>(objects: readonly T[], key: (o: T) => Record<L, string> | undefined): CacheSample<L>[] {
  const counts = new Map<string, CacheSample<L>>();
  for (const o of objects) {
    const labels = key(o);
    if (labels === undefined) continue;
    const k = JSON.stringify(labels);
    const s = counts.get(k);
    if (s === undefined) counts.set(k, { labels, value: 1 });
    else s.value++;
  }
  return [...counts.values()];
}
