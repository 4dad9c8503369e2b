/**
 * Validation of a kind `mesh` status report body (lib/agent-protocol.ts
 * MeshStatusBody): a closed, bounded schema checked before anything is
 * stored. The stored body is rebuilt from the checked fields only, so what
 * PostgreSQL holds is exactly the documented shape.
 */
import { isIP } from "node:net";
import {
  MAX_MESH_ENDPOINTS,
  MAX_MESH_STATUS_PEERS,
  MESH_PEER_PATHS,
  MESH_PEER_STATES,
  type MeshStatusBody,
  type MeshStatusPeer,
} from "../lib/agent-protocol.js";
import { AgentApiError } from "./errors.js";

const BODY_KEYS = new Set(["node", "enabled", "reason", "endpoints", "active", "peers"]);
const PEER_KEYS = new Set(["peer", "state", "direction", "rttMs", "jitterMs", "loss", "path", "failures", "since"]);
/** A FabricNode name: `<cluster>.<node>`, DNS labels joined by dots. */
const NODE_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)+$/;
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

function bad(message: string): AgentApiError {
  return new AgentApiError(400, "InvalidRequest", `mesh report: ${message}`);
}

function objectOf(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw bad(`${what} must be an object`);
  return v as Record<string, unknown>;
}

function closed(o: Record<string, unknown>, keys: ReadonlySet<string>, what: string): void {
  for (const k of Object.keys(o)) if (!keys.has(k)) throw bad(`${what}.${k.slice(0, 32)} is not a known field`);
}

function num(v: unknown, what: string, min: number, max: number, integer = false): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    throw bad(`${what} must be ${integer ? "an integer" : "a finite number"} in ${min}..${max}`);
  }
  return v;
}

/** A peer name: a node name of the reporter's cluster, not the reporter. */
function peerName(v: unknown, what: string, self: { node: string; cluster: string }): string {
  if (typeof v !== "string" || v.length > 253 || !NODE_NAME.test(v)) throw bad(`${what} must be a FabricNode name`);
  if (!v.startsWith(`${self.cluster}.`)) throw bad(`${what} names a node of another cluster`);
  if (v === self.node) throw bad(`${what} names the reporting node itself`);
  return v;
}

function endpoint(v: unknown): string {
  if (typeof v !== "string" || v.length > 53) throw bad("endpoints[] must be host:port strings");
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(v);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (host === undefined || isIP(host) === 0 || (m?.[1] !== undefined) !== (isIP(host) === 6) || port < 1 || port > 65535) throw bad("endpoints[] must be ip:port or [ipv6]:port");
  return v;
}

function peerRow(v: unknown, i: number, self: { node: string; cluster: string }): MeshStatusPeer {
  const what = `peers[${i}]`;
  const o = objectOf(v, what);
  closed(o, PEER_KEYS, what);
  const state = o.state;
  if (typeof state !== "string" || !(MESH_PEER_STATES as readonly string[]).includes(state)) throw bad(`${what}.state must be one of ${MESH_PEER_STATES.join(", ")}`);
  const path = o.path;
  if (typeof path !== "string" || !(MESH_PEER_PATHS as readonly string[]).includes(path)) throw bad(`${what}.path must be one of ${MESH_PEER_PATHS.join(", ")}`);
  if (typeof o.since !== "string" || !RFC3339.test(o.since) || !Number.isFinite(Date.parse(o.since))) throw bad(`${what}.since must be an RFC 3339 time`);
  const out: MeshStatusPeer = { peer: peerName(o.peer, `${what}.peer`, self), state: state as MeshStatusPeer["state"], path: path as MeshStatusPeer["path"], since: o.since };
  if (o.direction !== undefined) {
    if (o.direction !== "inbound" && o.direction !== "outbound") throw bad(`${what}.direction must be inbound or outbound`);
    out.direction = o.direction;
  }
  if (o.rttMs !== undefined) out.rttMs = num(o.rttMs, `${what}.rttMs`, 0, 60_000);
  if (o.jitterMs !== undefined) out.jitterMs = num(o.jitterMs, `${what}.jitterMs`, 0, 60_000);
  if (o.loss !== undefined) out.loss = num(o.loss, `${what}.loss`, 0, 1);
  if (o.failures !== undefined) out.failures = num(o.failures, `${what}.failures`, 0, 1_000_000, true);
  return out;
}

/**
 * Checks a mesh report body sent by `self` (the certificate's node) and
 * returns the body to store; throws 400 InvalidRequest naming the field.
 */
export function validateMeshStatusBody(body: unknown, self: { node: string; cluster: string }): MeshStatusBody {
  const o = objectOf(body, "body");
  closed(o, BODY_KEYS, "body");
  if (o.node !== undefined && o.node !== self.node) throw new AgentApiError(403, "Forbidden", "a node may report mesh status only for itself");
  if (typeof o.enabled !== "boolean") throw bad("enabled must be a boolean");
  if (o.reason !== undefined && (typeof o.reason !== "string" || o.reason.length > 1024)) throw bad("reason must be a string of at most 1024 characters");
  if (!Array.isArray(o.endpoints) || o.endpoints.length > MAX_MESH_ENDPOINTS) throw bad(`endpoints must be a list of at most ${MAX_MESH_ENDPOINTS} endpoints`);
  if (!Array.isArray(o.active) || o.active.length > MAX_MESH_STATUS_PEERS) throw bad(`active must be a list of at most ${MAX_MESH_STATUS_PEERS} peers`);
  if (!Array.isArray(o.peers) || o.peers.length > MAX_MESH_STATUS_PEERS) throw bad(`peers must be a list of at most ${MAX_MESH_STATUS_PEERS} rows`);
  const endpoints = (o.endpoints as unknown[]).map(endpoint);
  const active = (o.active as unknown[]).map((a, i) => peerName(a, `active[${i}]`, self));
  if (new Set(active).size !== active.length) throw bad("active must not repeat a peer");
  const peers = (o.peers as unknown[]).map((p, i) => peerRow(p, i, self));
  if (new Set(peers.map((p) => p.peer)).size !== peers.length) throw bad("peers must not repeat a peer");
  return { node: self.node, enabled: o.enabled, ...(typeof o.reason === "string" ? { reason: o.reason } : {}), endpoints, active, peers };
}
