/**
 * Registers the VPNConnection kind (docs/vpn.md): its controller, which
 * follows the FabricNodes and RoleAssignments that decide eligibility, the
 * clusters and the credential Secrets; the lease watch (lease-watch.ts: expiry sweep and grant
 * feed); the orphan sweep of projected connections; and the "vpn" snapshot
 * contributor. Leases themselves are granted by the agent API under the
 * same authority term (lib/state/vpn.ts).
 */
import type { V1Secret } from "@kubernetes/client-node";
import { RESOURCES } from "../../lib/api/types.generated.js";
import { VpnStore } from "../../lib/state/vpn.js";
import type { FabricKind } from "../kind.js";
import type { FabricClusterObject as FabricCluster, FabricNodeObject as FabricNode, RoleAssignmentObject, VPNConnectionObject } from "../objects.js";
import { Controller, IgnoreUpdates, UpdateWhen, conditionStatusOf, jsonEqual, parseCacheKey, runOrphanSweeps, watchSecondary, type ObjectKey } from "../runtime/index.js";
import { VpnLeaseWatch } from "./lease-watch.js";
import { VpnConnectionReconciler } from "./reconciler.js";
import { vpnContributor } from "./snapshot.js";

/** The key of a connection named `<namespace>/<name>` (its cache key). */
export const vpnKeyOf: (connection: string) => ObjectKey = parseCacheKey;

/** See the module comment. */
export const vpnConnectionKind: FabricKind = {
  kind: "VPNConnection",
  setup(mgr, d) {
    const informer = mgr.informerFor<VPNConnectionObject>(RESOURCES.VPNConnection, "VPNConnection");
    const nodes = mgr.informerFor<FabricNode>(RESOURCES.FabricNode, "FabricNode");
    const clusters = mgr.informerFor<FabricCluster>(RESOURCES.FabricCluster, "FabricCluster");
    const roles = mgr.informerFor<RoleAssignmentObject>(RESOURCES.RoleAssignment, "RoleAssignment");
    const store = new VpnStore(d.pool, d.fence, d.identity);
    const listing = (node: string): ObjectKey[] => informer.keysWhere((c) => c.spec.allowedNodes.includes(node));
    const ofCluster = (cluster: string): ObjectKey[] => informer.keysWhere((c) => c.spec.cluster === cluster);
    // The credential Secret decides CredentialMissing; a change to it is a change to the connection's status.
    const secrets = mgr.informerFor<V1Secret>({ group: "", version: "v1", plural: "secrets" }, "Secret");
    const usingSecret = (s: V1Secret): ObjectKey[] =>
      informer.keysWhere((c) => c.metadata.namespace === s.metadata?.namespace && c.spec.credentialSecretRef?.name === s.metadata?.name);
    const controller = new Controller<VPNConnectionObject>({
      name: "vpnconnection",
      kind: "VPNConnection",
      informer,
      reconciler: new VpnConnectionReconciler({ informer, clusters, store, pool: d.pool, api: d.api, core: d.core, events: d.events }),
      watches: [
        watchSecondary(
          nodes,
          (n) => (n.metadata.name === undefined ? [] : listing(n.metadata.name)),
          // Eligibility reads membership (spec), Ready, the health from heartbeats and the roles.
          UpdateWhen(
            (a, b) => !jsonEqual(a.spec, b.spec) || conditionStatusOf(a, "Ready") !== conditionStatusOf(b, "Ready") || a.status?.health !== b.status?.health || !jsonEqual(a.status?.assignedRoles, b.status?.assignedRoles),
          ),
        ),
        watchSecondary(roles, (r) => ofCluster(r.spec.cluster)),
        watchSecondary(clusters, (c) => (c.metadata.name === undefined ? [] : ofCluster(c.metadata.name)), IgnoreUpdates),
        watchSecondary(secrets, usingSecret, UpdateWhen((a, b) => !jsonEqual(a.data, b.data))),
      ],
      workers: 4,
      registry: d.registry,
      log: d.log.with({ controller: "vpnconnection" }),
    });
    mgr.add(controller);
    const watch = new VpnLeaseWatch({ store, isLeader: () => mgr.isLeader(), wake: (c) => controller.enqueue(vpnKeyOf(c)), log: d.log.with({ component: "vpn-lease-watch" }) });
    mgr.addRunnable("vpn lease watch", (signal) => watch.run(signal));
    mgr.addRunnable("vpnconnection orphan sweep", (signal) =>
      runOrphanSweeps({ controller, informer, rowNames: () => store.connectionKeys(), intervalMs: d.settings.sweepIntervalMs, log: d.log }, signal),
    );
    return { snapshotContributors: [vpnContributor] };
  },
};
