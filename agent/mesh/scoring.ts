/**
 * The cost of a mesh peer, its hard filters and quarantine: pure arithmetic,
 * lower cost is better, every term in [0, 1] so the cost is too.
 *
 *   cost = 0.35 L + 0.25 P + 0.15 U + 0.15 F + 0.05 R + 0.05 Q
 *
 * - L latency: min(1, ln(1 + rtt / 10 ms) / ln 51), rtt = EWMA + 2 x jitter,
 *   so 10 ms scores 0.18, 100 ms 0.61, 500 ms and more 1 (a log scale: the
 *   difference between 5 and 20 ms matters as much as between 100 and 400).
 *   An unmeasured peer is scored as the median effective RTT of this node's
 *   live measured links (what a peer of this network typically costs; at
 *   most 100 ms), or 100 ms when none is measured yet. A fixed 100 ms would
 *   make every candidate the transport has not linked to look worse than an
 *   incumbent at 80 ms, so a slow peer would never be replaced.
 * - P loss: min(1, loss / 5 %); unmeasured is 0.
 * - U load: load^2 (a busy peer is penalised late and steeply); unknown 0.5.
 * - F failures: 1 - e^(-f/2) with f the failure count decayed with a
 *   10-minute half-life since the last failure.
 * - R region distance: 0 same zone, 0.3 same region, 1 elsewhere or unknown.
 * - Q role suitability: 0 for relay and core peers (the backbone), 0.5 for
 *   standard peers, 1 for thin peers (edge devices make poor transit). Policy
 *   and trust are not scored: the snapshot lists only authorised peers of the
 *   node's own cluster, and anything else is a hard filter.
 *
 * Hard filters (never connect, evict an active peer when a replacement
 * exists): not in the snapshot or of another cluster, loss >= 20 %,
 * load >= 0.95, quarantined. A peer is quarantined after 3 consecutive
 * failures for 30 s x 2^n (n = quarantines since its last success), capped at
 * 30 minutes.
 */
import { PROBE_INTERVAL_MS } from "./transport/probe-stats.js";
import type { LinkObservation, MeshCandidate, MeshSelf } from "./types.js";

/** The weights of the cost's terms; they sum to 1. */
export const COST_WEIGHTS = { latency: 0.35, loss: 0.25, load: 0.15, failures: 0.15, region: 0.05, role: 0.05 } as const;

/** Scoring and filter constants (see the module header for their use). */
export const SCORING = {
  /** RTT assumed for a peer never measured while no link is measured either (and the cap of the estimate). */
  unmeasuredRttMs: 100,
  /** Load assumed for a peer that reported none. */
  unknownLoad: 0.5,
  /** Loss at which P saturates. */
  lossSaturation: 0.05,
  /** Half-life of the failure count. */
  failureHalfLifeMs: 10 * 60_000,
  /** Hard filter: loss at or above this. */
  maxLoss: 0.2,
  /** Hard filter: load at or above this. */
  maxLoad: 0.95,
  /**
   * A link silent longer than this is dead: one lost probe exchange (two
   * periods without a word) plus 1.5 s for the RTT, a retransmission and
   * timer lateness, 7.5 s at 3 s probes (Tailscale trusts a path 6.5 s).
   */
  trustWindowMs: 2 * PROBE_INTERVAL_MS + 1_500,
} as const;

/** Quarantine constants. */
export const QUARANTINE = {
  /** Consecutive failures that start a quarantine. */
  failureThreshold: 3,
  baseMs: 30_000,
  capMs: 30 * 60_000,
} as const;

/** The six terms of a cost, each in [0, 1], and the weighted total. */
export interface CostBreakdown {
  latency: number;
  loss: number;
  load: number;
  failures: number;
  region: number;
  role: number;
  total: number;
}

/** L: the log-scaled latency term of an effective RTT (EWMA + 2 x jitter) in ms. */
export function latencyTerm(effectiveRttMs: number): number {
  const rtt = Math.max(0, effectiveRttMs);
  return Math.min(1, Math.log(1 + rtt / 10) / Math.log(51));
}

/**
 * The RTT a link is scored on: EWMA plus twice the jitter, or `unmeasuredRttMs` (default 100 ms).
 * A warm probe's figure only raises a candidate above `unmeasuredRttMs`, never lowers it below: it is a
 * few samples from one moment, set against live links whose EWMA follows this host's load (on a busy
 * host a calm moment's sample would beat every live link and swap peers on noise).
 */
export function effectiveRttMs(link: LinkObservation | undefined, unmeasuredRttMs: number = SCORING.unmeasuredRttMs): number {
  if (link?.rttEwmaMs === undefined) return unmeasuredRttMs;
  const rtt = link.rttEwmaMs + 2 * (link.jitterMs ?? 0);
  return link.state === "warm" ? Math.max(rtt, unmeasuredRttMs) : rtt;
}

/**
 * The RTT an unmeasured candidate is scored as: the median effective RTT of
 * the live measured links (the upper median of an even count), capped at
 * 100 ms; 100 ms when there is none.
 */
export function unmeasuredRttEstimateMs(links: Iterable<LinkObservation>, now: number): number {
  const rtts: number[] = [];
  for (const l of links) if (l.rttEwmaMs !== undefined && isLinkLive(l, now)) rtts.push(effectiveRttMs(l));
  if (rtts.length === 0) return SCORING.unmeasuredRttMs;
  rtts.sort((a, b) => a - b);
  return Math.min(SCORING.unmeasuredRttMs, rtts[Math.floor(rtts.length / 2)] ?? SCORING.unmeasuredRttMs);
}

/** F: the failure term, with the count decayed by its half-life since the last failure. */
export function failureTerm(failures: number, lastFailureMs: number | undefined, now: number): number {
  if (failures <= 0) return 0;
  const age = lastFailureMs === undefined ? 0 : Math.max(0, now - lastFailureMs);
  const decayed = failures * Math.pow(0.5, age / SCORING.failureHalfLifeMs);
  return 1 - Math.exp(-decayed / 2);
}

/** R: 0 same zone, 0.3 same region, 1 elsewhere (or when either side does not say). */
export function regionTerm(self: Pick<MeshSelf, "region" | "zone">, peer: Pick<MeshCandidate, "region" | "zone">): number {
  if (self.region === undefined || peer.region === undefined || self.region !== peer.region) return 1;
  if (self.zone !== undefined && self.zone === peer.zone) return 0;
  return 0.3;
}

/** Q: how suitable the peer's class is as a mesh neighbour. */
export function roleTerm(peer: Pick<MeshCandidate, "nodeClass">): number {
  switch (peer.nodeClass) {
    case "core":
    case "relay":
      return 0;
    case "standard":
      return 0.5;
    case "thin":
      return 1;
  }
}

/** The cost of a candidate given what the transport knows of it (absent: never probed, scored at `unmeasuredRttMs`). */
export function peerCost(self: MeshSelf, candidate: MeshCandidate, link: LinkObservation | undefined, now: number, unmeasuredRttMs: number = SCORING.unmeasuredRttMs): CostBreakdown {
  const load = clamp01(candidate.load ?? SCORING.unknownLoad);
  const terms = {
    latency: latencyTerm(effectiveRttMs(link, unmeasuredRttMs)),
    loss: Math.min(1, clamp01(link?.loss ?? 0) / SCORING.lossSaturation),
    load: load * load,
    failures: link ? failureTerm(link.failures, link.lastFailureMs, now) : 0,
    region: regionTerm(self, candidate),
    role: roleTerm(candidate),
  };
  const total =
    COST_WEIGHTS.latency * terms.latency +
    COST_WEIGHTS.loss * terms.loss +
    COST_WEIGHTS.load * terms.load +
    COST_WEIGHTS.failures * terms.failures +
    COST_WEIGHTS.region * terms.region +
    COST_WEIGHTS.role * terms.role;
  return { ...terms, total };
}

/** Why a candidate may not be an active peer. */
export type FilterReason = "OtherCluster" | "HighLoss" | "Overloaded" | "Quarantined" | "NoDirectPath";

/**
 * The hard filter of a candidate, or undefined when it passes. Authorisation
 * is the caller's part (only snapshot candidates are ever considered); the
 * cluster is checked again here so a bad mapping cannot cross clusters.
 */
export function hardFilter(
  self: MeshSelf,
  candidate: MeshCandidate,
  link: LinkObservation | undefined,
  quarantinedUntilMs: number | undefined,
  now: number,
): FilterReason | undefined {
  if (candidate.cluster !== self.cluster) return "OtherCluster";
  if (quarantinedUntilMs !== undefined && now < quarantinedUntilMs) return "Quarantined";
  // Neither side accepts connections: no direct link can exist (a relay carries their traffic).
  if (!self.directlyReachable && !candidate.directlyReachable) return "NoDirectPath";
  if ((link?.loss ?? 0) >= SCORING.maxLoss) return "HighLoss";
  if ((candidate.load ?? 0) >= SCORING.maxLoad) return "Overloaded";
  return undefined;
}

/** Whether a link is alive: connected and heard from within the trust window. */
export function isLinkLive(link: LinkObservation | undefined, now: number): boolean {
  if (!link || link.state !== "active") return false;
  return link.lastHeardMs !== undefined && now - link.lastHeardMs <= SCORING.trustWindowMs;
}

/** The length of the n-th quarantine (n from 0): 30 s x 2^n, capped at 30 minutes. */
export function quarantineDurationMs(n: number): number {
  const exponent = Math.max(0, Math.floor(n));
  // 2^6 x 30 s already passes the cap; avoid huge powers for large n.
  if (exponent >= 16) return QUARANTINE.capMs;
  return Math.min(QUARANTINE.capMs, QUARANTINE.baseMs * 2 ** exponent);
}

/** What the peer manager remembers of one peer's quarantines. */
export interface QuarantineRecord {
  /** Quarantines since the peer's last success. */
  count: number;
  untilMs: number;
  /** The failure count when the last quarantine started. */
  failuresAtStart: number;
}

/**
 * The quarantine after observing a link: a new one starts when the peer has
 * `failureThreshold` consecutive failures and, if it was quarantined before,
 * has failed again since (a peer does not get re-quarantined for the same
 * failures). A success (failures back to 0) forgets the history.
 * Returns the record to keep (undefined: none) and whether a new quarantine started.
 */
export function nextQuarantine(
  previous: QuarantineRecord | undefined,
  link: LinkObservation | undefined,
  now: number,
): { record: QuarantineRecord | undefined; started: boolean } {
  const failures = link?.failures ?? 0;
  if (link && failures === 0) return { record: undefined, started: false };
  if (failures < QUARANTINE.failureThreshold) return { record: previous, started: false };
  if (previous && (now < previous.untilMs || failures <= previous.failuresAtStart)) return { record: previous, started: false };
  const count = previous ? previous.count + 1 : 0;
  return { record: { count, untilMs: now + quarantineDurationMs(count), failuresAtStart: failures }, started: true };
}

/**
 * The rendezvous weight of a pair of node names: a 32-bit FNV-1a hash of
 * `self|peer` with murmur3's finaliser. Each node ranks equal-cost peers in its own stable order, and
 * different nodes spread over different peers instead of all picking the
 * alphabetically first.
 */
export function rendezvousWeight(self: string, peer: string): number {
  let h = 0x811c9dc5;
  const text = `${self}|${peer}`;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  // murmur3's finaliser: FNV alone barely moves the high bits when only the last character differs.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function clamp01(x: number): number {
  if (!Number.isFinite(x)) return 1;
  return Math.min(1, Math.max(0, x));
}
