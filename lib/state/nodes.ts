/**
 * Repository of join_requests, nodes and node_identities
 * (migrations/004_enrollment.sql): the JoinRequest and FabricNode
 * controllers' decisions (approval, denial, membership, renewal, deletion),
 * fenced by the authority term, and the agent API's identity reads. Join
 * requests are created by EnrollmentStore (enrollment.ts).
 */
import type pg from "pg";
import { markNodesDirty } from "../snapshot/contributors.js";
import { decide, decideRow, type AuditEntry, type Fence } from "./fenced.js";
import { firstRow, Table } from "./table.js";

/** A join_requests row. */
export interface RequestRow {
  name: string;
  cluster: string;
  tokenName: string;
  nodeName: string;
  hostFingerprint: string;
  publicKeyFingerprint: string;
  publicKeyDer: Buffer;
  csrPem: string;
  capabilities: string[];
  requestedRoles: string[];
  facts: Record<string, unknown>;
  nodeGroup: string | null;
  autoApprove: boolean;
  state: "Pending" | "Approved" | "Denied";
  /** How an Approved request was decided; null unless Approved. */
  approvedHow: "Manual" | "Auto" | null;
  reason: string | null;
  fabricNode: string | null;
  certificatePem: string | null;
  decidedAt: Date | null;
  createdAt: Date;
}

/** A join_requests row as PostgreSQL returns it. */
export interface RequestDb {
  name: string;
  cluster: string;
  token_name: string;
  node_name: string;
  host_fingerprint: string;
  public_key_fingerprint: string;
  public_key_der: Buffer;
  csr_pem: string;
  capabilities: string[];
  requested_roles: string[];
  facts: Record<string, unknown>;
  node_group: string | null;
  auto_approve: boolean;
  state: RequestRow["state"];
  approved_how: RequestRow["approvedHow"];
  reason: string | null;
  fabric_node: string | null;
  certificate_pem: string | null;
  decided_at: Date | null;
  created_at: Date;
}

/** Maps a join_requests row. */
export function requestFromDb(r: RequestDb): RequestRow {
  return {
    name: r.name,
    cluster: r.cluster,
    tokenName: r.token_name,
    nodeName: r.node_name,
    hostFingerprint: r.host_fingerprint,
    publicKeyFingerprint: r.public_key_fingerprint,
    publicKeyDer: r.public_key_der,
    csrPem: r.csr_pem,
    capabilities: r.capabilities,
    requestedRoles: r.requested_roles,
    facts: r.facts,
    nodeGroup: r.node_group,
    autoApprove: r.auto_approve,
    state: r.state,
    approvedHow: r.approved_how,
    reason: r.reason,
    fabricNode: r.fabric_node,
    certificatePem: r.certificate_pem,
    decidedAt: r.decided_at,
    createdAt: r.created_at,
  };
}

/** The join_requests table (also read by EnrollmentStore). */
export const joinRequests = new Table<RequestDb, RequestRow>("join_requests", requestFromDb);

/** A nodes row. */
export interface NodeRow {
  name: string;
  cluster: string;
  nodeName: string;
  hostFingerprint: string;
  membership: "Active" | "Disabled" | "Revoked";
  joinRequest: string | null;
  capabilities: string[];
  facts: Record<string, unknown>;
  nodeGroup: string | null;
}

interface NodeDb {
  name: string;
  cluster: string;
  node_name: string;
  host_fingerprint: string;
  membership: NodeRow["membership"];
  join_request: string | null;
  capabilities: string[];
  facts: Record<string, unknown>;
  node_group: string | null;
}

function nodeFromDb(n: NodeDb): NodeRow {
  return {
    name: n.name,
    cluster: n.cluster,
    nodeName: n.node_name,
    hostFingerprint: n.host_fingerprint,
    membership: n.membership,
    joinRequest: n.join_request,
    capabilities: n.capabilities,
    facts: n.facts,
    nodeGroup: n.node_group,
  };
}

const nodes = new Table<NodeDb, NodeRow>("nodes", nodeFromDb);

/** A node_identities row. */
export interface IdentityRow {
  serial: string;
  node: string;
  cluster: string;
  publicKeyFingerprint: string;
  notBefore: Date;
  notAfter: Date;
  status: "active" | "superseded" | "revoked";
  /** When the control plane issued it (database clock). */
  issuedAt: Date;
}

interface IdentityDb {
  serial: string;
  node: string;
  cluster: string;
  public_key_fingerprint: string;
  not_before: Date;
  not_after: Date;
  status: IdentityRow["status"];
  issued_at: Date;
}

function identityFromDb(r: IdentityDb): IdentityRow {
  return {
    serial: r.serial,
    node: r.node,
    cluster: r.cluster,
    publicKeyFingerprint: r.public_key_fingerprint,
    notBefore: r.not_before,
    notAfter: r.not_after,
    status: r.status,
    issuedAt: r.issued_at,
  };
}

/** An identity to record on approval or renewal. */
export interface NewIdentity {
  serial: string;
  publicKeyFingerprint: string;
  notBefore: Date;
  notAfter: Date;
  certificatePem: string;
}

/** Outcome of approve. */
export type ApproveOutcome = { kind: "approved" } | { kind: "alreadyDecided"; state: RequestRow["state"] } | { kind: "nodeExists"; node: string };

/** Records `id` as an active identity of the node, and marks the node for a snapshot rebuild. */
async function insertActiveIdentity(c: pg.ClientBase, node: string, cluster: string, id: NewIdentity): Promise<void> {
  await c.query(
    `INSERT INTO node_identities (serial, node, cluster, public_key_fingerprint, not_before, not_after, status)
     VALUES ($1, $2, $3, $4, $5, $6, 'active')`,
    [id.serial, node, cluster, id.publicKeyFingerprint, id.notBefore, id.notAfter],
  );
  await markNodesDirty(c, cluster, [node]);
}

/** The JoinRequest and FabricNode controllers' rows (fenced decisions), and the agent API's identity reads. */
export class NodeStore {
  constructor(
    private readonly pool: pg.Pool,
    private readonly fence: Fence,
    private readonly actor: string,
  ) {}

  /** A join request by name. */
  async request(name: string): Promise<RequestRow | undefined> {
    return joinRequests.get(this.pool, name);
  }

  /** Names of all join request rows. */
  async requestNames(): Promise<string[]> {
    return joinRequests.names(this.pool);
  }

  /**
   * Approves a pending request: creates the node row and its first identity
   * and stores the certificate on the request, with the audit rows
   * (approved, certificate issued, node created).
   */
  async approve(requestName: string, node: { name: string; how: "Manual" | "Auto"; reason: string }, id: NewIdentity): Promise<ApproveOutcome> {
    return decide<ApproveOutcome>(this.fence, this.actor, async (c) => {
      const rq = await c.query<RequestDb>("SELECT * FROM join_requests WHERE name = $1 FOR UPDATE", [requestName]);
      const r = rq.rows[0];
      if (r === undefined) throw new Error(`approving join request ${requestName}: row vanished`);
      if (r.state !== "Pending") return { result: { kind: "alreadyDecided" as const, state: r.state }, audit: [] };
      const taken = await c.query<{ name: string }>("SELECT name FROM nodes WHERE name = $1 OR (cluster = $2 AND node_name = $3)", [node.name, r.cluster, r.node_name]);
      if (taken.rows.length > 0) return { result: { kind: "nodeExists" as const, node: node.name }, audit: [] };
      await c.query(
        `INSERT INTO nodes (name, cluster, node_name, host_fingerprint, join_request, capabilities, facts, node_group)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
        [node.name, r.cluster, r.node_name, r.host_fingerprint, requestName, r.capabilities, JSON.stringify(r.facts), r.node_group],
      );
      await insertActiveIdentity(c, node.name, r.cluster, id);
      await c.query("UPDATE join_requests SET state = 'Approved', approved_how = $5, reason = $2, fabric_node = $3, certificate_pem = $4, decided_at = now() WHERE name = $1", [
        requestName,
        node.reason,
        node.name,
        id.certificatePem,
        node.how,
      ]);
      return {
        result: { kind: "approved" as const },
        audit: [
          { action: "joinrequest.approved", objectKind: "JoinRequest", objectName: requestName, cluster: r.cluster, details: { how: node.how, reason: node.reason, node: node.name } },
          { action: "node.created", objectKind: "FabricNode", objectName: node.name, cluster: r.cluster, details: { hostFingerprint: r.host_fingerprint, joinRequest: requestName, membership: "Active" } },
          {
            action: "certificate.issued",
            objectKind: "FabricNode",
            objectName: node.name,
            cluster: r.cluster,
            details: { serial: id.serial, notAfter: id.notAfter.toISOString(), publicKeyFingerprint: id.publicKeyFingerprint },
          },
        ],
      };
    });
  }

  /** Denies a pending request. */
  async deny(requestName: string, reason: string): Promise<boolean> {
    return decideRow<{ cluster: string }>(
      this.fence,
      this.actor,
      "UPDATE join_requests SET state = 'Denied', reason = $2, decided_at = now() WHERE name = $1 AND state = 'Pending' RETURNING cluster",
      [requestName, reason],
      (row) => ({ action: "joinrequest.denied", objectKind: "JoinRequest", objectName: requestName, cluster: row.cluster, details: { reason } }),
    );
  }

  /** Deletes a request row (its object is gone: garbage-collected or deleted). */
  async deleteRequest(name: string): Promise<boolean> {
    return decideRow<{ cluster: string; state: string }>(
      this.fence,
      this.actor,
      "DELETE FROM join_requests WHERE name = $1 RETURNING cluster, state",
      [name],
      (row) => ({ action: "joinrequest.deleted", objectKind: "JoinRequest", objectName: name, cluster: row.cluster, details: { state: row.state } }),
    );
  }

  /** A node row. */
  async node(name: string): Promise<NodeRow | undefined> {
    return nodes.get(this.pool, name);
  }

  /** Names of all node rows. */
  async nodeNames(): Promise<string[]> {
    return nodes.names(this.pool);
  }

  /** The node's active identity, if any. */
  async activeIdentity(node: string): Promise<IdentityRow | undefined> {
    return firstRow(this.pool, "SELECT * FROM node_identities WHERE node = $1 AND status = 'active'", [node], identityFromDb);
  }

  /** Identity and membership of a certificate serial, for the agent API's per-request check. */
  async identityBySerial(serial: string): Promise<(IdentityRow & { membership: NodeRow["membership"] }) | undefined> {
    return firstRow(
      this.pool,
      "SELECT i.*, n.membership FROM node_identities i JOIN nodes n ON n.name = i.node WHERE i.serial = $1",
      [serial],
      (row: IdentityDb & { membership: NodeRow["membership"] }) => ({ ...identityFromDb(row), membership: row.membership }),
    );
  }

  /**
   * Changes the membership. Revoked is final: every identity of the node is
   * revoked with it, and the node cannot come back (re-enroll instead).
   * Returns the membership now in force.
   */
  async setMembership(name: string, membership: NodeRow["membership"], reason: string): Promise<NodeRow["membership"]> {
    return decide(this.fence, this.actor, async (c) => {
      const cur = await c.query<{ membership: NodeRow["membership"]; cluster: string }>("SELECT membership, cluster FROM nodes WHERE name = $1 FOR UPDATE", [name]);
      const row = cur.rows[0];
      if (row === undefined) throw new Error(`node ${name} has no row`);
      if (row.membership === membership || row.membership === "Revoked") return { result: row.membership, audit: [] };
      await c.query("UPDATE nodes SET membership = $2, updated_at = now() WHERE name = $1", [name, membership]);
      await markNodesDirty(c, row.cluster, [name]);
      const audit: AuditEntry[] = [
        { action: "node.membership.changed", objectKind: "FabricNode", objectName: name, cluster: row.cluster, details: { from: row.membership, to: membership, reason } },
      ];
      if (membership === "Revoked") {
        const rev = await c.query<{ serial: string }>(
          "UPDATE node_identities SET status = 'revoked', revoked_at = now() WHERE node = $1 AND status <> 'revoked' RETURNING serial",
          [name],
        );
        for (const s of rev.rows) audit.push({ action: "certificate.revoked", objectKind: "FabricNode", objectName: name, cluster: row.cluster, details: { serial: s.serial, reason } });
      }
      return { result: membership, audit };
    });
  }

  /**
   * Renews a node's identity: the presented (active) serial is superseded
   * by the new one. Refused (false) when the presented serial is no longer
   * the active one or the node is revoked.
   */
  async renew(node: string, presentedSerial: string, id: NewIdentity): Promise<boolean> {
    return decide(this.fence, this.actor, async (c) => {
      const cur = await c.query<{ membership: string; cluster: string; status: string }>(
        `SELECT n.membership, n.cluster, i.status FROM nodes n JOIN node_identities i ON i.node = n.name
          WHERE n.name = $1 AND i.serial = $2 FOR UPDATE OF n, i`,
        [node, presentedSerial],
      );
      const row = cur.rows[0];
      if (row === undefined || row.status !== "active" || row.membership === "Revoked") return { result: false, audit: [] };
      await c.query("UPDATE node_identities SET status = 'superseded', superseded_at = now() WHERE serial = $1", [presentedSerial]);
      await insertActiveIdentity(c, node, row.cluster, id);
      return {
        result: true,
        audit: [
          {
            action: "certificate.renewed",
            objectKind: "FabricNode",
            objectName: node,
            cluster: row.cluster,
            details: { previousSerial: presentedSerial, serial: id.serial, notAfter: id.notAfter.toISOString(), publicKeyFingerprint: id.publicKeyFingerprint },
          },
        ],
      };
    });
  }

  /** Deletes a node row and its identities (the FabricNode is gone). */
  async deleteNode(name: string): Promise<boolean> {
    return decide(this.fence, this.actor, async (c) => {
      const ids = await c.query<{ serial: string }>("SELECT serial FROM node_identities WHERE node = $1 AND status = 'active'", [name]);
      const r = await c.query<{ cluster: string }>("DELETE FROM nodes WHERE name = $1 RETURNING cluster", [name]);
      const row = r.rows[0];
      if (row === undefined) return { result: false, audit: [] };
      await markNodesDirty(c, row.cluster, [name]);
      const audit: AuditEntry[] = ids.rows.map((s) => ({ action: "certificate.revoked", objectKind: "FabricNode", objectName: name, cluster: row.cluster, details: { serial: s.serial, reason: "node deleted" } }));
      audit.push({ action: "node.deleted", objectKind: "FabricNode", objectName: name, cluster: row.cluster, details: {} });
      return { result: true, audit };
    });
  }
}
