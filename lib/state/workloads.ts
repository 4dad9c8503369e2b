/**
 * Repository of service workloads: the desired workloads per node
 * (node_workloads, decisions of the ServiceWorkload controller: fenced,
 * audited, snapshot_dirty marks in the same transaction) and the agents'
 * latest reports (workload_reports: runtime facts, projected by a trigger
 * from the generic status reports the agent API stores, migrations/008).
 */
import type pg from "pg";
import type { SnapshotWorkload } from "../snapshot/format.js";
import { markNodesDirty } from "../snapshot/contributors.js";
import { decide, type Fence } from "./fenced.js";

/** One node's desired copy of a workload. */
export interface DesiredWorkloadRow {
  node: string;
  organization: string;
  generation: number;
  /** Exactly what goes into the node's snapshot. */
  spec: SnapshotWorkload & Record<string, unknown>;
}

/** What setDesired changed (node names). */
export interface DesiredChange {
  added: string[];
  updated: string[];
  removed: string[];
}

/** The latest report of a workload on a node. */
export interface WorkloadReportRow {
  node: string;
  workload: string;
  state: "Starting" | "Running" | "Degraded" | "Stopped" | "Failed" | "Unsupported";
  ready: boolean;
  reason: string;
  message: string;
  restartCount: number;
  observedGeneration: number;
  reportedAt: Date;
}

interface ReportDb {
  node: string;
  workload: string;
  state: WorkloadReportRow["state"];
  ready: boolean;
  reason: string;
  message: string;
  restart_count: number;
  observed_generation: string;
  reported_at: Date;
}

function reportFromDb(r: ReportDb): WorkloadReportRow {
  return {
    node: r.node,
    workload: r.workload,
    state: r.state,
    ready: r.ready,
    reason: r.reason,
    message: r.message,
    restartCount: r.restart_count,
    observedGeneration: Number(r.observed_generation),
    reportedAt: r.reported_at,
  };
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
}
function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (typeof v === "object" && v !== null) {
    const o = v as Record<string, unknown>;
    return Object.fromEntries(
      Object.keys(o)
        .sort()
        .map((k) => [k, sortKeys(o[k])]),
    );
  }
  return v;
}

/** See the module comment. */
export class WorkloadStore {
  constructor(
    private readonly pool: pg.Pool,
    private readonly fence: Fence,
    private readonly actor: string,
  ) {}

  /** Names of workloads with desired rows (for orphan sweeps). */
  async workloadNames(): Promise<string[]> {
    const r = await this.pool.query<{ workload: string }>("SELECT DISTINCT workload FROM node_workloads");
    return r.rows.map((x) => x.workload);
  }

  /** Desired rows of a workload, by node. */
  async desired(workload: string): Promise<DesiredWorkloadRow[]> {
    const r = await this.pool.query<{ node: string; organization: string; generation: string; spec: DesiredWorkloadRow["spec"] }>(
      "SELECT node, organization, generation, spec FROM node_workloads WHERE workload = $1 ORDER BY node",
      [workload],
    );
    return r.rows.map((x) => ({ node: x.node, organization: x.organization, generation: Number(x.generation), spec: x.spec }));
  }

  /**
   * Makes the workload's desired rows exactly `rows` (in `cluster`). Fenced
   * and audited; marks every added, changed or removed node dirty.
   */
  async setDesired(workload: string, cluster: string, rows: readonly DesiredWorkloadRow[]): Promise<DesiredChange> {
    return decide(this.fence, this.actor, async (c) => {
      const cur = await c.query<{ node: string; cluster: string; organization: string; spec: unknown }>(
        "SELECT node, cluster, organization, spec FROM node_workloads WHERE workload = $1 FOR UPDATE",
        [workload],
      );
      const have = new Map(cur.rows.map((r) => [r.node, r]));
      const want = new Map(rows.map((r) => [r.node, r]));
      const added: string[] = [];
      const updated: string[] = [];
      const removed: string[] = [];
      const dirty = new Map<string, string[]>();
      const mark = (cl: string, node: string): void => {
        const l = dirty.get(cl) ?? [];
        l.push(node);
        dirty.set(cl, l);
      };
      for (const [node, row] of have) {
        const w = want.get(node);
        if (w === undefined || row.cluster !== cluster) {
          removed.push(node);
          mark(row.cluster, node);
        }
      }
      if (removed.length > 0) await c.query("DELETE FROM node_workloads WHERE workload = $1 AND node = ANY($2::text[])", [workload, removed]);
      for (const [node, w] of want) {
        const h = have.get(node);
        const fresh = h === undefined || h.cluster !== cluster;
        if (!fresh && h.organization === w.organization && sameJson(h.spec, w.spec)) continue;
        await c.query(
          `INSERT INTO node_workloads (workload, node, cluster, organization, generation, spec, updated_at) VALUES ($1, $2, $3, $4, $5, $6, now())
           ON CONFLICT (workload, node) DO UPDATE SET cluster = EXCLUDED.cluster, organization = EXCLUDED.organization,
             generation = EXCLUDED.generation, spec = EXCLUDED.spec, updated_at = now()`,
          [workload, node, cluster, w.organization, w.generation, JSON.stringify(w.spec)],
        );
        (fresh ? added : updated).push(node);
        mark(cluster, node);
      }
      if (added.length + updated.length + removed.length === 0) return { result: { added, updated, removed }, audit: [] };
      for (const [cl, nodes] of dirty) await markNodesDirty(c, cl, nodes);
      added.sort();
      updated.sort();
      removed.sort();
      return {
        result: { added, updated, removed },
        audit: [{ action: "workload.desired-changed", objectKind: "ServiceWorkload", objectName: workload, cluster, details: { added, updated, removed, generation: rows[0]?.generation ?? 0 } }],
      };
    });
  }

  /** Deletes every desired row of a workload and its reports; returns whether rows existed. */
  async deleteWorkload(workload: string): Promise<boolean> {
    return decide(this.fence, this.actor, async (c) => {
      const r = await c.query<{ node: string; cluster: string }>("DELETE FROM node_workloads WHERE workload = $1 RETURNING node, cluster", [workload]);
      await c.query("DELETE FROM workload_reports WHERE workload = $1", [workload]);
      if (r.rows.length === 0) return { result: false, audit: [] };
      const by = new Map<string, string[]>();
      for (const x of r.rows) by.set(x.cluster, [...(by.get(x.cluster) ?? []), x.node]);
      for (const [cl, nodes] of by) await markNodesDirty(c, cl, nodes);
      return {
        result: true,
        audit: [{ action: "workload.desired-removed", objectKind: "ServiceWorkload", objectName: workload, cluster: r.rows[0]?.cluster, details: { removed: r.rows.map((x) => x.node).sort() } }],
      };
    });
  }

  /** Latest reports of a workload, by node. */
  async reportsOfWorkload(workload: string): Promise<Map<string, WorkloadReportRow>> {
    const r = await this.pool.query<ReportDb>("SELECT * FROM workload_reports WHERE workload = $1", [workload]);
    return new Map(r.rows.map((x) => [x.node, reportFromDb(x)]));
  }

  /** Latest reports of a node, by workload name. */
  async reportsOfNode(node: string): Promise<WorkloadReportRow[]> {
    const r = await this.pool.query<ReportDb>("SELECT * FROM workload_reports WHERE node = $1 ORDER BY workload", [node]);
    return r.rows.map(reportFromDb);
  }
}

/**
 * Workloads a node gets in its snapshot (contributor "workloads"): its own
 * desired rows only, and (defence in depth) an organization-scoped workload
 * only while the node holds a role for that organization.
 */
/** snapshotWorkloadsOf for many nodes of one cluster in one query, keyed by node. */
export async function snapshotWorkloadsOfMany(db: pg.ClientBase, cluster: string, nodes: readonly string[]): Promise<Map<string, SnapshotWorkload[]>> {
  const r = await db.query<{ node: string; spec: SnapshotWorkload }>(
    `SELECT w.node, w.spec FROM unnest($2::text[]) AS x(name) JOIN node_workloads w ON w.node = x.name
      WHERE w.cluster = $1
        AND (w.organization = '' OR EXISTS (SELECT 1 FROM node_roles r WHERE r.node = w.node AND r.cluster = w.cluster AND r.organization = w.organization))
      ORDER BY w.node, w.workload`,
    [cluster, nodes],
  );
  const out = new Map<string, SnapshotWorkload[]>();
  for (const row of r.rows) {
    let list = out.get(row.node);
    if (!list) out.set(row.node, (list = []));
    list.push(row.spec);
  }
  return out;
}

export async function snapshotWorkloadsOf(db: pg.ClientBase, cluster: string, node: string): Promise<SnapshotWorkload[]> {
  const r = await db.query<{ spec: SnapshotWorkload }>(
    `SELECT w.spec FROM node_workloads w
      WHERE w.cluster = $1 AND w.node = $2
        AND (w.organization = '' OR EXISTS (SELECT 1 FROM node_roles r WHERE r.node = w.node AND r.cluster = w.cluster AND r.organization = w.organization))
      ORDER BY w.workload`,
    [cluster, node],
  );
  return r.rows.map((x) => x.spec);
}
