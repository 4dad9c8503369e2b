/**
 * The peer manager's decision: which peers this node keeps active, which it
 * probes as warm candidates, which it quarantines. Level-triggered and pure:
 * from the candidate set of the node's verified (or checkpointed) snapshot,
 * its class bounds, the transport's link table and the time, it returns the
 * actions that converge the link table, plus the small memory the next
 * evaluation needs (quarantines, challenger streaks, recent swaps). The mesh
 * loop calls it every 10 s and on a new snapshot, applies the actions through
 * the transport, and hands the memory back next time.
 *
 * Rules, in the order they are applied:
 * 1. A link to a node not in the snapshot (removed, revoked) or of another
 *    cluster is closed at once, whatever its state.
 * 2. Quarantine: 3 consecutive failures quarantine a peer for 30 s x 2^n
 *    (capped at 30 min); an active one is closed.
 * 3. An active link silent longer than the trust window (7.5 s), or
 *    connecting for longer than 10 s, is closed at once.
 * 4. Never above max: the worst peers are closed until the set fits.
 * 5. A peer that now fails a hard filter (loss >= 20 %, load >= 0.95) is
 *    replaced by the best eligible candidate; with none, it is kept while the
 *    set is at or below min (a bad link beats none).
 * 6. A node that is not directly reachable keeps at least one relay-capable
 *    peer, making room by closing its worst other peer if at max.
 * 7. Fill up to the target (the midpoint of min and max, rounded up): one per
 *    failure domain (region/zone) first up to half the target, then by cost.
 * 8. Hysteresis: a candidate replaces the worst incumbent only when its cost
 *    is lower by >= 0.05 absolute and >= 25 % relative, counting a 0.05
 *    incumbent bonus, for 3 evaluations in a row spanning >= 20 s (bursts of
 *    evaluations on link or snapshot events do not count), the incumbent has been in
 *    the set >= 2 minutes, and no more than one swap (two for relay and core
 *    nodes) happened in the last 30 s.
 * 9. Warm: the best `warm` candidates outside the active set are probed.
 * Ties are broken by the rendezvous weight of (this node, peer), then by name,
 * so the same inputs always give the same actions.
 */
import {
  hardFilter,
  isLinkLive,
  nextQuarantine,
  peerCost,
  rendezvousWeight,
  SCORING,
  unmeasuredRttEstimateMs,
  type CostBreakdown,
  type FilterReason,
  type QuarantineRecord,
} from "./scoring.js";
import type { ClassBounds, LinkObservation, MeshCandidate, MeshNodeClass, MeshSelf } from "./types.js";

/** Hysteresis and pacing constants of the peer manager. */
export const HYSTERESIS = {
  /** Subtracted from an incumbent's cost when a challenger is compared with it. */
  incumbentBonus: 0.05,
  /** The challenger must be cheaper by at least this much... */
  absoluteMargin: 0.05,
  /** ...and cost at most (1 - this) of the incumbent's. */
  relativeMargin: 0.25,
  /** Consecutive evaluations the challenger must win... */
  streak: 3,
  /**
   * ...spanning at least this long (3 evaluations at the default 10 s
   * period). Evaluations also run on every link going down and every new
   * snapshot, so a count alone could be met within a second by a burst, or
   * by a short evaluation period, on a transient RTT spike.
   */
  streakMs: 20_000,
  /** An incumbent younger than this is never swapped out. */
  minTenureMs: 2 * 60_000,
  /** Swap budget window. */
  swapWindowMs: 30_000,
  /** Swaps per window for thin and standard nodes... */
  swapsPerWindow: 1,
  /** ...and for relay and core nodes. */
  relaySwapsPerWindow: 2,
  /** A connection still opening after this long is abandoned. */
  connectTimeoutMs: 10_000,
} as const;

/** Default active and warm counts per class (the seed's recommended defaults; FabricCluster `peerPolicy` overrides min and max). */
export const DEFAULT_CLASS_BOUNDS: Readonly<Record<MeshNodeClass, ClassBounds>> = {
  thin: { min: 1, max: 3, warm: 2 },
  standard: { min: 3, max: 5, warm: 3 },
  relay: { min: 8, max: 20, warm: 4 },
  core: { min: 8, max: 20, warm: 4 },
};

/** Why a link is closed. */
export type DisconnectReason =
  | "NotInSnapshot"
  | "OtherCluster"
  | "Quarantined"
  | "Silent"
  | "ConnectTimeout"
  | "OverMax"
  | "HighLoss"
  | "Overloaded"
  | "NoDirectPath"
  | "MakeRoomForRelay"
  | "Replaced"
  | "NoLongerWarm";

/** Why a link is opened. */
export type ConnectReason = "BelowMin" | "Fill" | "RelayNeeded" | "ReplacesUnhealthy" | "BetterCandidate";

/** One step for the transport; each is idempotent. */
export type PeerAction =
  | { kind: "connect"; node: string; endpoints: readonly string[]; reason: ConnectReason; replaces?: string }
  | { kind: "disconnect"; node: string; reason: DisconnectReason }
  | { kind: "probe"; node: string; endpoints: readonly string[] }
  | { kind: "quarantine"; node: string; untilMs: number };

/** What one evaluation hands to the next; plain data, safe to keep in memory or log. */
export interface PeerManagerMemory {
  quarantines: Readonly<Record<string, QuarantineRecord>>;
  /** Per candidate: evaluations in a row it has beaten the worst incumbent by the margins. */
  streaks: Readonly<Record<string, number>>;
  /** Per candidate with a streak: when the streak began. */
  streakSinceMs: Readonly<Record<string, number>>;
  /** Times of the swaps within the last swap window. */
  swapTimesMs: readonly number[];
}

/** The inputs of one evaluation. */
export interface PeerManagerInput {
  self: MeshSelf;
  bounds: ClassBounds;
  /** The snapshot's candidate set; nothing outside it is ever connected. */
  candidates: readonly MeshCandidate[];
  /** The transport's link table: one entry per peer it knows anything of. */
  links: readonly LinkObservation[];
  now: number;
}

/** The outcome of one evaluation. */
export interface PeerDecision {
  actions: PeerAction[];
  memory: PeerManagerMemory;
  /** The active set once the actions are applied (sorted by name). */
  active: string[];
  /** The warm set (sorted by name). */
  warm: string[];
  /** The cost of every same-cluster candidate this round (for status and debugging). */
  costs: Record<string, CostBreakdown>;
}

/** The memory of a node that has not evaluated yet. */
export function emptyPeerMemory(): PeerManagerMemory {
  return { quarantines: {}, streaks: {}, streakSinceMs: {}, swapTimesMs: [] };
}

/** The active-set size the manager fills to: the midpoint of min and max, rounded up. */
export function fillTarget(bounds: ClassBounds): number {
  const max = Math.max(0, bounds.max);
  const min = Math.min(Math.max(0, bounds.min), max);
  return Math.min(max, Math.ceil((min + max) / 2));
}

interface Member {
  candidate: MeshCandidate;
  link: LinkObservation | undefined;
  cost: number;
}

/** One evaluation of the peer manager; pure. */
export function evaluatePeers(input: PeerManagerInput, memory: PeerManagerMemory = emptyPeerMemory()): PeerDecision {
  const { self, now } = input;
  const max = Math.max(0, input.bounds.max);
  const min = Math.min(Math.max(0, input.bounds.min), max);
  const target = fillTarget(input.bounds);
  const actions: PeerAction[] = [];

  const candidates = new Map<string, MeshCandidate>();
  for (const c of [...input.candidates].sort((a, b) => cmpStr(a.node, b.node))) {
    if (c.node !== self.node && !candidates.has(c.node)) candidates.set(c.node, c);
  }
  const links = new Map<string, LinkObservation>();
  for (const l of [...input.links].sort((a, b) => cmpStr(a.node, b.node))) {
    if (!links.has(l.node)) links.set(l.node, l);
  }

  // Quarantines: carried for snapshot members only (a removed node is forgotten).
  const quarantines: Record<string, QuarantineRecord> = {};
  for (const [node, candidate] of candidates) {
    if (candidate.cluster !== self.cluster) continue;
    const { record, started } = nextQuarantine(memory.quarantines[node], links.get(node), now);
    if (record) quarantines[node] = record;
    if (started && record) actions.push({ kind: "quarantine", node, untilMs: record.untilMs });
  }
  const quarantinedUntil = (node: string): number | undefined => quarantines[node]?.untilMs;

  const costs: Record<string, CostBreakdown> = {};
  // Candidates without a measured link are scored like this node's typical live peer.
  const unmeasuredRttMs = unmeasuredRttEstimateMs([...links.values()].filter((l) => candidates.get(l.node)?.cluster === self.cluster), now);
  const costOf = (c: MeshCandidate): number => {
    let b = costs[c.node];
    if (!b) {
      b = peerCost(self, c, links.get(c.node), now, unmeasuredRttMs);
      costs[c.node] = b;
    }
    return b.total;
  };
  const order = (a: Member, b: Member): number =>
    a.cost - b.cost || rendezvousWeight(self.node, b.candidate.node) - rendezvousWeight(self.node, a.candidate.node) || cmpStr(a.candidate.node, b.candidate.node);
  const member = (c: MeshCandidate): Member => ({ candidate: c, link: links.get(c.node), cost: costOf(c) });

  // 1-3: links that must close at once; the rest of the active and connecting links form the current set.
  const current: Member[] = [];
  const warmLinks: string[] = [];
  // Closed this round: not reconnected in the same breath.
  const closed = new Set<string>();
  for (const [node, link] of links) {
    const candidate = candidates.get(node);
    const open = link.state === "active" || link.state === "connecting" || link.state === "warm";
    if (!candidate) {
      if (open) actions.push({ kind: "disconnect", node, reason: "NotInSnapshot" });
      continue;
    }
    if (candidate.cluster !== self.cluster) {
      if (open) actions.push({ kind: "disconnect", node, reason: "OtherCluster" });
      continue;
    }
    if (link.state === "warm") {
      warmLinks.push(node);
      continue;
    }
    if (link.state === "failed") continue;
    const q = quarantinedUntil(node);
    if (q !== undefined && now < q) {
      actions.push({ kind: "disconnect", node, reason: "Quarantined" });
      closed.add(node);
      continue;
    }
    if (link.state === "active" && !isLinkLive(link, now)) {
      actions.push({ kind: "disconnect", node, reason: "Silent" });
      closed.add(node);
      continue;
    }
    if (link.state === "connecting" && now - link.sinceMs > HYSTERESIS.connectTimeoutMs) {
      actions.push({ kind: "disconnect", node, reason: "ConnectTimeout" });
      closed.add(node);
      continue;
    }
    current.push(member(candidate));
  }

  const inCurrent = new Set(current.map((m) => m.candidate.node));
  const pool: Member[] = [];
  for (const c of candidates.values()) {
    if (inCurrent.has(c.node) || closed.has(c.node)) continue;
    if (hardFilter(self, c, links.get(c.node), quarantinedUntil(c.node), now) !== undefined) continue;
    pool.push(member(c));
  }
  pool.sort(order);

  const needsRelay = !self.directlyReachable;
  const relayCount = (): number => current.filter((m) => m.candidate.relayCapable).length;
  // The worst member that may be removed (never the last relay of a node that needs one).
  const removable = (filter: (m: Member) => boolean = () => true): Member | undefined => {
    const sorted = current.filter(filter).sort(order).reverse();
    return sorted.find((m) => !(needsRelay && m.candidate.relayCapable && relayCount() <= 1));
  };
  const drop = (m: Member, reason: DisconnectReason): void => {
    current.splice(current.indexOf(m), 1);
    actions.push({ kind: "disconnect", node: m.candidate.node, reason });
  };
  const take = (m: Member, reason: ConnectReason, replaces?: string): void => {
    pool.splice(pool.indexOf(m), 1);
    current.push(m);
    actions.push({ kind: "connect", node: m.candidate.node, endpoints: m.candidate.endpoints, reason, ...(replaces ? { replaces } : {}) });
  };

  // 4. Never above max.
  while (current.length > max) {
    const worst = removable() ?? [...current].sort(order).reverse()[0];
    if (!worst) break;
    drop(worst, "OverMax");
  }

  // 5. Members failing a hard filter now: replace them, or drop them while above min.
  const degraded = current
    .map((m) => ({ m, reason: hardFilter(self, m.candidate, m.link, undefined, now) }))
    .filter((d): d is { m: Member; reason: Exclude<FilterReason, "Quarantined" | "OtherCluster"> } => d.reason !== undefined && d.reason !== "Quarantined" && d.reason !== "OtherCluster")
    .sort((a, b) => order(b.m, a.m));
  for (const { m, reason } of degraded) {
    const replacement = pool[0];
    if (needsRelay && m.candidate.relayCapable && relayCount() <= 1 && !replacement?.candidate.relayCapable) continue;
    if (replacement) {
      drop(m, reason);
      take(replacement, "ReplacesUnhealthy", m.candidate.node);
    } else if (current.length > min) {
      drop(m, reason);
    }
  }

  // 6. A node without a direct path keeps a relay-capable peer.
  if (needsRelay && relayCount() === 0) {
    const relay = pool.find((m) => m.candidate.relayCapable);
    if (relay) {
      if (current.length >= max) {
        const worst = removable();
        if (worst) drop(worst, "MakeRoomForRelay");
      }
      if (current.length < max) take(relay, "RelayNeeded");
    }
  }

  // 7. Fill to the target, spreading the first half over failure domains.
  const spread = Math.ceil(target / 2);
  while (current.length < target && pool.length > 0) {
    const domains = new Set(current.map((m) => failureDomain(m.candidate)));
    let next: Member | undefined;
    if (domains.size < spread) next = pool.find((m) => !domains.has(failureDomain(m.candidate)));
    next ??= pool[0];
    if (!next) break;
    take(next, current.length < min ? "BelowMin" : "Fill");
  }

  // 8. Hysteresis swaps.
  const swapTimesMs = memory.swapTimesMs.filter((t) => now - t < HYSTERESIS.swapWindowMs);
  const streaks: Record<string, number> = {};
  const streakSinceMs: Record<string, number> = {};
  const adjusted = (m: Member): number => m.cost - HYSTERESIS.incumbentBonus;
  const beats = (challenger: Member, incumbent: Member): boolean => {
    const inc = adjusted(incumbent);
    return challenger.cost <= inc - HYSTERESIS.absoluteMargin && challenger.cost <= (1 - HYSTERESIS.relativeMargin) * inc;
  };
  const worstIncumbent = [...current].sort(order).reverse()[0];
  if (worstIncumbent) {
    for (const c of pool) {
      if (!beats(c, worstIncumbent)) continue;
      const node = c.candidate.node;
      const previous = memory.streaks[node] ?? 0;
      streaks[node] = previous + 1;
      streakSinceMs[node] = previous > 0 ? (memory.streakSinceMs?.[node] ?? now) : now;
    }
  }
  const budget = self.nodeClass === "relay" || self.nodeClass === "core" ? HYSTERESIS.relaySwapsPerWindow : HYSTERESIS.swapsPerWindow;
  while (swapTimesMs.length < budget) {
    const challenger = pool.find((c) => (streaks[c.candidate.node] ?? 0) >= HYSTERESIS.streak && now - (streakSinceMs[c.candidate.node] ?? now) >= HYSTERESIS.streakMs);
    if (!challenger) break;
    const incumbent = removable(
      (m) =>
        m.link?.state === "active" &&
        now - m.link.sinceMs >= HYSTERESIS.minTenureMs &&
        // Swapping out the last relay needs a relay-capable challenger.
        !(needsRelay && m.candidate.relayCapable && relayCount() <= 1 && !challenger.candidate.relayCapable),
    );
    if (!incumbent || !beats(challenger, incumbent)) break;
    drop(incumbent, "Replaced");
    take(challenger, "BetterCandidate", incumbent.candidate.node);
    delete streaks[challenger.candidate.node];
    delete streakSinceMs[challenger.candidate.node];
    swapTimesMs.push(now);
  }

  // 9. Warm candidates: the best connectable candidates outside the active set, loss included in their cost.
  const activeSet = new Set(current.map((m) => m.candidate.node));
  const warmRanking: Member[] = [];
  for (const c of candidates.values()) {
    if (activeSet.has(c.node) || c.cluster !== self.cluster) continue;
    const reason = hardFilter(self, c, undefined, quarantinedUntil(c.node), now);
    if (reason === undefined) warmRanking.push(member(c));
  }
  warmRanking.sort(order);
  const warm = warmRanking.slice(0, Math.max(0, input.bounds.warm));
  const warmNames = new Set(warm.map((m) => m.candidate.node));
  for (const node of warmLinks) {
    if (!warmNames.has(node) && !activeSet.has(node)) actions.push({ kind: "disconnect", node, reason: "NoLongerWarm" });
  }
  for (const m of warm) {
    if (links.get(m.candidate.node)?.state !== "warm") actions.push({ kind: "probe", node: m.candidate.node, endpoints: m.candidate.endpoints });
  }

  return {
    actions,
    memory: { quarantines, streaks, streakSinceMs, swapTimesMs },
    active: [...activeSet].sort(cmpStr),
    warm: [...warmNames].sort(cmpStr),
    costs,
  };
}

/** The failure domain of a candidate: its region and zone (unknown parts count as one domain). */
export function failureDomain(c: Pick<MeshCandidate, "region" | "zone">): string {
  return `${c.region ?? "?"}/${c.zone ?? "?"}`;
}

function cmpStr(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// Re-exported so callers need one import for the trust window they must honour.
export const TRUST_WINDOW_MS = SCORING.trustWindowMs;
