/**
 * Registers the ServiceWorkload kind: its controller, which follows node
 * label changes (for workloads with a node selector) and the appearance of
 * clusters; the listener that wakes it when agents report; the orphan sweep
 * of desired-workload rows; and the "workloads" snapshot contributor.
 *
 * FabricNode status.workloads is the FabricNode controller's to write: the
 * reconciler wakes it for the nodes concerned after a commit, and the
 * report listener wakes the workloads reported, which wake their nodes.
 */
import { RESOURCES } from "../../lib/api/types.generated.js";
import type { FabricKind } from "../kind.js";
import type { FabricClusterObject as FabricCluster, FabricNodeObject as FabricNode, ServiceWorkloadObject } from "../objects.js";
import { Controller, IgnoreUpdates, UpdateWhen, conditionStatusOf, jsonEqual, watchSecondary, runOrphanSweeps } from "../runtime/index.js";
import { ServiceWorkloadReconciler } from "./reconciler.js";
import { listenForReports } from "./report-listener.js";
import { workloadsContributor } from "./snapshot.js";

/** See the module comment. */
export const serviceWorkloadKind: FabricKind = {
  kind: "ServiceWorkload",
  setup(mgr, d) {
    const informer = mgr.informerFor<ServiceWorkloadObject>(RESOURCES.ServiceWorkload, "ServiceWorkload");
    const nodes = mgr.informerFor<FabricNode>(RESOURCES.FabricNode, "FabricNode");
    const clusters = mgr.informerFor<FabricCluster>(RESOURCES.FabricCluster, "FabricCluster");
    const names = (keep: (w: ServiceWorkloadObject) => boolean) => informer.keysWhere(keep);
    const wakeNode = mgr.wake("FabricNode");
    const controller = new Controller<ServiceWorkloadObject>({
      name: "serviceworkload",
      kind: "ServiceWorkload",
      informer,
      reconciler: new ServiceWorkloadReconciler({
        informer,
        nodes,
        clusters,
        roles: d.stores.roles,
        workloads: d.stores.workloads,
        api: d.api,
        wakeNode: (name) => wakeNode({ name }),
        events: d.events,
      }),
      watches: [
        watchSecondary(
          nodes,
          (n) => names((w) => w.spec.cluster === n.spec.cluster && w.spec.nodeSelector !== undefined),
          UpdateWhen((a, b) => !jsonEqual(a.metadata.labels, b.metadata.labels)),
        ),
        watchSecondary(clusters, (c) => (c.metadata.name === undefined ? [] : names((w) => w.spec.cluster === c.metadata.name)), IgnoreUpdates),
        // Instances on a node that is not Ready do not count as ready: a node's Ready flipping moves the counts.
        watchSecondary(
          nodes,
          (n) => names((w) => w.spec.cluster === n.spec.cluster),
          UpdateWhen((a, b) => conditionStatusOf(a, "Ready") !== conditionStatusOf(b, "Ready")),
        ),
      ],
      workers: 4,
      registry: d.registry,
      log: d.log.with({ controller: "serviceworkload" }),
    });
    mgr.add(controller);
    mgr.addRunnable("serviceworkload orphan sweep", (signal) =>
      runOrphanSweeps({ controller, informer, rowNames: () => d.stores.workloads.workloadNames(), intervalMs: d.settings.sweepIntervalMs, log: d.log }, signal),
    );
    mgr.addRunnable("workload report listener", (signal) =>
      listenForReports(
        d.pool,
        (list) => {
          // "*": too many names for one notification.
          const keys = list.includes("*") ? names(() => true) : list.map((name) => ({ name }));
          for (const k of keys) controller.enqueue(k);
        },
        d.log.with({ part: "workload-reports" }),
        signal,
      ),
    );
    return { snapshotContributors: [workloadsContributor] };
  },
};
