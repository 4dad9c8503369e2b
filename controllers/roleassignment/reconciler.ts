/**
 * RoleAssignmentReconciler (leader only): resolves spec.nodeNames and
 * spec.nodeSelector to FabricNodes of spec.cluster, grants the role to the
 * nodes that pass the checks of plan.ts (Active, required capabilities),
 * writes the per-node grants to PostgreSQL (fenced, audited, snapshot marks
 * in the same transaction) and publishes matched and refused nodes with
 * their reasons. It also owns FabricNode status.assignedRoles and
 * FabricCluster status.roleCoverage (roles held somewhere, and how many of
 * their holders are healthy: a role with ready 0 has no healthy node).
 * A deleted or disabled assignment withdraws the role from every node.
 */
import type { CustomObjectsApi } from "@kubernetes/client-node";
import { labelSelectorFromMetav1, matchesLabels, SelectorError } from "../../lib/kube/selectors.js";
import { RESOURCES, type FabricClusterStatus } from "../../lib/api/types.generated.js";
import type { RoleStore } from "../../lib/state/index.js";
import type { FabricClusterObject as FabricCluster, FabricNodeObject as FabricNode, Kube } from "../objects.js";
import type { RoleAssignment } from "../../lib/api/types.generated.js";
import { patchStatusIfChanged, realClock, type Clock, type Informer, type ObjectKey, type ReconcileContext, type ReconcileResult, type Reconciler } from "../runtime/index.js";
import { OwnedStatusField } from "./owned-field.js";
import { desiredRoleStatus, planGrants, roleCoverageOf, type GrantPlan, type NodeView, type RoleReasons } from "./plan.js";

/** A RoleAssignment as cached by an informer. */
export type RoleAssignmentObject = Kube<RoleAssignment>;

/** Dependencies of RoleAssignmentReconciler. */
export interface RoleAssignmentReconcilerDeps {
  informer: Informer<RoleAssignmentObject>;
  nodes: Informer<FabricNode>;
  clusters: Informer<FabricCluster>;
  roles: RoleStore;
  api: CustomObjectsApi;
  /** Called after grants changed (e.g. to requeue the ServiceWorkloads of the cluster and role). */
  onGrantsChanged?: (cluster: string, role: string) => void;
  clock?: Clock;
}

const res = RESOURCES.RoleAssignment;

/** The FabricNode as the plan sees it. */
export function nodeView(n: FabricNode): NodeView {
  return { name: n.metadata.name ?? "", cluster: n.spec.cluster, membership: n.spec.membership ?? "Active", labels: n.metadata.labels ?? {} };
}

/** See the module comment. */
export class RoleAssignmentReconciler implements Reconciler {
  private readonly assignedRoles: OwnedStatusField<string[]>;
  private readonly coverage: OwnedStatusField<NonNullable<FabricClusterStatus["roleCoverage"]>>;

  constructor(private readonly d: RoleAssignmentReconcilerDeps) {
    this.assignedRoles = new OwnedStatusField(d.api, RESOURCES.FabricNode, "assignedRoles");
    this.coverage = new OwnedStatusField(d.api, RESOURCES.FabricCluster, "roleCoverage");
  }

  async reconcile(key: ObjectKey, ctx: ReconcileContext): Promise<ReconcileResult | void> {
    const obj = this.d.informer.get(key);
    if (obj === undefined) {
      const had = await this.d.roles.granted(key.name);
      if (await this.d.roles.deleteAssignment(key.name)) {
        ctx.log.info("role withdrawn: assignment deleted", { assignment: key.name, nodes: had.length });
        const first = had[0];
        if (first !== undefined) await this.afterChange(first.cluster, first.role, had.map((r) => r.node));
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
    await patchStatusIfChanged(this.d.api, { group: res.group, version: res.version, plural: res.plural, name: key.name }, obj.status, status);
    const touched = [...new Set([...change.added, ...change.removed])];
    // A role or organization edit moves rows; the previous role's workloads must follow too.
    const prevRole = before[0]?.role;
    if (touched.length > 0 && prevRole !== undefined && prevRole !== spec.role) this.d.onGrantsChanged?.(before[0]?.cluster ?? cluster, prevRole);
    await this.afterChange(cluster, spec.role, touched, touched.length > 0);
    // Certificates expire and nodes go quiet without any event here: look at coverage now and then.
    return { requeueAfterMs: 60_000 };
  }

  private async afterChange(cluster: string, role: string, nodes: string[], changed = true): Promise<void> {
    if (changed) this.d.onGrantsChanged?.(cluster, role);
    for (const node of nodes) {
      const n = this.d.nodes.get({ name: node });
      if (n === undefined) continue;
      await this.assignedRoles.write(node, n.status?.assignedRoles, async () => {
        const rows = await this.d.roles.rolesOfNodes([node]);
        const roles = [...new Set(rows.map((r) => r.role))].sort();
        return roles.length === 0 ? undefined : roles;
      });
    }
    const c = this.d.clusters.get({ name: cluster });
    if (c !== undefined) {
      await this.coverage.write(cluster, c.status?.roleCoverage, async () => {
        const rows = roleCoverageOf(await this.d.roles.coverage(cluster));
        return rows.length === 0 ? undefined : rows;
      });
    }
  }
}
