/**
 * NodeGroupReconciler: validates a group's place in the tree (validateGroup
 * over the informer caches), projects the result into node_groups and
 * publishes Ready with a reason, the path, the child count and the member
 * count (FabricNodes whose spec.group names it, from the FabricNode cache).
 * A group that no longer exists has its row deleted.
 */
import type { CustomObjectsApi } from "@kubernetes/client-node";
import { RESOURCES } from "../../lib/api/types.generated.js";
import type { FabricClusterObject as FabricCluster, FabricNodeObject as FabricNode, NodeGroupObject as NodeGroup } from "../objects.js";
import { NodeGroupStore, sameNodeGroupRow, type NodeGroupRow } from "../../lib/state/index.js";
import { TerminalError, patchStatusIfChanged, realClock, recordAll, type Clock, type EventRecorderLike, type Informer, type ObjectKey, type ReconcileContext, type Reconciler } from "../runtime/index.js";
import { groupEvents } from "./events.js";
import { desiredGroupStatus, memberCount, validateGroup, viewOf } from "./plan.js";
import type { GroupTree } from "./tree.js";

/** Dependencies of NodeGroupReconciler. */
export interface NodeGroupReconcilerDeps {
  groups: Informer<NodeGroup>;
  clusters: Informer<FabricCluster>;
  /** FabricNode cache; without it status.memberCount is carried over as it is. */
  nodes?: Informer<FabricNode>;
  tree: GroupTree;
  store: NodeGroupStore;
  api: CustomObjectsApi;
  clock?: Clock;
  /** Kubernetes Events (invalid parent, cycle, valid again). */
  events?: EventRecorderLike;
}

const res = RESOURCES.NodeGroup;

/** See the module comment. */
export class NodeGroupReconciler implements Reconciler {
  constructor(private readonly d: NodeGroupReconcilerDeps) {}

  async reconcile(key: ObjectKey, ctx: ReconcileContext): Promise<void> {
    const obj = this.d.groups.get(key);
    if (obj === undefined) {
      if (await this.d.store.delete(key.name)) ctx.log.info("node group row deleted", { group: key.name });
      return;
    }
    const uid = obj.metadata.uid;
    if (uid === undefined || uid === "") throw new TerminalError(`NodeGroup ${key.name} has no metadata.uid`);
    const verdict = validateGroup(
      key.name,
      (n) => {
        const g = this.d.groups.get({ name: n });
        return g === undefined ? undefined : viewOf(g);
      },
      (c) => this.d.clusters.get({ name: c }) !== undefined,
    );
    const row: NodeGroupRow = {
      name: key.name,
      uid,
      cluster: obj.spec.cluster,
      parent: obj.spec.parent || undefined,
      generation: obj.metadata.generation ?? 0,
      ready: verdict.ready,
      reason: verdict.reason,
    };
    const previous = await this.d.store.get(key.name);
    if (previous === undefined || !sameNodeGroupRow(previous, row)) await this.d.store.put(row, previous);
    const status = desiredGroupStatus(obj, verdict, this.d.tree.childCount(key.name), new Date((this.d.clock ?? realClock).now()));
    if (this.d.nodes !== undefined) status.memberCount = memberCount(key.name, this.d.nodes.list());
    recordAll(this.d.events, obj, groupEvents(obj.status?.conditions?.find((c) => c.type === "Ready")?.reason, verdict));
    await patchStatusIfChanged(this.d.api, { group: res.group, version: res.version, plural: res.plural, name: key.name }, obj.status, status);
  }
}
