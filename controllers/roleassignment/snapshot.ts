/**
 * The "roles" snapshot contributor (lib/snapshot/contributors.ts): fills
 * payload.roles for ref.node from node_roles. Need-to-know: only that node's
 * own grants; a membership other than Active gets no roles. setup.ts hands
 * it to the composition root, which gives it to the SnapshotBuilder.
 */
import type { SnapshotContributor } from "../../lib/snapshot/contributors.js";
import type { SnapshotRole } from "../../lib/snapshot/format.js";
import { snapshotRolesOf, snapshotRolesOfMany } from "../../lib/state/index.js";

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
