/**
 * Registers the FabricCluster kind: its controller (which alone writes
 * FabricCluster status, role coverage included) and the orphan sweep of its
 * rows.
 */
import { RESOURCES } from "../../lib/api/types.generated.js";
import type { FabricKind } from "../kind.js";
import type { FabricClusterObject as FabricCluster } from "../objects.js";
import { runOrphanSweeps } from "../orphans.js";
import { Controller } from "../runtime/index.js";
import { registerCoverageGauges } from "./metrics.js";
import { FabricClusterReconciler } from "./reconciler.js";

/** See the module comment. */
export const fabricClusterKind: FabricKind = {
  kind: "FabricCluster",
  setup(mgr, d) {
    const informer = mgr.informerFor<FabricCluster>(RESOURCES.FabricCluster, "FabricCluster");
    const controller = new Controller<FabricCluster>({
      name: "fabriccluster",
      kind: "FabricCluster",
      informer,
      reconciler: new FabricClusterReconciler({ informer, clusters: d.stores.clusters, roles: d.stores.roles, kek: d.kek, api: d.api, term: d.term, identity: d.identity, events: d.events }),
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
