/**
 * The contract between the parts of the control plane that own pieces of a
 * node's desired state (roles, workloads, mesh peers, VPN assignments,
 * updates) and the snapshot builder.
 *
 * - A part that changes what a node should receive calls
 *   {@link markNodesDirty} in the SAME transaction as its change.
 * - At build time the builder calls every contributor it was given (the
 *   kinds hand theirs to the composition root, which passes the list to the
 *   SnapshotBuilder), in that order, to fill its part of the payload. A
 *   contributor reads only what the node is entitled to (need-to-know is
 *   decided here) and never copies a secret value.
 */
import type pg from "pg";
import type { SnapshotPayload } from "./format.js";

/** The node a snapshot is being built for. */
export interface SnapshotNodeRef {
  cluster: string;
  /** FabricNode name. */
  node: string;
  /** FabricNode.spec.membership at build time. */
  membership: "Active" | "Disabled" | "Revoked";
}

/** Fills one part of a node's payload (e.g. roles, workloads). */
export interface SnapshotContributor {
  /** Short name for logs and metrics ("roles", "workloads"). */
  name: string;
  contribute(db: pg.ClientBase, ref: SnapshotNodeRef, payload: SnapshotPayload): Promise<void>;
  /**
   * Optional batch form: fills the part for many nodes of one cluster with a
   * few queries instead of one per node. Must give exactly what `contribute`
   * gives for each node. `payloads` is keyed by node name.
   */
  contributeMany?(db: pg.ClientBase, cluster: string, refs: readonly SnapshotNodeRef[], payloads: Map<string, SnapshotPayload>): Promise<void>;
}

/**
 * Marks nodes whose snapshot must be rebuilt. Call inside the transaction of
 * the change. `nodes: "*"` marks every node of the cluster.
 */
export async function markNodesDirty(db: pg.ClientBase, cluster: string, nodes: readonly string[] | "*"): Promise<void> {
  const list = nodes === "*" ? ["*"] : [...new Set(nodes)];
  if (list.length === 0) return;
  await db.query(
    `INSERT INTO snapshot_dirty (cluster, node) SELECT $1, unnest($2::text[])
     ON CONFLICT (cluster, node) DO UPDATE SET marked_at = now()`,
    [cluster, list],
  );
}
