/**
 * FabricNodeReconciler (identity part, leader only): applies
 * spec.membership to the node row (Revoked revokes every certificate of the
 * node, for good; fenced and audited) and publishes the identity, the
 * reported capabilities and facts, and Ready. A FabricNode that is deleted
 * takes its identities with it; one created by hand (no enrollment record)
 * never gets an identity.
 */
import type { CustomObjectsApi } from "@kubernetes/client-node";
import { RESOURCES } from "../../lib/api/types.generated.js";
import type { NodeStore } from "../../lib/state/index.js";
import type { FabricNodeObject as FabricNode } from "../objects.js";
import { patchStatusIfChanged, realClock, type Clock, type Informer, type ObjectKey, type ReconcileContext, type ReconcileResult, type Reconciler } from "../runtime/index.js";
import { desiredNodeStatus } from "./plan.js";

/** Dependencies of FabricNodeReconciler. */
export interface FabricNodeReconcilerDeps {
  informer: Informer<FabricNode>;
  nodes: NodeStore;
  api: CustomObjectsApi;
  clock?: Clock;
}

const res = RESOURCES.FabricNode;

/** See the module comment. */
export class FabricNodeReconciler implements Reconciler {
  constructor(private readonly d: FabricNodeReconcilerDeps) {}

  async reconcile(key: ObjectKey, ctx: ReconcileContext): Promise<ReconcileResult | void> {
    const obj = this.d.informer.get(key);
    if (obj === undefined) {
      if (await this.d.nodes.deleteNode(key.name)) ctx.log.info("node row and identities deleted", { node: key.name });
      return;
    }
    const generation = obj.metadata.generation ?? 0;
    let row = await this.d.nodes.node(key.name);
    const want = obj.spec.membership ?? "Active";
    if (row !== undefined && row.membership !== want && row.membership !== "Revoked") {
      const now = await this.d.nodes.setMembership(key.name, want, obj.spec.membershipReason ?? `membership set to ${want}`);
      ctx.log.info("membership changed", { node: key.name, from: row.membership, to: now });
      row = await this.d.nodes.node(key.name);
    }
    const identity = row === undefined ? undefined : await this.d.nodes.activeIdentity(key.name);
    const nowAt = new Date((this.d.clock ?? realClock).now());
    const status = desiredNodeStatus(obj.status, generation, row, identity, want, nowAt);
    await patchStatusIfChanged(this.d.api, { group: res.group, version: res.version, plural: res.plural, name: key.name }, obj.status, status);
    // Identity renewals happen in the agent API: look again now and then, and at expiry.
    if (identity !== undefined) return { requeueAfterMs: Math.max(1000, Math.min(60_000, identity.notAfter.getTime() - nowAt.getTime() + 100)) };
    return;
  }
}
