/**
 * Pure decisions of the FabricCluster controller: what to do with the
 * cluster's row, and the status to publish.
 */
import type { FabricClusterStatus } from "../../lib/api/types.generated.js";
import type { FabricClusterObject as FabricCluster, FabricNodeObject as FabricNode } from "../objects.js";
import type { ClusterRow } from "../../lib/state/index.js";
import { jsonEqual, setCondition, type Condition } from "../runtime/index.js";

/** Reasons of the Ready condition. */
export const Reasons = {
  KeysReady: "KeysReady",
} as const;

/** What the row needs. */
export type ClusterRowAction =
  | { kind: "none" }
  /** No row yet: generate keys and create it. */
  | { kind: "create" }
  /** A row of another uid (deleted and recreated while unobserved): new keys, replace it. */
  | { kind: "replace"; oldUid: string }
  /** Same object, new spec or generation. */
  | { kind: "updateSpec" };

/** Compares the object with its row. */
export function planClusterRow(obj: { uid: string; generation: number; spec: unknown }, row: ClusterRow | undefined): ClusterRowAction {
  if (row === undefined) return { kind: "create" };
  if (row.uid !== obj.uid) return { kind: "replace", oldUid: row.uid };
  if (row.generation !== obj.generation || !jsonEqual(row.spec, obj.spec)) return { kind: "updateSpec" };
  return { kind: "none" };
}

/** The authority this instance acts under. */
export interface AuthorityView {
  term: number;
  holder: string;
}

/**
 * The status to publish: fingerprints from the row, the authority, and a
 * Ready condition. Other fields (roleCoverage, which the reconciler sets
 * from desiredRoleCoverage) and other conditions are carried over unchanged.
 */
export function desiredClusterStatus(obj: FabricCluster, row: ClusterRow, authority: AuthorityView, now: Date): FabricClusterStatus {
  const generation = obj.metadata.generation ?? 0;
  const current = obj.status ?? {};
  const conditions = setCondition(
    current.conditions as Condition[] | undefined,
    {
      type: "Ready",
      status: "True",
      reason: Reasons.KeysReady,
      message: "certificate authority and snapshot signing key are in place",
      observedGeneration: generation,
    },
    now,
  );
  return {
    ...current,
    observedGeneration: generation,
    caFingerprint: row.caFingerprint,
    snapshotKeyId: row.snapshotKeyId,
    snapshotKeyFingerprint: row.snapshotKeyFingerprint,
    authorityTerm: authority.term,
    authorityHolder: authority.holder,
    conditions,
  };
}

/**
 * status.roleCoverage from the coverage rows of the cluster's grants: sorted
 * by role name (code-unit order, whatever PostgreSQL's collation), and
 * undefined (the field removed) when no role is held.
 */
export function desiredRoleCoverage(rows: ReadonlyArray<{ role: string; assigned: number; ready: number }>): FabricClusterStatus["roleCoverage"] {
  if (rows.length === 0) return undefined;
  return rows.map((r) => ({ role: r.role, assigned: r.assigned, ready: r.ready })).sort((a, b) => (a.role < b.role ? -1 : a.role > b.role ? 1 : 0));
}

/**
 * status.nodeCounts from the cluster's FabricNodes: every membership counts
 * in total; Disabled and Revoked ones by membership; Active ones by their
 * published health (Healthy, Degraded, Unreachable; a node whose health is
 * Unknown or not yet published counts in total only).
 */
export function desiredNodeCounts(nodes: ReadonlyArray<Pick<FabricNode, "spec" | "status">>): NonNullable<FabricClusterStatus["nodeCounts"]> {
  const counts = { total: 0, healthy: 0, degraded: 0, unreachable: 0, disabled: 0, revoked: 0 };
  for (const n of nodes) {
    counts.total++;
    const membership = n.spec.membership ?? "Active";
    if (membership === "Disabled") counts.disabled++;
    else if (membership === "Revoked") counts.revoked++;
    else if (n.status?.health === "Healthy") counts.healthy++;
    else if (n.status?.health === "Degraded") counts.degraded++;
    else if (n.status?.health === "Unreachable") counts.unreachable++;
  }
  return counts;
}
