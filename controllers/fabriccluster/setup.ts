/**
 * Registers the FabricCluster kind: its controller (which alone writes
 * FabricCluster status, role coverage and node counts included), woken by
 * the FabricNode changes that move a count, and the orphan sweep of its rows.
 */
import { meshReportsOf } from "../../lib/state/mesh.js";
import { RESOURCES } from "../../lib/api/types.generated.js";
import type { FabricKind } from "../kind.js";
import type { FabricClusterObject as FabricCluster, FabricNodeObject as FabricNode } from "../objects.js";
import { Controller, jsonEqual, UpdateWhen, watchSecondary, runOrphanSweeps } from "../runtime/index.js";
import { registerCoverageGauges } from "./metrics.js";
import { FabricClusterReconciler } from "./reconciler.js";

/** See the module comment. */
export const fabricClusterKind: FabricKind = {
  kind: "FabricCluster",
  setup(mgr, d) {
    const informer = mgr.informerFor<FabricCluster>(RESOURCES.FabricCluster, "FabricCluster");
    const nodes = mgr.informerFor<FabricNode>(RESOURCES.FabricNode, "FabricNode");
    const controller = new Controller<FabricCluster>({
      name: "fabriccluster",
      kind: "FabricCluster",
      informer,
      reconciler: new FabricClusterReconciler({ informer, nodes, clusters: d.stores.clusters, roles: d.stores.roles, kek: d.kek, api: d.api, term: d.term, identity: d.identity, events: d.events,
        meshReports: (cluster) => meshReportsOf(d.pool, cluster), ...(d.settings.nodeHealth?.gracePeriodMs !== undefined ? { graceMs: d.settings.nodeHealth.gracePeriodMs } : {}) }),
      watches: [
        // status.nodeCounts and status.mesh: a node appearing, going, or changing cluster, membership, health or mesh links.
        watchSecondary(
          nodes,
          (n) => [{ name: n.spec.cluster }],
          UpdateWhen<FabricNode>((o, n) => o.spec.cluster !== n.spec.cluster || o.spec.membership !== n.spec.membership || o.status?.health !== n.status?.health || !jsonEqual(o.status?.mesh, n.status?.mesh)),
        ),
      ],
      workers: d.settings.workers?.fabricCluster ?? 2,
      registry: d.registry,
      log: d.log.with({ controller: "fabriccluster" }),
    });
    mgr.add(controller);
    registerCoverageGauges(d.registry, informer);
    mgr.addRunnable("fabriccluster orphan sweep", (signal) =>
      runOrphanSweeps({ controller, informer, rowNames: () => d.stores.clusters.names(), intervalMs: d.settings.sweepIntervalMs, log: d.log }, signal),
    );
  },
};
