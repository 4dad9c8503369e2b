/**
 * Repository of VPN connections and their fenced single-active leases
 * (migrations/016_vpn.sql, docs/vpn.md).
 *
 * - The controller projects each VPNConnection's intent (vpn_connections).
 * - Acquire is one INSERT ... ON CONFLICT DO UPDATE on the connection's
 *   lease row that takes over only a free or expired lease and draws the
 *   token from the row lock (`token + 1`); eligibility is read in the same
 *   transaction, and the whole transaction commits only under the held
 *   authority term (a deposed control plane cannot grant).
 * - Expiry is judged by the database clock, never a caller's: a takeover
 *   needs `expires_at <= now()` (the transaction's start, so the stricter
 *   reading), while the times recorded (granted, renewed, ended, the new
 *   expiry) and the renewal and credential checks use clock_timestamp(),
 *   the moment the row is locked: a transaction slowed between its start
 *   and the lock never records a grant before the release it waited for.
 * - Every grant has a vpn_grants row, open until released, expired, fenced
 *   or ended because the holder became ineligible; a unique partial index
 *   allows one open grant per connection. Grants, ends and fences are
 *   audited with the change; renewals are only counted (vpn_leases.renewals,
 *   copied into the grant row and the audit entry when it ends).
 * - Renewals are group-committed: concurrent renew() calls of one store are
 *   written by one fenced UPDATE ... FROM unnest(...) per batch, each row
 *   keeping its own holder, token and database-clock expiry condition; one
 *   batch is in flight at a time and the next collects while it runs.
 */
import type pg from "pg";
import { markNodesDirty } from "../snapshot/contributors.js";
import type { VpnRoute } from "../agent-protocol.js";
import { withTransaction } from "../db/pool.js";
import { decide, type AuditEntry, type Fence } from "./fenced.js";

/** The role a node needs to own a connection of each mode. */
export const VPN_ROLE: Readonly<Record<"Exit" | "Connector", string>> = { Exit: "vpn-exit", Connector: "vpn-connector" };

/** A connection's projected intent. */
export interface VpnConnectionRow {
  /** `<namespace>/<name>`. */
  connection: string;
  namespace: string;
  name: string;
  cluster: string;
  mode: "Exit" | "Connector";
  allowedNodes: string[];
  routes: VpnRoute[];
  leaseTtlMs: number;
  secretName?: string;
  secretKey?: string;
  enabled: boolean;
  /** False when the spec failed validation: nobody is granted. */
  valid: boolean;
  /** The allowed nodes the controller last found eligible (only to re-sign snapshots when it changes). */
  eligibleNodes: string[];
}

/** What eligibility needs to know of a node. */
export interface VpnNodeFacts {
  node: string;
  cluster: string;
  membership: "Active" | "Disabled" | "Revoked";
  /** Published health (node_health); undefined before the first heartbeat. */
  health?: string;
  /** Roles held for the platform or the connection's organization. */
  roles: string[];
}

/** Why a node may not own a connection (stable reasons for status and 403s). */
export type VpnIneligibility = "ConnectionDisabled" | "ConnectionInvalid" | "NotAllowed" | "UnknownNode" | "OtherCluster" | "NodeDisabled" | "NodeRevoked" | "NotHealthy" | "MissingRole";

/** Reasons that must not reveal the connection to the caller (it is not one of its allowed nodes). */
export const INVISIBLE_REASONS: ReadonlySet<VpnIneligibility> = new Set(["NotAllowed", "OtherCluster", "UnknownNode"]);

/** Whether `facts` may own `c` (pure; the one rule shared by the agent API and the controller). */
export function vpnEligibility(c: Pick<VpnConnectionRow, "cluster" | "mode" | "allowedNodes" | "enabled" | "valid">, node: string, facts: VpnNodeFacts | undefined): { eligible: true } | { eligible: false; reason: VpnIneligibility } {
  if (!c.allowedNodes.includes(node)) return { eligible: false, reason: "NotAllowed" };
  if (facts === undefined) return { eligible: false, reason: "UnknownNode" };
  if (facts.cluster !== c.cluster) return { eligible: false, reason: "OtherCluster" };
  if (!c.valid) return { eligible: false, reason: "ConnectionInvalid" };
  if (!c.enabled) return { eligible: false, reason: "ConnectionDisabled" };
  if (facts.membership === "Disabled") return { eligible: false, reason: "NodeDisabled" };
  if (facts.membership === "Revoked") return { eligible: false, reason: "NodeRevoked" };
  if (facts.health !== "Healthy") return { eligible: false, reason: "NotHealthy" };
  if (!facts.roles.includes(VPN_ROLE[c.mode])) return { eligible: false, reason: "MissingRole" };
  return { eligible: true };
}

/** The lease row of a connection. */
export interface VpnLeaseRow {
  connection: string;
  holder?: string;
  token: number;
  acquiredAt?: Date;
  renewedAt?: Date;
  expiresAt?: Date;
  renewals: number;
}

/** Outcome of an acquire. */
export type VpnAcquireOutcome =
  | { kind: "granted"; token: number; ttlMs: number; expiresAt: Date; grantedAt: Date }
  | { kind: "busy"; retryAfterMs: number }
  | { kind: "ineligible"; reason: VpnIneligibility };

/** A lease ended by the expiry sweep, a fence or an eligibility change. */
export interface VpnEndedLease {
  connection: string;
  holder: string;
  token: number;
  reason: "expired" | "fenced" | "ineligible" | "released";
  renewals: number;
}

/** One grant history row. */
export interface VpnGrantRow {
  id: number;
  connection: string;
  token: number;
  holder: string;
  grantedAt: Date;
  endedAt?: Date;
  endReason?: string;
  renewals: number;
}

interface ConnRowDb {
  connection: string;
  namespace: string;
  name: string;
  cluster: string;
  mode: "Exit" | "Connector";
  allowed_nodes: string[];
  routes: VpnRoute[];
  lease_ttl_ms: number;
  secret_name: string | null;
  secret_key: string | null;
  enabled: boolean;
  valid: boolean;
  eligible_nodes: string[];
}

const CONN_COLUMNS = "connection, namespace, name, cluster, mode, allowed_nodes, routes, lease_ttl_ms, secret_name, secret_key, enabled, valid, eligible_nodes";

function connOf(r: ConnRowDb): VpnConnectionRow {
  return {
    connection: r.connection,
    namespace: r.namespace,
    name: r.name,
    cluster: r.cluster,
    mode: r.mode,
    allowedNodes: r.allowed_nodes,
    routes: r.routes,
    leaseTtlMs: r.lease_ttl_ms,
    ...(r.secret_name !== null ? { secretName: r.secret_name, secretKey: r.secret_key ?? "credentials" } : {}),
    enabled: r.enabled,
    valid: r.valid,
    eligibleNodes: r.eligible_nodes,
  };
}

/** Eligibility facts of nodes, roles counted for the platform ('') and `organization`. */
export async function vpnNodeFacts(db: pg.ClientBase | pg.Pool, nodes: readonly string[], organization: string): Promise<Map<string, VpnNodeFacts>> {
  const r = await db.query<{ name: string; cluster: string; membership: VpnNodeFacts["membership"]; health: string | null; roles: string[] }>(
    `SELECT n.name, n.cluster, n.membership, h.health,
            ARRAY(SELECT DISTINCT r.role FROM node_roles r WHERE r.node = n.name AND r.cluster = n.cluster AND (r.organization = '' OR r.organization = $2)) AS roles
       FROM nodes n LEFT JOIN node_health h ON h.node = n.name
      WHERE n.name = ANY($1::text[])`,
    [nodes, organization],
  );
  return new Map(r.rows.map((x) => [x.name, { node: x.name, cluster: x.cluster, membership: x.membership, ...(x.health !== null ? { health: x.health } : {}), roles: x.roles }]));
}

/** Connections whose allowedNodes list `node` (the snapshot contributor's read). */
export async function vpnConnectionsListing(db: pg.ClientBase | pg.Pool, cluster: string, nodes: readonly string[]): Promise<VpnConnectionRow[]> {
  const r = await db.query<ConnRowDb>(`SELECT ${CONN_COLUMNS} FROM vpn_connections WHERE cluster = $1 AND allowed_nodes && $2::text[] ORDER BY connection`, [cluster, nodes]);
  return r.rows.map(connOf);
}

function leaseOf(r: { connection: string; holder: string | null; token: string; acquired_at: Date | null; renewed_at: Date | null; expires_at: Date | null; renewals: number }): VpnLeaseRow {
  return {
    connection: r.connection,
    ...(r.holder !== null ? { holder: r.holder } : {}),
    token: Number(r.token),
    ...(r.acquired_at !== null ? { acquiredAt: r.acquired_at } : {}),
    ...(r.renewed_at !== null ? { renewedAt: r.renewed_at } : {}),
    ...(r.expires_at !== null ? { expiresAt: r.expires_at } : {}),
    renewals: r.renewals,
  };
}

function endAudit(e: VpnEndedLease, cluster: string | undefined): AuditEntry {
  return {
    action: `vpn.lease.${e.reason}`,
    objectKind: "VPNConnection",
    objectName: e.connection,
    ...(cluster !== undefined ? { cluster } : {}),
    details: { holder: e.holder, token: e.token, renewals: e.renewals },
  };
}

/** One renewal of a batch: `node` holds `connection` with `token`. */
export interface VpnRenewRequest {
  connection: string;
  node: string;
  token: number;
}

/** A renewed lease. */
export interface VpnRenewed {
  token: number;
  ttlMs: number;
  expiresAt: Date;
}

/** Most renewals written by one statement. */
const MAX_RENEW_BATCH = 2000;

/** Most grants decided in one transaction. */
const MAX_ACQUIRE_BATCH = 200;

/** See the module comment. */
export class VpnStore {
  private renewQueue: Array<{ request: VpnRenewRequest; resolve: (r: VpnRenewed | undefined) => void; reject: (err: unknown) => void }> = [];
  private renewing = false;
  private acquireQueue: Array<{ connection: string; node: string; resolve: (r: VpnAcquireOutcome) => void; reject: (err: unknown) => void }> = [];
  private acquiring = false;
  /** Renewal batches written so far (one fenced transaction each). */
  renewBatches = 0;

  constructor(
    private readonly pool: pg.Pool,
    private readonly authority: Fence,
    private readonly actor: string,
  ) {}

  /** One connection's projection. */
  async connection(connection: string): Promise<VpnConnectionRow | undefined> {
    const r = await this.pool.query<ConnRowDb>(`SELECT ${CONN_COLUMNS} FROM vpn_connections WHERE connection = $1`, [connection]);
    return r.rows[0] === undefined ? undefined : connOf(r.rows[0]);
  }

  /** Every projected connection's key. */
  async connectionKeys(): Promise<string[]> {
    return (await this.pool.query<{ connection: string }>("SELECT connection FROM vpn_connections ORDER BY connection")).rows.map((r) => r.connection);
  }

  /** Eligibility facts (see vpnNodeFacts). */
  nodeFacts(nodes: readonly string[], organization: string): Promise<Map<string, VpnNodeFacts>> {
    return vpnNodeFacts(this.pool, nodes, organization);
  }

  /** The lease row, if one was ever taken. */
  async lease(connection: string): Promise<VpnLeaseRow | undefined> {
    const r = await this.pool.query("SELECT connection, holder, token, acquired_at, renewed_at, expires_at, renewals FROM vpn_leases WHERE connection = $1", [connection]);
    return r.rows[0] === undefined ? undefined : leaseOf(r.rows[0]);
  }

  /** The newest grants of a connection, newest first. */
  async grants(connection: string, limit = 20): Promise<VpnGrantRow[]> {
    const r = await this.pool.query<{ id: string; connection: string; token: string; holder: string; granted_at: Date; ended_at: Date | null; end_reason: string | null; renewals: number }>(
      "SELECT id, connection, token, holder, granted_at, ended_at, end_reason, renewals FROM vpn_grants WHERE connection = $1 ORDER BY id DESC LIMIT $2",
      [connection, limit],
    );
    return r.rows.map((x) => ({
      id: Number(x.id),
      connection: x.connection,
      token: Number(x.token),
      holder: x.holder,
      grantedAt: x.granted_at,
      ...(x.ended_at !== null ? { endedAt: x.ended_at } : {}),
      ...(x.end_reason !== null ? { endReason: x.end_reason } : {}),
      renewals: x.renewals,
    }));
  }

  /** Connections whose grants started or ended after grant id `afterId` / time `since` (the controller's change feed). */
  async grantChanges(afterId: number, since: Date): Promise<{ connections: string[]; lastId: number; now: Date }> {
    const r = await this.pool.query<{ connection: string; id: string; now: Date }>(
      "SELECT connection, id, now() AS now FROM vpn_grants WHERE id > $1 OR ended_at >= $2",
      [afterId, since],
    );
    const now = r.rows[0]?.now ?? (await this.pool.query<{ now: Date }>("SELECT now() AS now")).rows[0]!.now;
    return { connections: [...new Set(r.rows.map((x) => x.connection))], lastId: Math.max(afterId, ...r.rows.map((x) => Number(x.id))), now };
  }

  /** Connections whose current holder sent a `vpn` status report naming them since `since` (their ownerState may have moved). */
  async holderReportsSince(since: Date): Promise<string[]> {
    const r = await this.pool.query<{ connection: string }>(
      `SELECT DISTINCT l.connection FROM node_status_reports r JOIN vpn_leases l ON l.holder = r.node
        WHERE r.kind = 'vpn' AND r.received_at >= $1 AND r.body -> 'connections' @> jsonb_build_array(jsonb_build_object('connection', l.connection))`,
      [since],
    );
    return r.rows.map((x) => x.connection);
  }

  /**
   * Writes a connection's projection (fenced); marks dirty the nodes listed
   * before or after when anything a snapshot carries changed. True when
   * something changed.
   */
  async upsertConnection(c: VpnConnectionRow): Promise<boolean> {
    return decide(this.authority, this.actor, async (db) => {
      const cur = await db.query<ConnRowDb>(`SELECT ${CONN_COLUMNS} FROM vpn_connections WHERE connection = $1 FOR UPDATE`, [c.connection]);
      const before = cur.rows[0] === undefined ? undefined : connOf(cur.rows[0]);
      if (before !== undefined && JSON.stringify(before) === JSON.stringify(c)) return { result: false, audit: [] };
      await db.query(
        `INSERT INTO vpn_connections (connection, namespace, name, cluster, mode, allowed_nodes, routes, lease_ttl_ms, secret_name, secret_key, enabled, valid, eligible_nodes, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, now())
         ON CONFLICT (connection) DO UPDATE SET namespace = EXCLUDED.namespace, name = EXCLUDED.name, cluster = EXCLUDED.cluster, mode = EXCLUDED.mode,
           allowed_nodes = EXCLUDED.allowed_nodes, routes = EXCLUDED.routes, lease_ttl_ms = EXCLUDED.lease_ttl_ms, secret_name = EXCLUDED.secret_name,
           secret_key = EXCLUDED.secret_key, enabled = EXCLUDED.enabled, valid = EXCLUDED.valid, eligible_nodes = EXCLUDED.eligible_nodes, updated_at = now()`,
        [c.connection, c.namespace, c.name, c.cluster, c.mode, c.allowedNodes, JSON.stringify(c.routes), c.leaseTtlMs, c.secretName ?? null, c.secretName !== undefined ? (c.secretKey ?? "credentials") : null, c.enabled, c.valid, c.eligibleNodes],
      );
      if (before !== undefined && before.cluster !== c.cluster) await markNodesDirty(db, before.cluster, before.allowedNodes);
      const sameIntent = before !== undefined && JSON.stringify({ ...before, eligibleNodes: [] }) === JSON.stringify({ ...c, eligibleNodes: [] });
      if (sameIntent) {
        // Only eligibility moved: re-sign the nodes that gained or lost it.
        const was = new Set(before.eligibleNodes);
        const now = new Set(c.eligibleNodes);
        await markNodesDirty(db, c.cluster, [...c.eligibleNodes.filter((n) => !was.has(n)), ...before.eligibleNodes.filter((n) => !now.has(n))]);
        return { result: true, audit: [] };
      }
      await markNodesDirty(db, c.cluster, [...new Set([...(before?.cluster === c.cluster ? before.allowedNodes : []), ...c.allowedNodes])]);
      const audit: AuditEntry[] = [{ action: before === undefined ? "vpn.connection.created" : "vpn.connection.changed", objectKind: "VPNConnection", objectName: c.connection, cluster: c.cluster, details: { mode: c.mode, allowedNodes: c.allowedNodes, enabled: c.enabled, valid: c.valid } }];
      return { result: true, audit };
    });
  }

  /** Forgets a deleted connection: its open grant ends (fenced), its lease row stays (tokens never restart). */
  async deleteConnection(connection: string): Promise<VpnEndedLease | undefined | false> {
    return decide<VpnEndedLease | undefined | false>(this.authority, this.actor, async (db) => {
      const cur = await db.query<{ cluster: string; allowed_nodes: string[] }>("DELETE FROM vpn_connections WHERE connection = $1 RETURNING cluster, allowed_nodes", [connection]);
      const row = cur.rows[0];
      if (row === undefined) return { result: false as const, audit: [] };
      await markNodesDirty(db, row.cluster, row.allowed_nodes);
      const ended = await this.endLease(db, connection, "fenced", false);
      const audit: AuditEntry[] = [{ action: "vpn.connection.deleted", objectKind: "VPNConnection", objectName: connection, cluster: row.cluster, details: {} }];
      if (ended !== undefined) audit.push(endAudit(ended, row.cluster));
      return { result: ended, audit };
    });
  }

  /**
   * Grants the lease to `node` if it is eligible and the lease is free or
   * expired by the database clock (see the module comment). Grants are
   * group-committed like renewals: the acquires that queue while a batch is
   * written form the next, each under its own savepoint in one fenced
   * transaction with one audit append (the chain lock once per batch).
   * Throws FencedError when this instance holds no current term.
   */
  acquire(connection: string, node: string): Promise<VpnAcquireOutcome> {
    return new Promise((resolve, reject) => {
      this.acquireQueue.push({ connection, node, resolve, reject });
      if (!this.acquiring) this.drainAcquires();
    });
  }

  /** Writes queued acquires, one batch at a time, until none is left. */
  private drainAcquires(): void {
    this.acquiring = true;
    setImmediate(() => {
      void (async () => {
        while (this.acquireQueue.length > 0) {
          const batch = this.acquireQueue.splice(0, MAX_ACQUIRE_BATCH);
          const outcomes = new Array<{ ok: true; value: VpnAcquireOutcome } | { ok: false; err: unknown }>(batch.length);
          try {
            await decide(this.authority, this.actor, async (db) => {
              const audit: AuditEntry[] = [];
              // Lease rows are locked in connection order, as the renewal batches lock theirs.
              const order = [...batch.keys()].sort((x, y) => (batch[x]!.connection < batch[y]!.connection ? -1 : batch[x]!.connection > batch[y]!.connection ? 1 : x - y));
              for (const i of order) {
                const b = batch[i]!;
                await db.query("SAVEPOINT vpn_acquire");
                try {
                  const one = await this.acquireIn(db, b.connection, b.node);
                  await db.query("RELEASE SAVEPOINT vpn_acquire");
                  audit.push(...one.audit);
                  outcomes[i] = { ok: true, value: one.result };
                } catch (err) {
                  await db.query("ROLLBACK TO SAVEPOINT vpn_acquire");
                  outcomes[i] = { ok: false, err };
                }
              }
              return { result: undefined, audit };
            });
            batch.forEach((b, i) => {
              const o = outcomes[i]!;
              if (o.ok) b.resolve(o.value);
              else b.reject(o.err);
            });
          } catch (err) {
            for (const b of batch) b.reject(err);
          }
        }
        this.acquiring = false;
      })();
    });
  }

  /** One acquire in `db`'s transaction: the outcome and its audit rows. */
  private async acquireIn(db: pg.PoolClient, connection: string, node: string): Promise<{ result: VpnAcquireOutcome; audit: AuditEntry[] }> {
    const cr = await db.query<ConnRowDb>(`SELECT ${CONN_COLUMNS} FROM vpn_connections WHERE connection = $1`, [connection]);
    const conn = cr.rows[0] === undefined ? undefined : connOf(cr.rows[0]);
    if (conn === undefined) return { result: { kind: "ineligible", reason: "NotAllowed" } as const, audit: [] };
    const facts = (await vpnNodeFacts(db, [node], conn.namespace)).get(node);
    const el = vpnEligibility(conn, node, facts);
    if (!el.eligible) return { result: { kind: "ineligible", reason: el.reason } as const, audit: [] };
    // The previous holder, locked: its open grant is closed below when the lease is taken over.
    const prev = (await db.query<{ holder: string | null; token: string; expires_at: Date | null; renewals: number }>("SELECT holder, token, expires_at, renewals FROM vpn_leases WHERE connection = $1 FOR UPDATE", [connection])).rows[0];
    const up = await db.query<{ token: string; expires_at: Date; acquired_at: Date }>(
      `INSERT INTO vpn_leases AS lease (connection, holder, token, acquired_at, renewed_at, expires_at, renewals)
       VALUES ($1, $2, 1, clock_timestamp(), clock_timestamp(), clock_timestamp() + make_interval(secs => $3::double precision / 1000), 0)
       ON CONFLICT (connection) DO UPDATE SET holder = EXCLUDED.holder, token = lease.token + 1, acquired_at = clock_timestamp(), renewed_at = clock_timestamp(),
         expires_at = clock_timestamp() + make_interval(secs => $3::double precision / 1000), renewals = 0
       WHERE lease.holder IS NULL OR lease.expires_at <= now()
       RETURNING token, expires_at, acquired_at`,
      [connection, node, conn.leaseTtlMs],
    );
    const got = up.rows[0];
    if (got === undefined) {
      const left = (await db.query<{ ms: number }>("SELECT GREATEST(0, extract(epoch FROM (expires_at - now())) * 1000)::int AS ms FROM vpn_leases WHERE connection = $1", [connection])).rows[0];
      return { result: { kind: "busy", retryAfterMs: Math.max(50, left?.ms ?? conn.leaseTtlMs) } as const, audit: [] };
    }
    const token = Number(got.token);
    const audit: AuditEntry[] = [];
    if (prev?.holder != null) {
      const ended: VpnEndedLease = { connection, holder: prev.holder, token: Number(prev.token), reason: "expired", renewals: prev.renewals };
      await db.query("UPDATE vpn_grants SET ended_at = $2, end_reason = 'expired', renewals = $3 WHERE connection = $1 AND ended_at IS NULL", [connection, prev.expires_at, prev.renewals]);
      audit.push(endAudit(ended, conn.cluster));
    }
    await db.query("INSERT INTO vpn_grants (connection, token, holder, granted_at) VALUES ($1, $2, $3, $4)", [connection, token, node, got.acquired_at]);
    audit.push({ action: "vpn.lease.granted", objectKind: "VPNConnection", objectName: connection, cluster: conn.cluster, details: { holder: node, token } });
    return { result: { kind: "granted", token, ttlMs: conn.leaseTtlMs, expiresAt: got.expires_at, grantedAt: got.acquired_at } as const, audit };
  }

  /**
   * Extends the lease held by `node` with `token` if it has not expired by
   * the database clock and the node is still eligible; undefined otherwise.
   * Renewals are group-committed: a call joins the batch that the next
   * flush writes (see renewMany), so concurrent renewals share one fenced
   * transaction and one commit. Throws FencedError for the whole batch when
   * this instance holds no current term.
   */
  renew(connection: string, node: string, token: number): Promise<VpnRenewed | undefined> {
    return new Promise((resolve, reject) => {
      this.renewQueue.push({ request: { connection, node, token }, resolve, reject });
      if (!this.renewing) this.drainRenewals();
    });
  }

  /**
   * Renews many leases in one fenced transaction: the connections and the
   * callers' eligibility facts are read in bulk, then one UPDATE extends
   * every lease whose holder and token still match and whose expiry by the
   * database clock has not passed (each row's own clock_timestamp()). The
   * answer is per request, in order: a stale token fails only its own.
   */
  async renewMany(requests: readonly VpnRenewRequest[]): Promise<Array<VpnRenewed | undefined>> {
    if (requests.length === 0) return [];
    return this.authority.runFenced(async (db) => {
      const conns = new Map(
        (await db.query<ConnRowDb>(`SELECT ${CONN_COLUMNS} FROM vpn_connections WHERE connection = ANY($1::text[])`, [[...new Set(requests.map((r) => r.connection))]])).rows.map((r) => [r.connection, connOf(r)]),
      );
      // Roles count for the connection's organization: one facts read per namespace.
      const byNamespace = new Map<string, Set<string>>();
      for (const r of requests) {
        const c = conns.get(r.connection);
        if (c !== undefined) byNamespace.set(c.namespace, (byNamespace.get(c.namespace) ?? new Set()).add(r.node));
      }
      const facts = new Map<string, Map<string, VpnNodeFacts>>();
      for (const [ns, nodes] of byNamespace) facts.set(ns, await vpnNodeFacts(db, [...nodes], ns));
      const key = (r: VpnRenewRequest): string => `${r.connection}\n${r.node}\n${r.token}`;
      const wanted = new Map<string, VpnRenewRequest & { ttlMs: number }>();
      for (const r of requests) {
        const c = conns.get(r.connection);
        if (c === undefined || !vpnEligibility(c, r.node, facts.get(c.namespace)?.get(r.node)).eligible) continue;
        wanted.set(key(r), { ...r, ttlMs: c.leaseTtlMs });
      }
      const todo = [...wanted.values()].sort((a, b) => (a.connection < b.connection ? -1 : a.connection > b.connection ? 1 : 0));
      const done = new Map<string, VpnRenewed>();
      if (todo.length > 0) {
        const up = await db.query<{ connection: string; holder: string; token: string; expires_at: Date; ttl_ms: number }>(
          `UPDATE vpn_leases AS l SET renewed_at = clock_timestamp(), expires_at = clock_timestamp() + make_interval(secs => r.ttl_ms::double precision / 1000), renewals = l.renewals + 1
             FROM unnest($1::text[], $2::text[], $3::bigint[], $4::int[]) AS r(connection, holder, token, ttl_ms)
            WHERE l.connection = r.connection AND l.holder = r.holder AND l.token = r.token AND l.expires_at > clock_timestamp()
            RETURNING l.connection, l.holder, l.token, l.expires_at, r.ttl_ms`,
          [todo.map((r) => r.connection), todo.map((r) => r.node), todo.map((r) => r.token), todo.map((r) => r.ttlMs)],
        );
        for (const x of up.rows) done.set(key({ connection: x.connection, node: x.holder, token: Number(x.token) }), { token: Number(x.token), ttlMs: x.ttl_ms, expiresAt: x.expires_at });
      }
      return requests.map((r) => done.get(key(r)));
    });
  }

  /** Writes queued renewals, one batch at a time, until none is left. */
  private drainRenewals(): void {
    this.renewing = true;
    // Let the renewals that arrive in the same turn join the first batch.
    setImmediate(() => {
      void (async () => {
        while (this.renewQueue.length > 0) {
          const batch = this.renewQueue.splice(0, MAX_RENEW_BATCH);
          try {
            this.renewBatches++;
            const out = await this.renewMany(batch.map((b) => b.request));
            batch.forEach((b, i) => b.resolve(out[i]));
          } catch (err) {
            for (const b of batch) b.reject(err);
          }
        }
        this.renewing = false;
      })();
    });
  }

  /** Ends the lease if `node` holds it with `token` (not fenced: giving a lease up is always safe). */
  async release(connection: string, node: string, token: number): Promise<VpnEndedLease | undefined> {
    const ended = await withTransaction(this.pool, (db) => this.endLease(db, connection, "released", false, { holder: node, token }));
    return ended;
  }

  /** Audits a release (after it happened; skipped when this instance holds no term, the grant row records it anyway). */
  async auditEnded(ended: readonly VpnEndedLease[], cluster?: string): Promise<void> {
    if (ended.length === 0 || this.authority.heldTerm() === undefined) return;
    await decide(this.authority, this.actor, async () => ({ result: undefined, audit: ended.map((e) => endAudit(e, cluster)) }));
  }

  /** Ends every lease expired by the database clock (fenced, audited); returns what ended. */
  async sweepExpired(limit = 1000): Promise<VpnEndedLease[]> {
    return decide(this.authority, this.actor, async (db) => {
      const due = await db.query<{ connection: string }>("SELECT connection FROM vpn_leases WHERE holder IS NOT NULL AND expires_at <= now() ORDER BY expires_at LIMIT $1", [limit]);
      const ended: VpnEndedLease[] = [];
      // Rows are locked in connection order, as the batched renewals and acquires lock them: no deadlock between them.
      for (const r of [...due.rows].sort((a, b) => (a.connection < b.connection ? -1 : a.connection > b.connection ? 1 : 0))) {
        const e = await this.endLease(db, r.connection, "expired", false, undefined, true);
        if (e !== undefined) ended.push(e);
      }
      return { result: ended, audit: ended.map((e) => endAudit(e, undefined)) };
    });
  }

  /**
   * The operator fence: ends the current lease at once (reason `fenced`),
   * bumps the token and records `fence` as observed. Returns the ended lease
   * (undefined when nobody held it); false when `fence` was already observed.
   */
  async fence(connection: string, fence: number): Promise<VpnEndedLease | undefined | false> {
    return decide<VpnEndedLease | undefined | false>(this.authority, this.actor, async (db) => {
      const r = await db.query<{ cluster: string }>("UPDATE vpn_connections SET observed_fence = $2 WHERE connection = $1 AND observed_fence < $2 RETURNING cluster", [connection, fence]);
      const row = r.rows[0];
      if (row === undefined) return { result: false as const, audit: [] };
      const ended = await this.endLease(db, connection, "fenced", true);
      const token = Number((await db.query<{ token: string }>("SELECT token FROM vpn_leases WHERE connection = $1", [connection])).rows[0]?.token ?? 0);
      return {
        result: ended,
        audit: [{ action: "vpn.fenced", objectKind: "VPNConnection", objectName: connection, cluster: row.cluster, details: { fence, token, endedHolder: ended?.holder ?? null, endedToken: ended?.token ?? null } }],
      };
    });
  }

  /** The fence value last observed for a connection. */
  async observedFence(connection: string): Promise<number | undefined> {
    const r = await this.pool.query<{ observed_fence: string }>("SELECT observed_fence FROM vpn_connections WHERE connection = $1", [connection]);
    return r.rows[0] === undefined ? undefined : Number(r.rows[0].observed_fence);
  }

  /** Ends the lease of `holder` (reason `ineligible`) if it still holds `token`. */
  async endIneligible(connection: string, holder: string, token: number): Promise<VpnEndedLease | undefined> {
    return decide(this.authority, this.actor, async (db) => {
      const ended = await this.endLease(db, connection, "ineligible", false, { holder, token });
      return { result: ended, audit: ended === undefined ? [] : [endAudit(ended, undefined)] };
    });
  }

  /**
   * Where the credential of a connection is, if `node` holds its lease with
   * `token` and the lease has not expired by the database clock; else the
   * reason of the refusal. Every answer is audited with the fetch (fenced).
   */
  async credentialFetch(connection: string, node: string, token: number): Promise<{ ok: true; namespace: string; secretName: string; secretKey: string } | { ok: false; reason: "NotHolder" | "NoCredential" }> {
    return decide(this.authority, this.actor, async (db) => {
      const r = await db.query<{ cluster: string; namespace: string; secret_name: string | null; secret_key: string | null; held: boolean }>(
        `SELECT c.cluster, c.namespace, c.secret_name, c.secret_key,
                (l.holder = $2 AND l.token = $3 AND l.expires_at > clock_timestamp()) AS held
           FROM vpn_connections c LEFT JOIN vpn_leases l ON l.connection = c.connection WHERE c.connection = $1`,
        [connection, node, token],
      );
      const row = r.rows[0];
      const result =
        row === undefined || row.held !== true
          ? ({ ok: false, reason: "NotHolder" } as const)
          : row.secret_name === null
            ? ({ ok: false, reason: "NoCredential" } as const)
            : ({ ok: true, namespace: row.namespace, secretName: row.secret_name, secretKey: row.secret_key ?? "credentials" } as const);
      const audit: AuditEntry = {
        action: result.ok ? "vpn.credential.fetched" : "vpn.credential.refused",
        objectKind: "VPNConnection",
        objectName: connection,
        ...(row !== undefined ? { cluster: row.cluster } : {}),
        details: { node, token, ...(result.ok ? {} : { reason: result.reason }) },
      };
      return { result, audit: [audit] };
    });
  }

  /**
   * Ends the lease in `db`'s transaction: clears the holder (bumping the
   * token when `bump`), closes the open grant with `reason`. Only when
   * `holder`/`token` are given must they match.
   */
  private async endLease(db: pg.ClientBase, connection: string, reason: VpnEndedLease["reason"], bump: boolean, match?: { holder: string; token: number }, onlyExpired = false): Promise<VpnEndedLease | undefined> {
    const prev = (await db.query<{ holder: string | null; token: string; expires_at: Date | null; renewals: number }>("SELECT holder, token, expires_at, renewals FROM vpn_leases WHERE connection = $1 FOR UPDATE", [connection])).rows[0];
    if (prev === undefined) {
      if (bump) await db.query("INSERT INTO vpn_leases (connection, token) VALUES ($1, 1)", [connection]);
      return undefined;
    }
    if (match !== undefined && (prev.holder !== match.holder || Number(prev.token) !== match.token)) return undefined;
    if (onlyExpired && (prev.expires_at === null || (await db.query<{ live: boolean }>("SELECT $1::timestamptz > clock_timestamp() AS live", [prev.expires_at])).rows[0]?.live === true)) return undefined;
    await db.query(`UPDATE vpn_leases SET holder = NULL, expires_at = NULL, acquired_at = NULL, renewed_at = NULL, renewals = 0${bump ? ", token = token + 1" : ""} WHERE connection = $1`, [connection]);
    if (prev.holder === null) return undefined;
    // A lease ends at its expiry at the latest (an expired one is swept later).
    await db.query("UPDATE vpn_grants SET ended_at = LEAST(clock_timestamp(), $2::timestamptz), end_reason = $3, renewals = $4 WHERE connection = $1 AND ended_at IS NULL", [connection, prev.expires_at, reason, prev.renewals]);
    return { connection, holder: prev.holder, token: Number(prev.token), reason, renewals: prev.renewals };
  }
}
