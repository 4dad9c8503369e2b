/**
 * The VPN owner's decisions as pure functions (agent/vpn/owner.ts applies
 * them): the lease timing of the wire contract, the contention delay, the
 * interface name, and what a new snapshot changes.
 *
 * Timing (all on the agent's monotonic clock):
 * - deadline = send time of the acquire/renew + ttl - margin,
 *   margin = max(1 s, ttl/10) (computed by the lease client,
 *   lease-client.ts leaseDeadline, on the owner's clock): the holder tears its data plane down at its
 *   deadline, which is before the database can expire the lease (the
 *   server's clock starts later than the send), so the next grant never
 *   overlaps a tunnel that is still up;
 * - renew every ttl/3, and after a failed renew again after ttl/6, until the
 *   deadline;
 * - contention: preference p (the node's index in allowedNodes) waits
 *   p x step plus a jitter below step/2 (step = min(1 s, ttl/4)): lower
 *   preference always asks first, and nodes of equal preference spread out.
 */
import { createHash } from "node:crypto";
import type { VpnAssignment } from "./types.js";

/** When to renew after a successful acquire or renew. */
export function renewIntervalMs(ttlMs: number): number {
  return Math.max(1, Math.floor(ttlMs / 3));
}

/** When to try again after a failed renew (never past the deadline: the deadline timer acts first). */
export function renewRetryMs(ttlMs: number): number {
  return Math.max(1, Math.floor(ttlMs / 6));
}

/** The contention step of a ttl. */
export function contendStepMs(ttlMs: number): number {
  return Math.min(1000, Math.floor(ttlMs / 4));
}

/** How long a node of `preference` waits before asking for the lease; `random` in [0, 1). */
export function contendDelayMs(preference: number, ttlMs: number, random: number): number {
  const step = contendStepMs(ttlMs);
  return preference * step + Math.floor(random * (step / 2));
}

/** How long to wait after a refusal that will not change soon (NotEligible, a bad credential, a failed bring-up). */
export function blockedRetryMs(ttlMs: number): number {
  return Math.max(10_000, ttlMs);
}

const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";

/**
 * The interface name of a connection on a node: `prefix` and a hash of
 * (cluster, node, connection), 15 characters (the kernel's limit). Unique
 * per host in practice even for several memberships, which matters because
 * wireguard-go's control sockets (/var/run/wireguard/<name>.sock) are
 * host-wide.
 */
export function interfaceName(prefix: string, cluster: string, node: string, connection: string): string {
  if (!/^[a-z][a-z0-9]{0,6}$/.test(prefix)) throw new Error(`interface prefix ${JSON.stringify(prefix)} must be 1-7 lower-case letters or digits, starting with a letter`);
  const h = createHash("sha256").update(`${cluster}\0${node}\0${connection}`).digest();
  let out = prefix;
  for (let i = 0; out.length < 15; i++) out += BASE32[(h[i] ?? 0) % 32];
  return out;
}

/** What a snapshot changes in the owner's set of connections. */
export interface AssignmentPlan {
  /** New connections. */
  start: VpnAssignment[];
  /** Known connections whose assignment changed. */
  update: VpnAssignment[];
  /** Connections no longer assigned: release and tear down. */
  stop: string[];
}

/** Compares the assignments in force with the new ones. */
export function planAssignments(current: ReadonlyMap<string, VpnAssignment>, desired: readonly VpnAssignment[]): AssignmentPlan {
  const plan: AssignmentPlan = { start: [], update: [], stop: [] };
  const next = new Set(desired.map((a) => a.connection));
  for (const c of [...current.keys()].sort()) if (!next.has(c)) plan.stop.push(c);
  for (const a of desired) {
    const old = current.get(a.connection);
    if (old === undefined) plan.start.push(a);
    else if (JSON.stringify(old) !== JSON.stringify(a)) plan.update.push(a);
  }
  return plan;
}

/** Whether an assignment change needs the running tunnel rebuilt (routes or mode differ). */
export function dataPlaneChanged(a: VpnAssignment, b: VpnAssignment): boolean {
  return a.mode !== b.mode || JSON.stringify(a.routes) !== JSON.stringify(b.routes);
}

/** Why a connection may not be contended for here, or undefined when it may. */
export function contendBlocker(a: VpnAssignment, dataPlane: { ok: true } | { ok: false; reason: string }): { state: "not_started" | "blocked"; reason: string } | undefined {
  if (!a.enabled) return { state: "not_started", reason: "connection disabled" };
  if (!a.hasCredentialRef) return { state: "blocked", reason: "connection has no credential reference" };
  if (!dataPlane.ok) return { state: "blocked", reason: dataPlane.reason };
  return undefined;
}
