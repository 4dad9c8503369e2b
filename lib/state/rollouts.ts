/**
 * Repository of release rollouts (migrations/018_rollouts.sql): the rollout
 * progress of each ReleaseChannel, the version each of its nodes is
 * assigned (with the signed envelope and the node's artifact, as the
 * snapshot carries them), the trust set per cluster, and the agents' update
 * reports (node_status_reports kind `updates`). Decisions are fenced and
 * audited, with snapshot_dirty marks for exactly the nodes whose assignment
 * changed, in the same transaction.
 */
import type pg from "pg";
import type { SnapshotReleaseAssignment } from "../snapshot/format.js";
import { canonicalJson } from "../canonical-json.js";
import { markNodesDirty } from "../snapshot/contributors.js";
import { decide, type AuditEntry, type Fence } from "./fenced.js";

/** One node's assignment. */
export interface AssignmentRow {
  version: string;
  releaseName: string;
  artifact: { os: string; arch: string; length: number; sha256: string };
  envelope: unknown;
  ring: string;
}

/** An assignment as it goes into a node's snapshot (payload.releaseUpdates.assignments). */
export type SnapshotAssignment = SnapshotReleaseAssignment;

/** One workload of an agent's `updates` report. */
export interface UpdateReportItem {
  workload: string;
  channel: string;
  state: string;
  version?: string;
  previousVersion?: string;
  reason?: string;
  since?: string;
}

/** What commit() changed. */
export interface AssignmentChange {
  assigned: string[];
  removed: string[];
}

/** Compares values as jsonb holds them (keys reordered, undefined members dropped). */
const sameJson = (a: unknown, b: unknown): boolean => canonicalJson(JSON.parse(JSON.stringify(a ?? null))) === canonicalJson(JSON.parse(JSON.stringify(b ?? null)));

/** See the module comment. */
export class RolloutStore {
  constructor(
    private readonly pool: pg.Pool,
    private readonly fence: Fence,
    private readonly actor: string,
  ) {}

  /** The channel's persisted rollout state (undefined: never reconciled). */
  async state<S>(channel: string): Promise<S | undefined> {
    const r = await this.pool.query<{ state: S }>("SELECT state FROM release_rollouts WHERE channel = $1", [channel]);
    return r.rows[0]?.state;
  }

  /** The channel's assignments by node. */
  async assignments(channel: string): Promise<Map<string, AssignmentRow>> {
    const r = await this.pool.query<{ node: string; version: string; release_name: string; artifact: AssignmentRow["artifact"]; envelope: unknown; ring: string }>(
      "SELECT node, version, release_name, artifact, envelope, ring FROM rollout_assignments WHERE channel = $1",
      [channel],
    );
    return new Map(r.rows.map((x) => [x.node, { version: x.version, releaseName: x.release_name, artifact: x.artifact, envelope: x.envelope, ring: x.ring }]));
  }

  /** Channels with rows (orphan sweeps). */
  async channelNames(): Promise<string[]> {
    const r = await this.pool.query<{ channel: string }>("SELECT channel FROM release_rollouts UNION SELECT DISTINCT channel FROM rollout_assignments");
    return r.rows.map((x) => x.channel);
  }

  /**
   * Writes the channel's state and makes its assignments exactly `want`
   * (nodes absent lose theirs). Marks the nodes whose assignment changed
   * dirty; audits `audit` plus one row per change of assignments.
   */
  async commit(
    channel: string,
    cluster: string,
    component: string,
    state: unknown,
    want: ReadonlyMap<string, AssignmentRow>,
    audit: readonly Omit<AuditEntry, "objectKind" | "objectName" | "cluster">[],
  ): Promise<AssignmentChange> {
    return decide(this.fence, this.actor, async (c) => {
      const cur = await c.query<{ node: string; version: string; release_name: string; artifact: unknown; envelope: unknown; ring: string }>(
        "SELECT node, version, release_name, artifact, envelope, ring FROM rollout_assignments WHERE channel = $1 FOR UPDATE",
        [channel],
      );
      const have = new Map(cur.rows.map((r) => [r.node, r]));
      const removed = [...have.keys()].filter((n) => !want.has(n)).sort();
      const assigned: string[] = [];
      if (removed.length > 0) await c.query("DELETE FROM rollout_assignments WHERE channel = $1 AND node = ANY($2::text[])", [channel, removed]);
      const rows = [...want].filter(([node, w]) => {
        const h = have.get(node);
        return h === undefined || h.version !== w.version || h.release_name !== w.releaseName || h.ring !== w.ring || !sameJson(h.artifact, w.artifact);
      });
      if (rows.length > 0) {
        await c.query(
          `INSERT INTO rollout_assignments (channel, node, cluster, component, version, release_name, artifact, envelope, ring, assigned_at)
           SELECT $1, x.node, $2, $3, x.version, x.release_name, x.artifact, x.envelope, x.ring, now()
             FROM jsonb_to_recordset($4::jsonb) AS x(node text, version text, release_name text, artifact jsonb, envelope jsonb, ring text)
           ON CONFLICT (channel, node) DO UPDATE SET cluster = EXCLUDED.cluster, component = EXCLUDED.component, version = EXCLUDED.version,
             release_name = EXCLUDED.release_name, artifact = EXCLUDED.artifact, envelope = EXCLUDED.envelope, ring = EXCLUDED.ring, assigned_at = now()`,
          [channel, cluster, component, JSON.stringify(rows.map(([node, w]) => ({ node, version: w.version, release_name: w.releaseName, artifact: w.artifact, envelope: w.envelope, ring: w.ring })))],
        );
        for (const [node] of rows) assigned.push(node);
      }
      const prev = await c.query<{ state: unknown }>("SELECT state FROM release_rollouts WHERE channel = $1", [channel]);
      if (prev.rows[0] === undefined || !sameJson(prev.rows[0].state, state)) {
        await c.query(
          `INSERT INTO release_rollouts (channel, cluster, component, state, updated_at) VALUES ($1, $2, $3, $4, now())
           ON CONFLICT (channel) DO UPDATE SET cluster = EXCLUDED.cluster, component = EXCLUDED.component, state = EXCLUDED.state, updated_at = now()`,
          [channel, cluster, component, JSON.stringify(state)],
        );
      }
      const changed = [...assigned, ...removed];
      if (changed.length > 0) {
        await syncFetchRights(c, changed);
        await markNodesDirty(c, cluster, changed);
      }
      assigned.sort();
      const entries: AuditEntry[] = audit.map((a) => ({ ...a, objectKind: "ReleaseChannel", objectName: channel, cluster }));
      if (changed.length > 0) {
        const byVersion: Record<string, string[]> = {};
        for (const [node, w] of rows) (byVersion[w.version] ??= []).push(node);
        entries.push({ action: "rollout.assignments-changed", objectKind: "ReleaseChannel", objectName: channel, cluster, details: { assigned: byVersion, removed } });
      }
      return { result: { assigned, removed }, audit: entries };
    });
  }

  /** Removes a deleted channel's rows (its nodes lose their assignments). */
  async deleteChannel(channel: string): Promise<boolean> {
    return decide(this.fence, this.actor, async (c) => {
      const r = await c.query<{ node: string; cluster: string }>("DELETE FROM rollout_assignments WHERE channel = $1 RETURNING node, cluster", [channel]);
      const s = await c.query("DELETE FROM release_rollouts WHERE channel = $1", [channel]);
      const byCluster = new Map<string, string[]>();
      for (const x of r.rows) byCluster.set(x.cluster, [...(byCluster.get(x.cluster) ?? []), x.node]);
      await syncFetchRights(
        c,
        r.rows.map((x) => x.node),
      );
      for (const [cl, nodes] of byCluster) await markNodesDirty(c, cl, nodes);
      const any = r.rows.length + (s.rowCount ?? 0) > 0;
      return { result: any, audit: any ? [{ action: "rollout.channel-removed", objectKind: "ReleaseChannel", objectName: channel, details: { nodes: r.rows.map((x) => x.node).sort() } }] : [] };
    });
  }

  /** Sets the cluster's trust set for snapshots; marks every node of the cluster dirty when it changed. */
  async setTrust(cluster: string, trust: { keys: { keyId: string; publicKey: string }[]; threshold: number }): Promise<boolean> {
    const cur = await this.pool.query<{ trust: unknown }>("SELECT trust FROM rollout_trust WHERE cluster = $1", [cluster]);
    if (cur.rows[0] !== undefined && sameJson(cur.rows[0].trust, trust)) return false;
    return decide(this.fence, this.actor, async (c) => {
      await c.query("INSERT INTO rollout_trust (cluster, trust) VALUES ($1, $2) ON CONFLICT (cluster) DO UPDATE SET trust = EXCLUDED.trust", [cluster, JSON.stringify(trust)]);
      await markNodesDirty(c, cluster, "*");
      return { result: true, audit: [{ action: "rollout.trust-changed", objectKind: "FabricCluster", objectName: cluster, cluster, details: { keyIds: trust.keys.map((k) => k.keyId), threshold: trust.threshold } }] };
    });
  }

  /** One node's latest `updates` report items (FabricNode status.updates). */
  async updateReportsOfNode(node: string): Promise<UpdateReportItem[]> {
    const r = await this.pool.query<{ body: unknown }>("SELECT body FROM node_status_reports WHERE kind = 'updates' AND node = $1", [node]);
    return updateItems(r.rows[0]?.body);
  }

  /** The agents' latest `updates` reports of a cluster's nodes, by node. */
  async updateReports(cluster: string, nodes: readonly string[]): Promise<Map<string, UpdateReportItem[]>> {
    const r = await this.pool.query<{ node: string; body: { workloads?: unknown } }>(
      "SELECT node, body FROM node_status_reports WHERE kind = 'updates' AND cluster = $1 AND node = ANY($2::text[])",
      [cluster, nodes],
    );
    return new Map(r.rows.map((x) => [x.node, updateItems(x.body)]));
  }
}

/**
 * Makes node_release_assignments (what the agent API lets a node download,
 * migrations/017) of `nodes` the union of their assignments over every channel.
 */
async function syncFetchRights(c: pg.ClientBase, nodes: readonly string[]): Promise<void> {
  if (nodes.length === 0) return;
  await c.query("DELETE FROM node_release_assignments WHERE node_id = ANY($1::text[])", [nodes]);
  await c.query(
    `INSERT INTO node_release_assignments (node_id, release_name, sha256)
     SELECT node, release_name, artifact->>'sha256' FROM rollout_assignments WHERE node = ANY($1::text[])
     ON CONFLICT DO NOTHING`,
    [nodes],
  );
}

/** The well-formed items of an `updates` report body (anything else is dropped). */
export function updateItems(body: unknown): UpdateReportItem[] {
  const list = (body as { workloads?: unknown } | null)?.workloads;
  if (!Array.isArray(list)) return [];
  const out: UpdateReportItem[] = [];
  const s = (v: unknown, max: number): string | undefined => (typeof v === "string" && v.length <= max ? v : undefined);
  for (const x of list.slice(0, 256)) {
    if (typeof x !== "object" || x === null) continue;
    const o = x as Record<string, unknown>;
    const workload = s(o.workload, 253);
    const channel = s(o.channel, 253);
    const state = s(o.state, 32);
    if (workload === undefined || channel === undefined || state === undefined) continue;
    out.push({ workload, channel, state, version: s(o.version, 64), previousVersion: s(o.previousVersion, 64), reason: s(o.reason, 1024), since: s(o.since, 40) });
  }
  return out;
}

/** payload.releaseUpdates for many nodes of a cluster: assignments of the node's channel-bound workloads, and the trust set. */
export async function snapshotReleaseUpdatesOfMany(
  db: pg.ClientBase,
  cluster: string,
  nodes: readonly string[],
): Promise<{ trust: unknown; byNode: Map<string, SnapshotAssignment[]> }> {
  const t = await db.query<{ trust: unknown }>("SELECT trust FROM rollout_trust WHERE cluster = $1", [cluster]);
  const r = await db.query<{ node: string; workload: string; channel: string; component: string; version: string; envelope: unknown; artifact: SnapshotAssignment["artifact"] }>(
    `SELECT w.node, w.workload, a.channel, a.component, a.version, a.envelope, a.artifact
       FROM unnest($2::text[]) AS x(name)
       JOIN node_workloads w ON w.node = x.name AND w.cluster = $1
       JOIN rollout_assignments a ON a.node = w.node AND a.cluster = w.cluster AND a.channel = w.spec->>'releaseChannel'
      WHERE (w.organization = '' OR EXISTS (SELECT 1 FROM node_roles r WHERE r.node = w.node AND r.cluster = w.cluster AND r.organization = w.organization))
      ORDER BY w.node, w.workload`,
    [cluster, nodes],
  );
  const byNode = new Map<string, SnapshotAssignment[]>();
  for (const x of r.rows) {
    const l = byNode.get(x.node) ?? [];
    l.push({ workload: x.workload, channel: x.channel, component: x.component, version: x.version, envelope: x.envelope, artifact: x.artifact });
    byNode.set(x.node, l);
  }
  return { trust: t.rows[0]?.trust, byNode };
}
