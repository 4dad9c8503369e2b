/**
 * The "releaseUpdates" snapshot contributor (lib/snapshot/contributors.ts):
 * fills payload.releaseUpdates with the cluster's release trust set and the
 * assignments of the node's channel-bound workloads (rollout_assignments
 * joined with the node's own desired workloads, so a node never receives an
 * envelope or artifact its workloads are not assigned). Need-to-know as for
 * workloads: an organization-scoped workload only while the node holds a
 * role for that organization; a membership other than Active gets nothing.
 * Absent for nodes without assignments (older agents ignore the member).
 *
 * Update caches (lib/state/update-cache.ts): releaseUpdates.caches lists the
 * cluster's cache nodes that reported an endpoint (never the node itself),
 * and a node holding the update-cache role gets payload.updateCache, the
 * artifacts of verified releases assigned in its own cluster.
 */
import type { SnapshotContributor } from "../../lib/snapshot/contributors.js";
import type { SnapshotPayload, SnapshotReleaseTrust } from "../../lib/snapshot/format.js";
import { snapshotReleaseUpdatesOfMany } from "../../lib/state/rollouts.js";
import { cacheArtifactsOf, cacheEndpointsOf, cacheNodesAmong } from "../../lib/state/update-cache.js";

async function fill(db: Parameters<SnapshotContributor["contribute"]>[0], cluster: string, nodes: string[], payloads: (node: string) => SnapshotPayload | undefined): Promise<void> {
  if (nodes.length === 0) return;
  const { trust, byNode } = await snapshotReleaseUpdatesOfMany(db, cluster, nodes);
  const caches = byNode.size > 0 ? await cacheEndpointsOf(db, cluster) : [];
  const cacheNodes = await cacheNodesAmong(db, cluster, nodes);
  const mirror = cacheNodes.size > 0 ? await cacheArtifactsOf(db, cluster) : [];
  for (const node of nodes) {
    const p = payloads(node);
    if (p === undefined) continue;
    const assignments = byNode.get(node) ?? [];
    if (assignments.length === 0 || trust === undefined) delete p.releaseUpdates;
    else {
      const others = caches.filter((c) => c.node !== node);
      p.releaseUpdates = { trust: trust as SnapshotReleaseTrust, assignments, ...(others.length > 0 ? { caches: others } : {}) };
    }
    if (cacheNodes.has(node)) p.updateCache = { artifacts: mirror };
  }
}

/** Fills payload.releaseUpdates. */
export const releaseUpdatesContributor: SnapshotContributor = {
  name: "releaseUpdates",
  async contribute(db, ref, payload) {
    delete payload.releaseUpdates;
    delete payload.updateCache;
    if (ref.membership === "Active") await fill(db, ref.cluster, [ref.node], () => payload);
  },
  async contributeMany(db, cluster, refs, payloads) {
    for (const ref of refs) {
      const p = payloads.get(ref.node);
      delete p?.releaseUpdates;
      delete p?.updateCache;
    }
    await fill(
      db,
      cluster,
      refs.filter((r) => r.membership === "Active").map((r) => r.node),
      (n) => payloads.get(n),
    );
  },
};
