/**
 * Registers the NodeGroup kind: its controller, which follows the spec
 * changes of related groups (validity depends on the ancestors, childCount
 * on the children), the appearance of clusters and the FabricNodes joining
 * or leaving a group (memberCount), and the orphan sweep of group rows.
 */
import { RESOURCES } from "../../lib/api/types.generated.js";
import type { FabricKind } from "../kind.js";
import type { FabricClusterObject as FabricCluster, FabricNodeObject as FabricNode, NodeGroupObject as NodeGroup } from "../objects.js";
import { Controller, GenerationChanged, IgnoreUpdates, UpdateWhen, intentChanged, watchSecondary, runOrphanSweeps, type ObjectKey } from "../runtime/index.js";
import { NodeGroupReconciler } from "./reconciler.js";
import { GroupTree } from "./tree.js";

const byName = (names: string[]): ObjectKey[] => names.map((name) => ({ name }));

/** See the module comment. */
export const nodeGroupKind: FabricKind = {
  kind: "NodeGroup",
  setup(mgr, d) {
    const informer = mgr.informerFor<NodeGroup>(RESOURCES.NodeGroup, "NodeGroup");
    const clusters = mgr.informerFor<FabricCluster>(RESOURCES.FabricCluster, "FabricCluster");
    const nodes = mgr.informerFor<FabricNode>(RESOURCES.FabricNode, "FabricNode");
    const tree = new GroupTree(informer);
    const controller = new Controller<NodeGroup>({
      name: "nodegroup",
      kind: "NodeGroup",
      informer,
      reconciler: new NodeGroupReconciler({ groups: informer, clusters, nodes, tree, store: d.stores.groups, api: d.api, events: d.events }),
      // The reconciler reads only intent: its own status writes must not requeue the group.
      primaryUpdateFilter: intentChanged,
      watches: [
        // A group's validity depends on its ancestors, its childCount on its children: only spec changes matter.
        watchSecondary(
          informer,
          (g) => {
            const name = g.metadata.name;
            if (name === undefined) return [];
            const keys = byName(tree.descendants(name));
            if (g.spec.parent) keys.push({ name: g.spec.parent });
            return keys;
          },
          GenerationChanged,
        ),
        // ClusterNotFound flips when a cluster appears or goes.
        watchSecondary(clusters, (c) => (c.metadata.name === undefined ? [] : byName(tree.inCluster(c.metadata.name))), IgnoreUpdates),
        // memberCount: a node joining or leaving a group (an update maps the old and the new group).
        watchSecondary(nodes, (n) => (n.spec.group ? [{ name: n.spec.group }] : []), UpdateWhen<FabricNode>((o, n) => o.spec.group !== n.spec.group)),
      ],
      workers: d.settings.workers?.nodeGroup ?? 8,
      registry: d.registry,
      log: d.log.with({ controller: "nodegroup" }),
    });
    mgr.add(controller);
    mgr.addRunnable("nodegroup orphan sweep", (signal) =>
      runOrphanSweeps({ controller, informer, rowNames: () => d.stores.groups.names(), intervalMs: d.settings.sweepIntervalMs, log: d.log }, signal),
    );
  },
};
