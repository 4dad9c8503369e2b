/**
 * The routing engine's decisions, pure: which path carries traffic to a
 * destination node, and whether a relay may forward between two nodes.
 *
 * - Direct when a live direct link to the destination exists (active and
 *   heard within the trust window).
 * - Else one relay hop: among this node's live links to relay-capable peers
 *   that advertise the destination as reachable, the cheapest link (latency
 *   and loss terms of the peer cost), ties by name. Never two relay hops
 *   (as Nebula: no relay-to-relay).
 * - Sticky: a relayed route in use stays while its relay link lives and the
 *   relay still reaches the destination, so noise never moves traffic; a
 *   direct path always wins when it appears. When the chosen path dies, the
 *   next evaluation fails over to the next best relay.
 * - Never across clusters: a destination, relay or advertisement of another
 *   cluster is refused or ignored, whatever the links say.
 *
 * Service adapters (ping, TCP forwarding, VPN) ask `chooseRoute` for a
 * destination and use the answer; they never pick paths themselves.
 */
import { COST_WEIGHTS, effectiveRttMs, isLinkLive, latencyTerm, SCORING } from "./scoring.js";
import type { LinkObservation } from "./types.js";

/** A node name with the cluster it belongs to; every node in routing inputs carries one. */
export interface ClusterNode {
  node: string;
  cluster: string;
}

/** A link of this node to a peer, with the peer's cluster and relay capability. */
export interface RoutingLink extends LinkObservation {
  cluster: string;
  relayCapable: boolean;
}

/** What a relay advertises it can reach directly (its own live links). */
export interface RelayAdvertisement {
  relay: string;
  cluster: string;
  reaches: readonly string[];
}

/** A chosen path. */
export type Route = { kind: "direct"; destination: string } | { kind: "relay"; destination: string; relay: string };

/** Why no route exists. */
export type RouteRefusalReason = "CrossCluster" | "SelfDestination" | "NoPath";

/** The engine's answer: a route, or a refusal with its reason. */
export type RouteDecision = { ok: true; route: Route } | { ok: false; reason: RouteRefusalReason };

/** The inputs of one route decision. */
export interface RouteInput {
  self: ClusterNode;
  destination: ClusterNode;
  links: readonly RoutingLink[];
  relays: readonly RelayAdvertisement[];
  /** The route in use, if any (kept while it lives). */
  current?: Route;
  now: number;
}

/** The cost of using a link as a path: the latency and loss terms of the peer cost. */
export function pathCost(link: LinkObservation): number {
  const loss = Math.min(1, Math.max(0, link.loss ?? 0) / SCORING.lossSaturation);
  return COST_WEIGHTS.latency * latencyTerm(effectiveRttMs(link)) + COST_WEIGHTS.loss * loss;
}

/** Picks the path to a destination; pure. */
export function chooseRoute(input: RouteInput): RouteDecision {
  const { self, destination, now } = input;
  if (destination.cluster !== self.cluster) return { ok: false, reason: "CrossCluster" };
  if (destination.node === self.node) return { ok: false, reason: "SelfDestination" };

  const live = new Map<string, RoutingLink>();
  for (const link of input.links) {
    if (link.cluster === self.cluster && isLinkLive(link, now)) live.set(link.node, link);
  }
  if (live.has(destination.node)) return { ok: true, route: { kind: "direct", destination: destination.node } };

  const relays: Array<{ relay: string; cost: number }> = [];
  for (const ad of input.relays) {
    if (ad.cluster !== self.cluster || ad.relay === destination.node || ad.relay === self.node) continue;
    const link = live.get(ad.relay);
    if (!link || !link.relayCapable || !ad.reaches.includes(destination.node)) continue;
    relays.push({ relay: ad.relay, cost: pathCost(link) });
  }
  if (relays.length === 0) return { ok: false, reason: "NoPath" };

  const current = input.current;
  if (current?.kind === "relay" && current.destination === destination.node && relays.some((r) => r.relay === current.relay)) {
    return { ok: true, route: current };
  }
  relays.sort((a, b) => a.cost - b.cost || (a.relay < b.relay ? -1 : a.relay > b.relay ? 1 : 0));
  const best = relays[0];
  if (!best) return { ok: false, reason: "NoPath" };
  return { ok: true, route: { kind: "relay", destination: destination.node, relay: best.relay } };
}

/** The relay's own view: itself and the peers of its current verified snapshot. */
export interface RelaySnapshot {
  relay: ClusterNode;
  peers: readonly ClusterNode[];
}

/** Why a relay refuses to forward. */
export type ForwardRefusalReason = "NotInSnapshot" | "CrossCluster" | "SameNode" | "ToRelay";

/** The relay's answer to a forwarding request. */
export type ForwardDecision = { allowed: true } | { allowed: false; reason: ForwardRefusalReason };

/**
 * Whether a relay may forward traffic from one peer to another: both must be
 * in the relay's snapshot (so a revoked or removed node loses relaying with
 * the snapshot that drops it), in the relay's cluster, and distinct from each
 * other and from the relay.
 */
export function mayForward(from: string, to: string, snapshot: RelaySnapshot): ForwardDecision {
  if (from === to) return { allowed: false, reason: "SameNode" };
  if (from === snapshot.relay.node || to === snapshot.relay.node) return { allowed: false, reason: "ToRelay" };
  const a = snapshot.peers.find((p) => p.node === from);
  const b = snapshot.peers.find((p) => p.node === to);
  if (!a || !b) return { allowed: false, reason: "NotInSnapshot" };
  if (a.cluster !== snapshot.relay.cluster || b.cluster !== snapshot.relay.cluster) return { allowed: false, reason: "CrossCluster" };
  return { allowed: true };
}
