/**
 * Repository of the node_groups table (the NodeGroup projection with its
 * tree validation result). Every write is a fenced decision with its audit row.
 */
import type pg from "pg";
import { decide, type Fence } from "./fenced.js";

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
    const res = await this.pool.query<DbRow>("SELECT name, uid, cluster, parent, generation, ready, reason FROM node_groups WHERE name = $1", [name]);
    const r = res.rows[0];
    if (r === undefined) return undefined;
    return { name: r.name, uid: r.uid, cluster: r.cluster, parent: r.parent ?? undefined, generation: Number(r.generation), ready: r.ready, reason: r.reason };
  }

  /** Names of every projected group. */
  async names(): Promise<string[]> {
    const res = await this.pool.query<{ name: string }>("SELECT name FROM node_groups ORDER BY name");
    return res.rows.map((r) => r.name);
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
    return decide(this.fence, this.actor, async (c) => {
      const res = await c.query<{ uid: string; cluster: string }>("DELETE FROM node_groups WHERE name = $1 RETURNING uid, cluster", [name]);
      const r = res.rows[0];
      if (r === undefined) return { result: false, audit: [] };
      return { result: true, audit: [{ action: "nodegroup.deleted", objectKind: "NodeGroup", objectName: name, cluster: r.cluster, details: { uid: r.uid } }] };
    });
  }
}
