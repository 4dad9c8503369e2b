/**
 * Registers the FabricNode kind: its controller (the only writer of
 * FabricNode status), the heartbeat monitor that enqueues nodes whose
 * heartbeats changed what the status shows, and the orphan sweep of node
 * rows.
 */
import { meshReportsOf } from "../../lib/state/mesh.js";
import { RESOURCES } from "../../lib/api/types.generated.js";
import type { FabricKind } from "../kind.js";
import type { FabricNodeObject as FabricNode } from "../objects.js";
import { Controller, runOrphanSweeps } from "../runtime/index.js";
import { HeartbeatMonitor } from "./heartbeat-monitor.js";
import { registerNodeGauges } from "./metrics.js";
import { DEFAULT_LIVENESS } from "./liveness.js";
import { FabricNodeReconciler } from "./reconciler.js";

/** See the module comment. */
export const fabricNodeKind: FabricKind = {
  kind: "FabricNode",
  setup(mgr, d) {
    const informer = mgr.informerFor<FabricNode>(RESOURCES.FabricNode, "FabricNode");
    const health = d.settings.nodeHealth;
    const liveness = {
      gracePeriodMs: health?.gracePeriodMs ?? DEFAULT_LIVENESS.gracePeriodMs,
      publishIntervalMs: health?.heartbeatPublishIntervalMs ?? DEFAULT_LIVENESS.publishIntervalMs,
      startupGracePeriodMs: health?.startupGracePeriodMs ?? DEFAULT_LIVENESS.startupGracePeriodMs,
    };
    const controller = new Controller<FabricNode>({
      name: "fabricnode",
      kind: "FabricNode",
      informer,
      reconciler: new FabricNodeReconciler({
        informer,
        nodes: d.stores.nodes,
        api: d.api,
        heartbeats: d.stores.heartbeats,
        liveness,
        roles: d.stores.roles,
        workloads: d.stores.workloads,
        updates: d.stores.rollouts,
        events: d.events,
        meshReports: (cluster, node) => meshReportsOf(d.pool, cluster, node),
      }),
      workers: 4,
      registry: d.registry,
      log: d.log.with({ controller: "fabricnode" }),
    });
    mgr.add(controller);
    registerNodeGauges(d.registry, informer);
    const monitor = new HeartbeatMonitor({
      heartbeats: d.stores.heartbeats,
      // Only nodes with a FabricNode: a reconcile of a missing one deletes its row, which is the orphan sweep's call, not a heartbeat's.
      enqueue: (name) => {
        if (informer.get({ name }) !== undefined) controller.enqueue({ name });
      },
      isLeader: () => mgr.isLeader(),
      settings: liveness,
      scanIntervalMs: health?.scanIntervalMs,
      log: d.log.with({ part: "heartbeat-monitor" }),
    });
    mgr.addRunnable("heartbeat monitor", (signal) => monitor.run(signal));
    mgr.addRunnable("fabricnode orphan sweep", (signal) =>
      runOrphanSweeps({ controller, informer, rowNames: () => d.stores.nodes.nodeNames(), intervalMs: d.settings.sweepIntervalMs, log: d.log }, signal),
    );
  },
};
