/**
 * Registers the JoinRequest kind: its controller (which issues the node's
 * certificate and creates its FabricNode, skipping the create when the
 * FabricNode cache already has it) and the orphan sweep of request rows.
 */
import { RESOURCES } from "../../lib/api/types.generated.js";
import type { FabricKind } from "../kind.js";
import type { FabricNodeObject as FabricNode, JoinRequestObject as JoinRequest } from "../objects.js";
import { Controller, runOrphanSweeps } from "../runtime/index.js";
import { JoinRequestReconciler } from "./reconciler.js";

/** See the module comment. */
export const joinRequestKind: FabricKind = {
  kind: "JoinRequest",
  setup(mgr, d) {
    const informer = mgr.informerFor<JoinRequest>(RESOURCES.JoinRequest, "JoinRequest");
    const nodeInformer = mgr.informerFor<FabricNode>(RESOURCES.FabricNode, "FabricNode");
    const controller = new Controller<JoinRequest>({
      name: "joinrequest",
      kind: "JoinRequest",
      informer,
      reconciler: new JoinRequestReconciler({ informer, nodes: d.stores.nodes, issuer: d.issuer, api: d.api, nodeInformer, retentionMs: d.settings.enrollment?.joinRequestRetentionMs, events: d.events }),
      workers: 8,
      registry: d.registry,
      log: d.log.with({ controller: "joinrequest" }),
    });
    mgr.add(controller);
    mgr.addRunnable("joinrequest orphan sweep", (signal) =>
      runOrphanSweeps({ controller, informer, rowNames: () => d.stores.nodes.requestNames(), intervalMs: d.settings.sweepIntervalMs, log: d.log }, signal),
    );
  },
};
