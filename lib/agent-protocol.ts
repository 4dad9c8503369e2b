/**
 * The agent's sync wire protocol (mTLS, JSON over HTTPS), shared by the
 * agent API and fabric-agent. The node is always the subject of the client
 * certificate; nothing in a request names another node.
 *
 *   GET  /v1/snapshot?after=SERIAL&wait=SECONDS
 *        200 with the signed snapshot bytes (canonical JSON) as soon as a
 *        serial above SERIAL is stored for this node; 204 when none arrived
 *        within `wait` (default 30, at most 60). A `node` query parameter
 *        naming another node is refused (403 Forbidden).
 *   POST /v1/heartbeat             HeartbeatRequest -> 202 HeartbeatResponse
 *   POST /v1/status/:kind          StatusReport -> 202 { stored } (stale versions ignored;
 *                                  kind `mesh` must be a MeshStatusBody, others are stored as sent)
 */

/**
 * Limits on every JSON request body the agent API reads (enrollment, poll
 * proof, heartbeat, status report, renewal), enforced by one reader
 * (agentapi/server.ts through lib/json-limits.ts) before any route sees the
 * value. A body over its size is refused with 413 TooLarge while it is still
 * arriving; one that is not strict UTF-8 JSON, is nested deeper than
 * {@link AGENT_API_MAX_JSON_DEPTH}, or holds U+0000 or a lone surrogate in a
 * string (PostgreSQL's jsonb stores neither) is refused with 400
 * InvalidRequest. What agents really send is at most 5 deep (a workload
 * report: body > workloads > workload > conditions > condition).
 */
export const AGENT_API_MAX_JSON_DEPTH = 64;
/** Body size of enrollment and renewal requests (a CSR and a few facts). */
export const MAX_ENROLL_BODY_BYTES = 64 * 1024;
/** Body size of a heartbeat. */
export const MAX_HEARTBEAT_BYTES = 64 * 1024;
/** Body size of a status report. */
export const MAX_STATUS_REPORT_BYTES = 256 * 1024;

/** Header carrying the serial of a served snapshot (informational; the agent trusts only the signed header). */
export const SNAPSHOT_SERIAL_HEADER = "x-fabric-snapshot-serial";
/** Default and maximum long-poll hold, seconds. */
export const DEFAULT_POLL_WAIT_SECONDS = 30;
export const MAX_POLL_WAIT_SECONDS = 60;

/** Body of POST /v1/heartbeat. */
export interface HeartbeatRequest {
  /** The agent's own counter (per process start it continues from the status file). */
  seq: number;
  agentVersion: string;
  capabilities: string[];
  facts: Record<string, unknown>;
  health: { status: "Healthy" | "Degraded"; message?: string };
  /** The snapshot the agent holds, if any. */
  snapshot?: { serial: number; hash: string; appliedAt: string };
  /** The agent's mesh reachability (agents with a mesh role; see docs/mesh.md). */
  mesh?: HeartbeatMesh;
}

/** At most this many mesh endpoints per heartbeat. */
export const MAX_MESH_ENDPOINTS = 16;

/**
 * Where other nodes reach this node's QUIC listener. Stored only when it
 * changes; endpoints, reachability and relay capability reach the snapshots
 * of the nodes that list this one, load never does (agents measure each
 * other directly).
 */
export interface HeartbeatMesh {
  /** IP literals (v4 or v6, no zone) and UDP ports, preferred first; at most {@link MAX_MESH_ENDPOINTS}. */
  endpoints: { address: string; port: number }[];
  /** Whether other nodes can reach these endpoints directly (no NAT in the way). */
  reachable: boolean;
  /** Whether this agent is willing and able to forward for others (it also needs a relay or core role). */
  relayCapable?: boolean;
  /** Load, 0..1. */
  load: number;
}

/** Answer to a heartbeat. */
export interface HeartbeatResponse {
  /** When to send the next one. */
  intervalSeconds: number;
}

/**
 * Body of POST /v1/status/:kind: a versioned report of one kind of local
 * state (the workload reporter sends kind `workloads`). Kinds are independent;
 * each keeps only the newest version a node sent.
 */
export interface StatusReport {
  /** Only grows; a report with a version not above the stored one is ignored. */
  version: number;
  body: Record<string, unknown>;
}

/*
 * VPN connection leases (docs/vpn.md). The node is the certificate's; a
 * connection is named "<namespace>/<name>". Tokens only grow per connection.
 *
 *   POST /v1/vpn/lease/acquire  VpnAcquireRequest -> 200 VpnAcquireResponse;
 *        403 NotEligible; 503 NotLeader (this control plane holds no term)
 *   POST /v1/vpn/lease/renew    VpnLeaseRequest -> 200 VpnRenewResponse; 409 LeaseLost
 *   POST /v1/vpn/lease/release  VpnLeaseRequest -> 200 VpnReleaseResponse
 *   POST /v1/vpn/credential     VpnLeaseRequest -> 200 VpnCredentialResponse; 403 NotHolder
 */

/** Body size of every VPN request. */
export const MAX_VPN_BODY_BYTES = 4 * 1024;
/** Shape of a connection name: `<namespace>/<name>`, both DNS-1123 labels (names up to 253). */
export const VPN_CONNECTION_PATTERN = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\/[a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?$/;

/** Body of POST /v1/vpn/lease/acquire. */
export interface VpnAcquireRequest {
  connection: string;
}

/** Answer to an acquire: a grant, or busy (another holder's lease is live). */
export type VpnAcquireResponse =
  | { granted: true; connection: string; token: number; ttlMs: number; expiresAt: string }
  | { granted: false; connection: string; retryAfterMs: number; reason: string };

/** Body of renew, release and credential requests. */
export interface VpnLeaseRequest {
  connection: string;
  token: number;
}

/** Answer to a renewal. */
export interface VpnRenewResponse {
  token: number;
  ttlMs: number;
  expiresAt: string;
}

/** Answer to a release (false: this node did not hold the lease with this token). */
export interface VpnReleaseResponse {
  released: boolean;
}

/** Answer to a credential fetch. */
export interface VpnCredentialResponse {
  connection: string;
  token: number;
  /** wg-quick style text (see docs/vpn.md). */
  credential: string;
}

/** One route of a connection as the owner applies it. */
export interface VpnRoute {
  destination: string;
  action: "Route" | "Exclude";
  metric: number;
}

/** One connection a node may own (snapshot part `vpn`); never a secret. */
export interface VpnAssignment {
  connection: string;
  mode: "Exit" | "Connector";
  /** Index of this node in allowedNodes (0 = most preferred). */
  preference: number;
  routes: VpnRoute[];
  leaseTtlMs: number;
  hasCredentialRef: boolean;
  enabled: boolean;
}

/** Snapshot part `vpn`. */
export interface VpnSnapshotPart {
  assignments: VpnAssignment[];
}

/** Owner states the agent reports (status kind `vpn`). */
export type VpnOwnerState = "not_started" | "assigned" | "lease_required" | "blocked" | "unknown";

/** Status report body of kind `vpn`. */
export interface VpnStatusBody {
  connections: Array<{ connection: string; state: VpnOwnerState; token?: number; reason?: string; deadlineInMs?: number; tunnel?: "up" | "down" }>;
}

/** The agent's safety margin subtracted from the TTL for its local deadline: max(1 s, ttl/10). */
export function vpnDeadlineMarginMs(ttlMs: number): number {
  return Math.max(1000, Math.floor(ttlMs / 10));
}

/** Status report kind of a mesh agent's link table (POST /v1/status/mesh), validated by the agent API. */
export const MESH_STATUS_KIND = "mesh";
/** At most this many peer rows in a mesh status report (twice the largest active maximum plus warm and relay candidates). */
export const MAX_MESH_STATUS_PEERS = 64;
/** States of a mesh peer row. */
export const MESH_PEER_STATES = ["up", "connecting", "failed"] as const;
/** How a node reaches a peer: its own link, through a relay, or not at all. */
export const MESH_PEER_PATHS = ["direct", "relay", "none"] as const;

/** One row of a mesh status report. */
export interface MeshStatusPeer {
  /** The peer's FabricNode name (same cluster, never the reporter). */
  peer: string;
  state: (typeof MESH_PEER_STATES)[number];
  direction?: "inbound" | "outbound";
  /** RTT EWMA and jitter, ms (0..60000). */
  rttMs?: number;
  jitterMs?: number;
  /** Lost fraction of recent probes, 0..1. */
  loss?: number;
  path: (typeof MESH_PEER_PATHS)[number];
  /** Consecutive failed dials (0..1000000). */
  failures?: number;
  /** RFC 3339. */
  since: string;
}

/**
 * Body of a kind `mesh` status report (StatusReport.body). Closed: unknown
 * fields, more than {@link MAX_MESH_STATUS_PEERS} rows, a peer of another
 * cluster or the reporter itself, repeated peers, numbers out of range and
 * states outside the closed sets are refused with 400 InvalidRequest.
 */
export interface MeshStatusBody {
  /** Reporter's own FabricNode name (optional; when present it must be the certificate's node). */
  node?: string;
  enabled: boolean;
  reason?: string;
  /** Advertised endpoints, `host:port` (at most {@link MAX_MESH_ENDPOINTS}). */
  endpoints: string[];
  /** The peer manager's active set (peer names, at most {@link MAX_MESH_STATUS_PEERS}). */
  active: string[];
  peers: MeshStatusPeer[];
}

/**
 * Status kind an update-cache node reports its HTTPS endpoint as (POST
 * /v1/status/update-cache, body { endpoint: "ip:port" }, validated by the
 * agent API; docs/releases.md "Update caches").
 */
export const UPDATE_CACHE_STATUS_KIND = "update-cache";
