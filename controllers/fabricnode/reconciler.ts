/**
 * FabricNodeReconciler (leader only): applies spec.membership to the node
 * row (Revoked revokes every certificate of the node, for good; fenced and
 * audited) and publishes the identity, Ready, and what the latest heartbeat
 * says (capabilities, facts, agent version, health, held snapshot,
 * lastHeartbeatTime; see liveness.ts for when the status is rewritten). A
 * change of published health is recorded with its audit row (fenced) before
 * the status shows it. A FabricNode that is deleted takes its identities
 * with it; one created by hand (no enrollment record) never gets an identity.
 * Heartbeats do not go through the API server: HeartbeatMonitor scans
 * `node_heartbeats` and enqueues the nodes whose visible state changed.
 *
 * It is the only writer of FabricNode status. assignedRoles (from the
 * node's grants), workloads (from its agent's reports) and mesh (from its
 * agent's mesh report and its class's bounds, mesh.ts) are read from
 * PostgreSQL on every reconcile; the RoleAssignment and ServiceWorkload
 * controllers wake this one after they changed what a node holds or runs,
 * the workload report listener after an agent reported, and the heartbeat
 * monitor when the peers up in a node's mesh report changed.
 *
 * Its own status writes requeue the node (no update filter): the reconcile
 * that follows finds nothing to change, and it is what corrects a write
 * computed against a cache that had not yet seen the previous one.
 */
import type { RolloutStore } from "../../lib/state/rollouts.js";
import type { CustomObjectsApi } from "@kubernetes/client-node";
import { RESOURCES } from "../../lib/api/types.generated.js";
import type { HeartbeatStore } from "../../lib/state/heartbeats.js";
import type { NodeStore, RoleStore, WorkloadStore } from "../../lib/state/index.js";
import type { FabricNodeObject as FabricNode } from "../objects.js";
import { patchStatusIfChanged, realClock, recordAll, type Clock, type EventRecorderLike, type Informer, type ObjectKey, type ReconcileContext, type ReconcileResult, type Reconciler } from "../runtime/index.js";
import { healthEvents, membershipEvents } from "./events.js";
import { DEFAULT_LIVENESS, type LivenessSettings } from "./liveness.js";
import type { MeshPeerPolicy, MeshReportFacts } from "../../lib/state/mesh.js";
import { nodeMeshStatus } from "./mesh.js";
import { assignedRolesOf, desiredNodeStatus, nodeWorkloadsOf } from "./plan.js";

/** Dependencies of FabricNodeReconciler. */
export interface FabricNodeReconcilerDeps {
  informer: Informer<FabricNode>;
  nodes: NodeStore;
  api: CustomObjectsApi;
  clock?: Clock;
  /** Heartbeats and published health; without it the status ignores heartbeats. */
  heartbeats?: HeartbeatStore;
  liveness?: LivenessSettings;
  /** Role grants and workload reports; without them assignedRoles and workloads are carried over as they are. */
  roles?: Pick<RoleStore, "rolesOfNodes">;
  workloads?: Pick<WorkloadStore, "reportsOfNode">;
  /** The agent's workload update reports (status.workloadUpdates); without it status.workloadUpdates is carried over. */
  updates?: Pick<RolloutStore, "updateReportsOfNode">;
  /** Kubernetes Events (Ready lost and back, degraded, membership decisions). */
  events?: EventRecorderLike;
  /** Mesh members and their agents' mesh reports (lib/state/mesh.ts meshReportsOf); without it status.mesh is carried over as it is. */
  meshReports?: (cluster: string, node: string) => Promise<{ policy: MeshPeerPolicy; members: MeshReportFacts[] }>;
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
      const why = obj.spec.membershipReason ?? `membership set to ${want}`;
      const now = await this.d.nodes.setMembership(key.name, want, why);
      ctx.log.info("membership changed", { node: key.name, from: row.membership, to: now });
      recordAll(this.d.events, obj, membershipEvents(row.membership, now, why));
      row = await this.d.nodes.node(key.name);
    }
    const identity = row === undefined ? undefined : await this.d.nodes.activeIdentity(key.name);
    const nowAt = new Date((this.d.clock ?? realClock).now());
    const heartbeat = row === undefined || this.d.heartbeats === undefined ? undefined : await this.d.heartbeats.latest(key.name);
    const settings = this.d.liveness ?? DEFAULT_LIVENESS;
    const heartbeatsTracked = this.d.heartbeats !== undefined;
    const status = desiredNodeStatus(obj.status, generation, row, identity, want, nowAt, { heartbeat, settings, heartbeatsTracked });
    if (this.d.roles !== undefined) status.assignedRoles = assignedRolesOf(await this.d.roles.rolesOfNodes([key.name]));
    if (this.d.workloads !== undefined) status.workloads = nodeWorkloadsOf(await this.d.workloads.reportsOfNode(key.name));
    if (this.d.updates !== undefined) {
      const items = (await this.d.updates.updateReportsOfNode(key.name)).slice(0, 64);
      status.workloadUpdates = items.length === 0 ? undefined : items;
    }
    if (this.d.meshReports !== undefined) {
      const r = row === undefined ? undefined : await this.d.meshReports(row.cluster, key.name);
      const mesh = r === undefined ? undefined : nodeMeshStatus(r.members[0], r.policy, nowAt, settings.gracePeriodMs);
      if (mesh === undefined) delete status.mesh;
      else status.mesh = mesh;
    }
    if (row !== undefined && status.health !== undefined && status.health !== obj.status?.health && this.d.heartbeats !== undefined) {
      const reason = status.health === "Unknown" ? `no heartbeat for more than ${Math.round(settings.gracePeriodMs / 1000)}s` : `agent reports ${status.health}`;
      if (await this.d.heartbeats.recordHealth(key.name, row.cluster, status.health, reason)) {
        ctx.log.info("node health changed", { node: key.name, from: obj.status?.health, to: status.health });
        recordAll(this.d.events, obj, healthEvents(obj.status?.health, status.health, reason));
      }
    }
    await patchStatusIfChanged(this.d.api, { group: res.group, version: res.version, plural: res.plural, name: key.name }, obj.status, status);
    // Identity renewals happen in the agent API: look again now and then, and at expiry.
    if (identity !== undefined) {
      let next = Math.min(60_000, identity.notAfter.getTime() - nowAt.getTime() + 100);
      // A node that has not heartbeated yet is looked at again when its startup grace runs out.
      if (heartbeat === undefined && heartbeatsTracked && settings.startupGracePeriodMs > 0) {
        const graceLeft = identity.issuedAt.getTime() + settings.startupGracePeriodMs - nowAt.getTime() + 100;
        if (graceLeft > 0) next = Math.min(next, graceLeft);
      }
      return { requeueAfterMs: Math.max(1000, next) };
    }
    return;
  }
}
