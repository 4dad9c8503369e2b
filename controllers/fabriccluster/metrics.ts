/**
 * Role coverage gauges of the FabricCluster kind, sampled from the
 * FabricCluster cache at scrape time (status.roleCoverage, which this kind's
 * controller publishes): per cluster and role, the nodes holding it and how
 * many of them are healthy. A role with holders and none ready is a
 * coverage gap.
 */
import type { Registry } from "prom-client";
import type { FabricClusterObject as FabricCluster } from "../objects.js";
import { cacheGauge, type Informer } from "../runtime/index.js";

/** Registers the role coverage gauges on registry. */
export function registerCoverageGauges(registry: Registry, informer: Informer<FabricCluster>): void {
  const coverage = function* (clusters: readonly FabricCluster[], field: "assigned" | "ready") {
    for (const c of clusters) {
      const cluster = c.metadata.name;
      if (cluster === undefined) continue;
      for (const r of c.status?.roleCoverage ?? []) yield { labels: { cluster, role: r.role }, value: r[field] ?? 0 };
    }
  };
  cacheGauge({
    registry,
    name: "fabric_role_coverage_assigned_nodes",
    help: "Nodes holding each role, per cluster (FabricCluster status.roleCoverage).",
    labelNames: ["cluster", "role"],
    informer,
    samples: (cs) => coverage(cs, "assigned"),
  });
  cacheGauge({
    registry,
    name: "fabric_role_coverage_ready_nodes",
    help: "Healthy nodes holding each role, per cluster (FabricCluster status.roleCoverage).",
    labelNames: ["cluster", "role"],
    informer,
    samples: (cs) => coverage(cs, "ready"),
  });
}
