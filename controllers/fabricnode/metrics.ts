/**
 * Fleet gauges of the FabricNode kind, sampled from the FabricNode cache at
 * scrape time: nodes by cluster, published health and membership, and each
 * active node's certificate expiry (the agent renews it; a node whose
 * expiry comes close did not).
 */
import type { Registry } from "prom-client";
import type { FabricNodeObject as FabricNode } from "../objects.js";
import { cacheGauge, countBy, type Informer } from "../runtime/index.js";

/** Registers the FabricNode fleet gauges on registry. */
export function registerNodeGauges(registry: Registry, informer: Informer<FabricNode>): void {
  cacheGauge({
    registry,
    name: "fabric_nodes",
    help: "FabricNodes by cluster, published health (Healthy, Degraded, Unreachable, Unknown; None before the first heartbeat) and membership.",
    labelNames: ["cluster", "health", "membership"],
    informer,
    samples: (nodes) => countBy(nodes, (n) => ({ cluster: n.spec.cluster, health: n.status?.health ?? "None", membership: n.spec.membership ?? "Active" })),
  });
  cacheGauge({
    registry,
    name: "fabric_node_certificate_expiry_timestamp_seconds",
    help: "When the active certificate of each Active FabricNode expires (Unix seconds).",
    labelNames: ["cluster", "node"],
    informer,
    samples: function* (nodes) {
      for (const n of nodes) {
        const notAfter = n.status?.identity?.notAfter;
        const name = n.metadata.name;
        if ((n.spec.membership ?? "Active") !== "Active" || notAfter === undefined || name === undefined) continue;
        const t = Date.parse(notAfter);
        if (Number.isFinite(t)) yield { labels: { cluster: n.spec.cluster, node: name }, value: t / 1000 };
      }
    },
  });
}
