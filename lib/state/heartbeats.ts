/**
 * Repository of agent heartbeats, published node health and generic status
 * reports (migrations/007_snapshots_heartbeats.sql). Heartbeats are runtime
 * facts written in batches by the agent API (not fenced: they decide
 * nothing); the health the control plane publishes is a fenced, audited
 * decision of the leader.
 */
import type pg from "pg";
import { decide, type Fence } from "./fenced.js";
import { firstRow } from "./table.js";

/**
 * How long after its last heartbeat a node's agent counts as alive, for the
 * freshness of its mesh report; the FabricNode liveness default
 * (controllers/fabricnode/liveness.ts, kept equal by a unit test).
 */
export const DEFAULT_NODE_GRACE_PERIOD_MS = 40_000;

/** Health an agent reports about its host. */
export type AgentHealth = "Healthy" | "Degraded";

/** One heartbeat as received (validated by the agent API). */
export interface HeartbeatRow {
  node: string;
  cluster: string;
  receivedAt: Date;
  /** The agent's own counter; an older one never overwrites a newer one. */
  seq: number;
  agentVersion: string;
  capabilities: string[];
  facts: Record<string, unknown>;
  health: AgentHealth;
  healthMessage: string;
  snapshotSerial?: number;
  snapshotHash?: string;
  snapshotAppliedAt?: Date;
}

/** Writes heartbeats in one statement (the latest per node wins, by seq; nodes without a row are skipped). */
export async function writeHeartbeats(db: pg.Pool | pg.ClientBase, rows: readonly HeartbeatRow[]): Promise<void> {
  if (rows.length === 0) return;
  await db.query(
    `INSERT INTO node_heartbeats (node, cluster, received_at, seq, agent_version, capabilities, facts, health, health_message, snapshot_serial, snapshot_hash, snapshot_applied_at)
     SELECT m.node, m.cluster, m.received_at, m.seq, m.agent_version, ARRAY(SELECT jsonb_array_elements_text(m.capabilities)), m.facts, m.health, m.health_message,
            m.snapshot_serial, m.snapshot_hash, m.snapshot_applied_at
       FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bigint[], $5::text[], $6::jsonb[], $7::jsonb[], $8::text[], $9::text[], $10::bigint[], $11::text[], $12::timestamptz[])
         AS m(node, cluster, received_at, seq, agent_version, capabilities, facts, health, health_message, snapshot_serial, snapshot_hash, snapshot_applied_at)
      -- A node deleted since its heartbeat was queued gets no row back (its row went with it: migrations/009).
      WHERE EXISTS (SELECT 1 FROM nodes n WHERE n.name = m.node)
     ON CONFLICT (node) DO UPDATE SET cluster = EXCLUDED.cluster, received_at = EXCLUDED.received_at, seq = EXCLUDED.seq,
       agent_version = EXCLUDED.agent_version, capabilities = EXCLUDED.capabilities, facts = EXCLUDED.facts, health = EXCLUDED.health,
       health_message = EXCLUDED.health_message, snapshot_serial = EXCLUDED.snapshot_serial, snapshot_hash = EXCLUDED.snapshot_hash,
       snapshot_applied_at = EXCLUDED.snapshot_applied_at
     WHERE node_heartbeats.seq <= EXCLUDED.seq OR node_heartbeats.received_at < EXCLUDED.received_at - interval '1 hour'`,
    [
      rows.map((r) => r.node),
      rows.map((r) => r.cluster),
      rows.map((r) => r.receivedAt),
      rows.map((r) => r.seq),
      rows.map((r) => r.agentVersion),
      rows.map((r) => JSON.stringify(r.capabilities)),
      rows.map((r) => JSON.stringify(r.facts)),
      rows.map((r) => r.health),
      rows.map((r) => r.healthMessage),
      rows.map((r) => r.snapshotSerial ?? null),
      rows.map((r) => r.snapshotHash ?? null),
      rows.map((r) => r.snapshotAppliedAt ?? null),
    ],
  );
}

interface HeartbeatDb {
  node: string;
  cluster: string;
  received_at: Date;
  seq: string;
  agent_version: string;
  capabilities: string[];
  facts: Record<string, unknown>;
  health: AgentHealth;
  health_message: string;
  snapshot_serial: string | null;
  snapshot_hash: string | null;
  snapshot_applied_at: Date | null;
}

function fromDb(r: HeartbeatDb): HeartbeatRow {
  const out: HeartbeatRow = {
    node: r.node,
    cluster: r.cluster,
    receivedAt: r.received_at,
    seq: Number(r.seq),
    agentVersion: r.agent_version,
    capabilities: r.capabilities,
    facts: r.facts,
    health: r.health,
    healthMessage: r.health_message,
  };
  if (r.snapshot_serial !== null) out.snapshotSerial = Number(r.snapshot_serial);
  if (r.snapshot_hash !== null) out.snapshotHash = r.snapshot_hash;
  if (r.snapshot_applied_at !== null) out.snapshotAppliedAt = r.snapshot_applied_at;
  return out;
}

/** Writes a generic status report unless a newer version is stored; false when it was stale. */
export async function writeStatusReport(db: pg.Pool, r: { node: string; cluster: string; kind: string; version: number; body: unknown }): Promise<boolean> {
  const res = await db.query(
    `INSERT INTO node_status_reports (node, kind, cluster, version, body) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (node, kind) DO UPDATE SET version = EXCLUDED.version, body = EXCLUDED.body, received_at = now(), cluster = EXCLUDED.cluster
     WHERE node_status_reports.version < EXCLUDED.version`,
    [r.node, r.kind, r.cluster, r.version, JSON.stringify(r.body)],
  );
  return (res.rowCount ?? 0) > 0;
}

/** The latest status report of a node and kind. */
export async function statusReportOf(db: pg.Pool, node: string, kind: string): Promise<{ version: number; body: unknown } | undefined> {
  return firstRow(db, "SELECT version, body FROM node_status_reports WHERE node = $1 AND kind = $2", [node, kind], (x: { version: string; body: unknown }) => ({
    version: Number(x.version),
    body: x.body,
  }));
}

/** One node's row in the health monitor's scan (HeartbeatStore.receipts). */
export interface HeartbeatReceipt {
  node: string;
  receivedAt: Date;
  seq: number;
  health: AgentHealth;
  agentVersion: string;
  snapshotSerial: number | null;
  /** Digest of the other status-visible fields (capabilities, facts, health message, snapshot hash and time). */
  visible: string;
}

/** Reads heartbeats and the published health (used by the FabricNode controller). */
export class HeartbeatStore {
  constructor(
    private readonly pool: pg.Pool,
    private readonly fence: Fence,
    private readonly actor: string,
  ) {}

  /** The latest heartbeat of a node. */
  async latest(node: string): Promise<HeartbeatRow | undefined> {
    return firstRow(this.pool, "SELECT * FROM node_heartbeats WHERE node = $1", [node], fromDb);
  }

  /**
   * Heartbeat receipt times of every node (the health monitor's scan: one
   * narrow query). `visible` is a digest of everything else a heartbeat can
   * change in FabricNode status (capabilities, facts, health message,
   * snapshot hash, the peers with a link up in the node's last mesh
   * report), so the scan never has to read the facts themselves.
   */
  async receipts(): Promise<HeartbeatReceipt[]> {
    const r = await this.pool.query<{ node: string; received_at: Date; seq: string; health: AgentHealth; agent_version: string; snapshot_serial: string | null; visible: string }>(
      `SELECT h.node, h.received_at, h.seq, h.health, h.agent_version, h.snapshot_serial,
              md5(array_to_string(h.capabilities, ',') || '|' || h.facts::text || '|' || h.health_message || '|' || coalesce(h.snapshot_hash, '') || '|' || coalesce(h.snapshot_applied_at::text, '')
                  || '|' || coalesce((SELECT string_agg(p->>'peer', ',' ORDER BY p->>'peer') FROM jsonb_array_elements(CASE WHEN jsonb_typeof(s.body->'peers') = 'array' THEN s.body->'peers' ELSE '[]'::jsonb END) p WHERE p->>'state' = 'up'), '-')) AS visible
         FROM node_heartbeats h
         LEFT JOIN node_status_reports s ON s.node = h.node AND s.kind = 'mesh'`,
    );
    return r.rows.map((x) => ({
      node: x.node,
      receivedAt: x.received_at,
      seq: Number(x.seq),
      health: x.health,
      agentVersion: x.agent_version,
      snapshotSerial: x.snapshot_serial === null ? null : Number(x.snapshot_serial),
      visible: x.visible,
    }));
  }

  /** The health last published (and audited) for a node. */
  async published(node: string): Promise<string | undefined> {
    const r = await this.pool.query<{ health: string }>("SELECT health FROM node_health WHERE node = $1", [node]);
    return r.rows[0]?.health;
  }

  /** Records a health change with its audit row (fenced); false when it was already recorded. */
  async recordHealth(node: string, cluster: string, health: string, reason: string): Promise<boolean> {
    return decide(this.fence, this.actor, async (c) => {
      const cur = await c.query<{ health: string }>("SELECT health FROM node_health WHERE node = $1 FOR UPDATE", [node]);
      const from = cur.rows[0]?.health;
      if (from === health) return { result: false, audit: [] };
      await c.query(
        `INSERT INTO node_health (node, cluster, health, changed_at) VALUES ($1, $2, $3, now())
         ON CONFLICT (node) DO UPDATE SET health = EXCLUDED.health, changed_at = now()`,
        [node, cluster, health],
      );
      return { result: true, audit: [{ action: "node.health.changed", objectKind: "FabricNode", objectName: node, cluster, details: { from: from ?? null, to: health, reason } }] };
    });
  }
}
