/**
 * Repository of the node_groups table (the NodeGroup projection with its
 * tree validation result). Every write is a fenced decision with its audit row.
 */
import type pg from "pg";
import { decide, decideRow, type Fence } from "./fenced.js";
import { Table } from "./table.js";

/** A node_groups row. */
export interface NodeGroupRow {
  name: string;
  uid: string;
  cluster: string;
  /** undefined for a top-level group. */
  parent: string | undefined;
  generation: number;
  ready: boolean;
  reason: string;
}

interface DbRow {
  name: string;
  uid: string;
  cluster: string;
  parent: string | null;
  generation: string;
  ready: boolean;
  reason: string;
}

function fromDb(r: DbRow): NodeGroupRow {
  return { name: r.name, uid: r.uid, cluster: r.cluster, parent: r.parent ?? undefined, generation: Number(r.generation), ready: r.ready, reason: r.reason };
}

const nodeGroups = new Table<DbRow, NodeGroupRow>("node_groups", fromDb);

/** True when two rows hold the same values. */
export function sameNodeGroupRow(a: NodeGroupRow, b: NodeGroupRow): boolean {
  return (
    a.name === b.name &&
    a.uid === b.uid &&
    a.cluster === b.cluster &&
    a.parent === b.parent &&
    a.generation === b.generation &&
    a.ready === b.ready &&
    a.reason === b.reason
  );
}

/** See the module comment. */
export class NodeGroupStore {
  constructor(
    private readonly pool: pg.Pool,
    private readonly fence: Fence,
    private readonly actor: string,
  ) {}

  /** The row of a group, if projected. */
  async get(name: string): Promise<NodeGroupRow | undefined> {
    return nodeGroups.get(this.pool, name);
  }

  /** Names of every projected group. */
  async names(): Promise<string[]> {
    return nodeGroups.names(this.pool);
  }

  /** Inserts or replaces the row; `previous` (what the caller read) decides the audit action. */
  async put(row: NodeGroupRow, previous: NodeGroupRow | undefined): Promise<void> {
    await decide(this.fence, this.actor, async (c) => {
      await c.query(
        `INSERT INTO node_groups (name, uid, cluster, parent, generation, ready, reason) VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (name) DO UPDATE SET uid = EXCLUDED.uid, cluster = EXCLUDED.cluster, parent = EXCLUDED.parent,
           generation = EXCLUDED.generation, ready = EXCLUDED.ready, reason = EXCLUDED.reason, updated_at = now()`,
        [row.name, row.uid, row.cluster, row.parent ?? null, row.generation, row.ready, row.reason],
      );
      const details: Record<string, unknown> = {
        uid: row.uid,
        generation: row.generation,
        parent: row.parent ?? "",
        ready: row.ready,
        reason: row.reason,
      };
      return {
        result: undefined,
        audit: [{ action: previous === undefined ? "nodegroup.created" : "nodegroup.updated", objectKind: "NodeGroup", objectName: row.name, cluster: row.cluster, details }],
      };
    });
  }

  /** Deletes the row; false when there was none (no audit row then). */
  async delete(name: string): Promise<boolean> {
    return decideRow<{ uid: string; cluster: string }>(
      this.fence,
      this.actor,
      "DELETE FROM node_groups WHERE name = $1 RETURNING uid, cluster",
      [name],
      (r) => ({ action: "nodegroup.deleted", objectKind: "NodeGroup", objectName: name, cluster: r.cluster, details: { uid: r.uid } }),
    );
  }
}
