/**
 * Registers the RoleAssignment kind: its controller, which follows the
 * FabricNode facts that decide grants and coverage (membership, labels,
 * reported capabilities, readiness) and the appearance of clusters; the
 * orphan sweep of grant rows; and the "roles" snapshot contributor.
 *
 * After a commit the reconciler wakes the owners of what follows from the
 * grants instead of writing their status: the FabricNode controller
 * (assignedRoles), the FabricCluster controller (roleCoverage) and the
 * ServiceWorkload controller for the workloads of the role, found in the
 * ServiceWorkload cache.
 */
import { RESOURCES } from "../../lib/api/types.generated.js";
import type { FabricKind } from "../kind.js";
import type { FabricClusterObject as FabricCluster, FabricNodeObject as FabricNode, RoleAssignmentObject, ServiceWorkloadObject } from "../objects.js";
import { Controller, IgnoreUpdates, UpdateWhen, conditionStatusOf, jsonEqual, watchSecondary, runOrphanSweeps, type ObjectKey } from "../runtime/index.js";
import { RoleAssignmentReconciler } from "./reconciler.js";
import { rolesContributor } from "./snapshot.js";

/** See the module comment. */
export const roleAssignmentKind: FabricKind = {
  kind: "RoleAssignment",
  setup(mgr, d) {
    const informer = mgr.informerFor<RoleAssignmentObject>(RESOURCES.RoleAssignment, "RoleAssignment");
    const nodes = mgr.informerFor<FabricNode>(RESOURCES.FabricNode, "FabricNode");
    const clusters = mgr.informerFor<FabricCluster>(RESOURCES.FabricCluster, "FabricCluster");
    const workloads = mgr.informerFor<ServiceWorkloadObject>(RESOURCES.ServiceWorkload, "ServiceWorkload");
    const ofCluster = (cluster: string): ObjectKey[] => informer.keysWhere((r) => r.spec.cluster === cluster);
    const wakeNode = mgr.wake("FabricNode");
    const wakeCluster = mgr.wake("FabricCluster");
    const wakeWorkload = mgr.wake("ServiceWorkload");
    const controller = new Controller<RoleAssignmentObject>({
      name: "roleassignment",
      kind: "RoleAssignment",
      informer,
      reconciler: new RoleAssignmentReconciler({
        informer,
        nodes,
        clusters,
        roles: d.stores.roles,
        api: d.api,
        onGrantsChanged: (cluster, role) => {
          for (const w of workloads.list()) {
            const name = w.metadata.name;
            if (name !== undefined && w.spec.cluster === cluster && w.spec.role === role) wakeWorkload({ name });
          }
        },
        wakeNode: (name) => wakeNode({ name }),
        wakeCluster: (name) => wakeCluster({ name }),
        events: d.events,
      }),
      watches: [
        // Membership, labels, reported capabilities and health decide grants and coverage.
        watchSecondary(
          nodes,
          (n) => ofCluster(n.spec.cluster),
          UpdateWhen((a, b) => !jsonEqual(a.spec, b.spec) || !jsonEqual(a.metadata.labels, b.metadata.labels) || !jsonEqual(a.status?.capabilities, b.status?.capabilities) || conditionStatusOf(a, "Ready") !== conditionStatusOf(b, "Ready")),
        ),
        watchSecondary(clusters, (c) => (c.metadata.name === undefined ? [] : ofCluster(c.metadata.name)), IgnoreUpdates),
      ],
      workers: 4,
      registry: d.registry,
      log: d.log.with({ controller: "roleassignment" }),
    });
    mgr.add(controller);
    mgr.addRunnable("roleassignment orphan sweep", (signal) =>
      runOrphanSweeps({ controller, informer, rowNames: () => d.stores.roles.assignmentNames(), intervalMs: d.settings.sweepIntervalMs, log: d.log }, signal),
    );
    return { snapshotContributors: [rolesContributor] };
  },
};
