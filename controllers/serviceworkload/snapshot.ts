/**
 * The "workloads" snapshot contributor (lib/snapshot/contributors.ts): fills
 * payload.workloads for ref.node from node_workloads. Need-to-know: only
 * that node's own rows; an organization-scoped workload only while the node
 * holds a role for that organization; never a secret value (workload env
 * holds literal spec values only); a membership other than Active gets no
 * workloads. setup.ts hands it to the composition root, which gives it to
 * the SnapshotBuilder.
 */
import type { SnapshotContributor } from "../../lib/snapshot/contributors.js";
import { snapshotWorkloadsOf, snapshotWorkloadsOfMany } from "../../lib/state/index.js";

/** Fills payload.workloads. */
export const workloadsContributor: SnapshotContributor = {
  name: "workloads",
  async contribute(db, ref, payload) {
    payload.workloads = ref.membership === "Active" ? await snapshotWorkloadsOf(db, ref.cluster, ref.node) : [];
  },
  async contributeMany(db, cluster, refs, payloads) {
    const active = refs.filter((r) => r.membership === "Active").map((r) => r.node);
    const rows = active.length > 0 ? await snapshotWorkloadsOfMany(db, cluster, active) : new Map<string, never[]>();
    for (const ref of refs) {
      const p = payloads.get(ref.node);
      if (p) p.workloads = ref.membership === "Active" ? (rows.get(ref.node) ?? []) : [];
    }
  },
};
