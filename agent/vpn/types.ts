/**
 * The agent's view of the wire contract of VPN connections: the snapshot
 * part `vpn` (assignments this node is eligible to own; never a secret) and
 * the status report kind `vpn`. The snapshot is verified before it gets
 * here, but the part is still checked field by field: a malformed
 * assignment is dropped with a reason, never half-applied.
 */

import type { VpnAssignment, VpnRoute, VpnStatusBody } from "../../lib/agent-protocol.js";

export type { VpnAssignment, VpnOwnerState, VpnStatusBody } from "../../lib/agent-protocol.js";

/** One route policy of a connection. */
export type VpnRoutePolicy = VpnRoute;

/** One row of the `vpn` status report. */
export type VpnConnectionStatus = VpnStatusBody["connections"][number];

/** Status report kind of the VPN owner (POST /v1/status/vpn). */
export const VPN_STATUS_KIND = "vpn";

const CONNECTION = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\/[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const CIDR4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;
const CIDR6 = /^[0-9a-fA-F:]+\/\d{1,3}$/;

/** True for an IPv4 or IPv6 CIDR literal (the only destinations passed to `ip route`). */
export function isCidr(s: string): boolean {
  const m = CIDR4.exec(s);
  if (m !== null) return m.slice(1, 5).every((o) => Number(o) <= 255) && Number(m[5]) <= 32;
  return CIDR6.test(s) && s.includes(":") && Number(s.split("/")[1]) <= 128;
}

function route(v: unknown): VpnRoutePolicy | string {
  if (typeof v !== "object" || v === null) return "a route is not an object";
  const r = v as Record<string, unknown>;
  if (typeof r.destination !== "string" || !isCidr(r.destination)) return "a route destination is not a CIDR";
  if (r.action !== "Route" && r.action !== "Exclude") return "a route action is neither Route nor Exclude";
  const metric = r.metric ?? 0;
  if (typeof metric !== "number" || !Number.isSafeInteger(metric) || metric < 0 || metric > 0xffffffff) return "a route metric is not a 32-bit unsigned integer";
  return { destination: r.destination, action: r.action, metric };
}

/** One assignment checked field by field, or the reason it is unusable. */
export function parseAssignment(v: unknown): VpnAssignment | { connection?: string; invalid: string } {
  if (typeof v !== "object" || v === null) return { invalid: "not an object" };
  const a = v as Record<string, unknown>;
  if (typeof a.connection !== "string" || !CONNECTION.test(a.connection)) return { invalid: "connection is not <namespace>/<name>" };
  const bad = (invalid: string) => ({ connection: a.connection as string, invalid });
  if (a.mode !== "Exit" && a.mode !== "Connector") return bad("mode is neither Exit nor Connector");
  if (typeof a.preference !== "number" || !Number.isSafeInteger(a.preference) || a.preference < 0) return bad("preference is not a non-negative integer");
  if (typeof a.leaseTtlMs !== "number" || !Number.isSafeInteger(a.leaseTtlMs) || a.leaseTtlMs < 2000 || a.leaseTtlMs > 3_600_000) return bad("leaseTtlMs is not between 2 s and 1 h (below 2 s the 1 s deadline margin leaves no time to renew)");
  if (typeof a.enabled !== "boolean" || typeof a.hasCredentialRef !== "boolean") return bad("enabled or hasCredentialRef is not a boolean");
  if (!Array.isArray(a.routes) || a.routes.length > 1024) return bad("routes is not a list of at most 1024");
  const routes: VpnRoutePolicy[] = [];
  for (const r of a.routes) {
    const p = route(r);
    if (typeof p === "string") return bad(p);
    routes.push(p);
  }
  return { connection: a.connection, mode: a.mode, preference: a.preference, routes, leaseTtlMs: a.leaseTtlMs, hasCredentialRef: a.hasCredentialRef, enabled: a.enabled };
}

/** The assignments of a snapshot payload's `vpn` part (none when absent), and the unusable ones with reasons. */
export function assignmentsOf(payload: unknown): { assignments: VpnAssignment[]; invalid: { connection?: string; invalid: string }[] } {
  const part = (payload as { vpn?: unknown } | null)?.vpn;
  const list = (part as { assignments?: unknown } | undefined)?.assignments;
  if (!Array.isArray(list)) return { assignments: [], invalid: part === undefined ? [] : [{ invalid: "vpn part has no assignments list" }] };
  const assignments: VpnAssignment[] = [];
  const invalid: { connection?: string; invalid: string }[] = [];
  const seen = new Set<string>();
  for (const v of list) {
    const a = parseAssignment(v);
    if ("invalid" in a) invalid.push(a);
    else if (seen.has(a.connection)) invalid.push({ connection: a.connection, invalid: "listed twice" });
    else {
      seen.add(a.connection);
      assignments.push(a);
    }
  }
  return { assignments, invalid };
}
