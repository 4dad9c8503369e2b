/**
 * The snapshot contributors of roles and workloads (lib/snapshot/contributors.ts):
 * "roles" fills payload.roles and "workloads" payload.workloads for ref.node
 * from node_roles and node_workloads. Need-to-know: only that node's own
 * rows; an organization-scoped workload only while the node holds a role for
 * that organization; never a secret value (workload env holds literal spec
 * values only); a membership other than Active gets no roles and no
 * workloads. Importing this module registers both (controllers/main.ts does).
 */
import { registerSnapshotContributor, type SnapshotContributor } from "../../lib/snapshot/contributors.js";
import type { SnapshotRole } from "../../lib/snapshot/format.js";
import { snapshotRolesOf, snapshotRolesOfMany, snapshotWorkloadsOf, snapshotWorkloadsOfMany } from "../../lib/state/index.js";

/** Fills payload.roles. */
export const rolesContributor: SnapshotContributor = {
  name: "roles",
  async contribute(db, ref, payload) {
    if (ref.membership !== "Active") {
      payload.roles = [];
      return;
    }
    payload.roles = (await snapshotRolesOf(db, ref.cluster, ref.node)).map(toSnapshotRole);
  },
  async contributeMany(db, cluster, refs, payloads) {
    const active = refs.filter((r) => r.membership === "Active").map((r) => r.node);
    const rows = active.length > 0 ? await snapshotRolesOfMany(db, cluster, active) : new Map<string, never[]>();
    for (const ref of refs) {
      const p = payloads.get(ref.node);
      if (p) p.roles = ref.membership === "Active" ? (rows.get(ref.node) ?? []).map(toSnapshotRole) : [];
    }
  },
};

function toSnapshotRole(r: { role: string; assignment: string; organization: string }): SnapshotRole {
  const role: SnapshotRole = { role: r.role, assignment: r.assignment };
  if (r.organization !== "") role.organization = r.organization;
  return role;
}

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

registerSnapshotContributor(rolesContributor);
registerSnapshotContributor(workloadsContributor);
