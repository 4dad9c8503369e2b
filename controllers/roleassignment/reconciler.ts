/**
 * RoleAssignmentReconciler (leader only): resolves spec.nodeNames and
 * spec.nodeSelector to FabricNodes of spec.cluster, grants the role to the
 * nodes that pass the checks of plan.ts (Active, required capabilities),
 * writes the per-node grants to PostgreSQL (fenced, audited, snapshot marks
 * in the same transaction) and publishes matched and refused nodes with
 * their reasons. A deleted or disabled assignment withdraws the role from
 * every node.
 *
 * The grants are also published on FabricNode status.assignedRoles and
 * FabricCluster status.roleCoverage, but by the controllers of those kinds
 * (each kind's status has one writer): after its commit this reconciler
 * wakes the nodes whose grants changed and the assignment's cluster, whose
 * coverage it also refreshes on every periodic requeue.
 */
import type { CustomObjectsApi } from "@kubernetes/client-node";
import { labelSelectorFromMetav1, matchesLabels, SelectorError } from "../../lib/kube/selectors.js";
import { RESOURCES } from "../../lib/api/types.generated.js";
import type { RoleStore } from "../../lib/state/index.js";
import type { FabricClusterObject as FabricCluster, FabricNodeObject as FabricNode, RoleAssignmentObject } from "../objects.js";
import { patchStatusIfChanged, realClock, recordAll, type Clock, type EventRecorderLike, type Informer, type ObjectKey, type ReconcileContext, type ReconcileResult, type Reconciler } from "../runtime/index.js";
import { roleEvents } from "./events.js";
import { desiredRoleStatus, planGrants, type GrantPlan, type NodeView, type RoleReasons } from "./plan.js";

export type { RoleAssignmentObject } from "../objects.js";

/** Dependencies of RoleAssignmentReconciler. */
export interface RoleAssignmentReconcilerDeps {
  informer: Informer<RoleAssignmentObject>;
  nodes: Informer<FabricNode>;
  clusters: Informer<FabricCluster>;
  roles: RoleStore;
  api: CustomObjectsApi;
  /** Called after grants changed (e.g. to requeue the ServiceWorkloads of the cluster and role). */
  onGrantsChanged?: (cluster: string, role: string) => void;
  /** Requeues a FabricNode (whose controller publishes its assignedRoles). */
  wakeNode?: (name: string) => void;
  /** Requeues a FabricCluster (whose controller publishes its roleCoverage). */
  wakeCluster?: (name: string) => void;
  clock?: Clock;
  /** Kubernetes Events (nodes refused, grants added and withdrawn). */
  events?: EventRecorderLike;
}

const res = RESOURCES.RoleAssignment;

/** The FabricNode as the plan sees it. */
export function nodeView(n: FabricNode): NodeView {
  return { name: n.metadata.name ?? "", cluster: n.spec.cluster, membership: n.spec.membership ?? "Active", labels: n.metadata.labels ?? {} };
}

/** See the module comment. */
export class RoleAssignmentReconciler implements Reconciler {
  constructor(private readonly d: RoleAssignmentReconcilerDeps) {}

  async reconcile(key: ObjectKey, ctx: ReconcileContext): Promise<ReconcileResult | void> {
    const obj = this.d.informer.get(key);
    if (obj === undefined) {
      const had = await this.d.roles.granted(key.name);
      if (await this.d.roles.deleteAssignment(key.name)) {
        ctx.log.info("role withdrawn: assignment deleted", { assignment: key.name, nodes: had.length });
        const first = had[0];
        if (first !== undefined) this.afterChange(first.cluster, first.role, had.map((r) => r.node));
      }
      return;
    }
    const spec = obj.spec;
    const generation = obj.metadata.generation ?? 0;
    const organization = spec.organization ?? "";
    const cluster = spec.cluster;
    let plan: GrantPlan = { granted: [], refused: [] };
    let notReady: { reason: keyof typeof RoleReasons; message?: string } | undefined;
    if (this.d.clusters.get({ name: cluster }) === undefined) notReady = { reason: "ClusterNotFound", message: `FabricCluster ${cluster} does not exist` };
    else if (spec.enabled === false) notReady = { reason: "AssignmentDisabled", message: "assignment disabled: the role is withdrawn from every node" };
    else {
      let selected: NodeView[] = [];
      try {
        if (spec.nodeSelector !== undefined) {
          const sel = labelSelectorFromMetav1(spec.nodeSelector);
          selected = this.d.nodes
            .list()
            .map(nodeView)
            .filter((n) => n.cluster === cluster && matchesLabels(sel, n.labels));
        }
      } catch (err) {
        if (!(err instanceof SelectorError)) throw err;
        notReady = { reason: "InvalidSelector", message: err.message };
      }
      if (notReady === undefined) {
        const nodes = new Map<string, NodeView>();
        for (const name of spec.nodeNames ?? []) {
          const n = this.d.nodes.get({ name });
          if (n !== undefined) nodes.set(name, nodeView(n));
        }
        plan = planGrants({ cluster, role: spec.role, nodeNames: spec.nodeNames ?? [], selected, nodes, records: await this.d.roles.candidates(cluster) });
      }
    }
    const before = await this.d.roles.granted(key.name);
    const change = await this.d.roles.setGrants(key.name, cluster, spec.role, organization, plan.granted);
    if (change.added.length > 0 || change.removed.length > 0) {
      ctx.log.info("role grants changed", { assignment: key.name, cluster, role: spec.role, added: change.added, removed: change.removed });
    }
    const now = new Date((this.d.clock ?? realClock).now());
    const status = desiredRoleStatus(obj.status, generation, plan, notReady, now);
    recordAll(this.d.events, obj, roleEvents(obj.status, spec.role, plan.refused, change, notReady));
    await patchStatusIfChanged(this.d.api, { group: res.group, version: res.version, plural: res.plural, name: key.name }, obj.status, status);
    const touched = [...new Set([...change.added, ...change.removed])];
    // A role or organization edit moves rows; the previous role's workloads must follow too.
    const prevRole = before[0]?.role;
    if (touched.length > 0 && prevRole !== undefined && prevRole !== spec.role) this.d.onGrantsChanged?.(before[0]?.cluster ?? cluster, prevRole);
    this.afterChange(cluster, spec.role, touched, touched.length > 0);
    // Certificates expire and nodes go quiet without any event here: look at coverage now and then.
    return { requeueAfterMs: 60_000 };
  }

  /**
   * Wakes what follows the grants: the ServiceWorkloads of the role (when
   * they changed), the nodes given (only those with a FabricNode: a
   * reconcile of a missing one deletes its row, which is the orphan sweep's
   * call) and the cluster, when it exists, for the same reason.
   */
  private afterChange(cluster: string, role: string, nodes: string[], changed = true): void {
    if (changed) this.d.onGrantsChanged?.(cluster, role);
    for (const node of nodes) {
      if (this.d.nodes.get({ name: node }) !== undefined) this.d.wakeNode?.(node);
    }
    if (this.d.clusters.get({ name: cluster }) !== undefined) this.d.wakeCluster?.(cluster);
  }
}
