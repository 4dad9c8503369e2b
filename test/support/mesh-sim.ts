/**
 * A simulated transport for the peer manager's tests and benchmark: applies
 * the manager's actions to a link table and probes peers whose true RTT,
 * loss and liveness the test sets, keeping an RTT EWMA (alpha 0.2) and a
 * jitter (EWMA of absolute deviation) like the QUIC transport will. The
 * randomness is seeded; no real time passes.
 */
import { emptyPeerMemory, evaluatePeers, type PeerAction, type PeerDecision, type PeerManagerMemory } from "../../agent/mesh/peer-manager.js";
import type { ClassBounds, LinkObservation, MeshCandidate, MeshNodeClass, MeshSelf } from "../../agent/mesh/types.js";

/** The simulated truth about one peer. */
export interface PeerTruth {
  rttMs: number;
  loss: number;
  alive: boolean;
}

/** A clock tests move by hand. */
export class FakeClock {
  constructor(private t = 1_000_000) {}
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

/** The link table of one node, driven by the manager's actions and simulated probes. */
export class SimTransport {
  readonly links = new Map<string, LinkObservation>();

  /**
   * @param truth the true RTT/loss/liveness per peer (mutable by the test)
   * @param random a seeded [0, 1) generator
   * @param noise relative RTT noise per sample (0.3: uniform within ±30 %)
   */
  constructor(
    readonly truth: Map<string, PeerTruth>,
    private readonly random: () => number,
    private readonly noise = 0,
  ) {}

  /** The link table as the manager reads it. */
  table(): LinkObservation[] {
    return [...this.links.values()].map((l) => ({ ...l }));
  }

  /** Applies actions: connects succeed at once to a live peer, fail otherwise. */
  apply(actions: readonly PeerAction[], now: number): void {
    for (const a of actions) {
      const prev = this.links.get(a.node);
      if (a.kind === "disconnect") {
        // Statistics survive a close (failures feed quarantine and cost).
        if (prev) this.links.set(a.node, { ...prev, state: "failed", sinceMs: now });
      } else if (a.kind === "connect" || a.kind === "probe") {
        const alive = this.truth.get(a.node)?.alive ?? false;
        const state = a.kind === "connect" ? "active" : "warm";
        if (alive) {
          this.links.set(a.node, { ...(prev ?? {}), node: a.node, state, failures: 0, sinceMs: now, lastHeardMs: now });
          this.sample(a.node, now);
        } else {
          this.links.set(a.node, { ...(prev ?? {}), node: a.node, state: "failed", failures: (prev?.failures ?? 0) + 1, lastFailureMs: now, sinceMs: now });
        }
      }
    }
  }

  /** One keepalive round: every active or warm link to a live peer gets an RTT sample. */
  probe(now: number): void {
    for (const link of this.links.values()) {
      if (link.state !== "active" && link.state !== "warm") continue;
      if (this.truth.get(link.node)?.alive) this.sample(link.node, now);
    }
  }

  private sample(node: string, now: number): void {
    const link = this.links.get(node);
    const truth = this.truth.get(node);
    if (!link || !truth) return;
    const rtt = truth.rttMs * (1 + this.noise * (2 * this.random() - 1));
    const ewma = link.rttEwmaMs === undefined ? rtt : 0.8 * link.rttEwmaMs + 0.2 * rtt;
    const jitter = link.rttEwmaMs === undefined ? 0 : 0.8 * (link.jitterMs ?? 0) + 0.2 * Math.abs(rtt - link.rttEwmaMs);
    this.links.set(node, { ...link, rttEwmaMs: ewma, jitterMs: jitter, loss: truth.loss, lastHeardMs: now });
  }
}

/** A candidate with sensible defaults. */
export function candidate(node: string, over: Partial<MeshCandidate> = {}): MeshCandidate {
  return {
    node,
    cluster: "eu-1",
    nodeClass: "standard" as MeshNodeClass,
    endpoints: [`${node}.example:4433`],
    region: "eu",
    zone: "eu-a",
    roles: [],
    relayCapable: false,
    directlyReachable: true,
    load: 0.2,
    ...over,
  };
}

/** An active link heard just now with the given RTT and loss. */
export function activeLink(node: string, now: number, over: Partial<LinkObservation> = {}): LinkObservation {
  return { node, state: "active", rttEwmaMs: 20, jitterMs: 1, loss: 0, lastHeardMs: now, failures: 0, sinceMs: now - 10 * 60_000, ...over };
}

/** One node's peer manager driven over simulated time: probes every 2.5 s, evaluations every 10 s. */
export class SimNode {
  memory: PeerManagerMemory = emptyPeerMemory();
  readonly decisions: PeerDecision[] = [];

  constructor(
    readonly self: MeshSelf,
    readonly bounds: ClassBounds,
    public candidates: MeshCandidate[],
    readonly transport: SimTransport,
    readonly clock: FakeClock,
  ) {}

  /** One evaluation at the current time; its actions are applied at once. */
  evaluate(): PeerDecision {
    const now = this.clock.now();
    const d = evaluatePeers({ self: this.self, bounds: this.bounds, candidates: this.candidates, links: this.transport.table(), now }, this.memory);
    this.memory = d.memory;
    this.transport.apply(d.actions, now);
    this.decisions.push(d);
    return d;
  }

  /** Runs `ms` of simulated time: a probe round every 2.5 s, an evaluation every 10 s. */
  run(ms: number): PeerDecision[] {
    const out: PeerDecision[] = [];
    for (let t = 2_500; t <= ms; t += 2_500) {
      this.clock.advance(2_500);
      this.transport.probe(this.clock.now());
      if (t % 10_000 === 0) out.push(this.evaluate());
    }
    return out;
  }
}

/** The actions of some decisions, flattened. */
export function actionsOf(decisions: readonly PeerDecision[]): PeerAction[] {
  return decisions.flatMap((d) => d.actions);
}
