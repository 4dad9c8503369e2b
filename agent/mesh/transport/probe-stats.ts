/**
 * Keepalive probe statistics of one link: RTT as an EWMA (a = 0.2), jitter
 * as the EWMA of the absolute difference between consecutive samples (RFC
 * 3550's estimator uses 1/16; the mesh uses the same a as the RTT so both
 * react within a few probes), and loss over a sliding window of the last
 * probes. Pure: the caller supplies times.
 *
 * Probes ride a QUIC stream, which retransmits: a probe whose packet is lost
 * on the wire arrives late, not never, so probe timeouts miss path loss. The
 * caller may also feed the connection's packet counters (sent, declared
 * lost) at each probe; the loss then reported is the larger of the two
 * estimates over the same window of probes (`packetLoss` counted only over at
 * least `MIN_PACKETS` packets, so a quiet link's few packets do not swing it).
 *
 * On an idle link one side probes and the other answers (docs/mesh.md,
 * "Probes"): the prober's pings carry its own last sample and measured loss,
 * which the answering side records with `peerSample`. Its RTT and jitter
 * then follow the same samples as the prober's, and its loss is the larger
 * of its own and the prober's. Only a side's own figures are carried, so a
 * figure never echoes back and forth between the two.
 */

/**
 * How often the dialling side of an idle link probes it (the issue allows
 * 2-3 s; 3 s sends a sixth fewer datagrams than 2.5 s, docs/decisions.md).
 */
export const PROBE_INTERVAL_MS = 3_000;

/** EWMA weight of a new sample. */
export const RTT_EWMA_ALPHA = 0.2;

/** Fewest packets sent in the window before the packet loss estimate counts. */
export const MIN_PACKETS = 30;

/** A snapshot of a link's probe statistics. */
export interface ProbeSnapshot {
  /** EWMA of RTT, ms; undefined before the first answer. */
  rttMs: number | undefined;
  /** EWMA of |sample - previous sample|, ms. */
  jitterMs: number;
  /** Lost fraction (0..1): the larger of the probes' and the packets' (when counted) in the window, and the peer's carried one. */
  loss: number;
  /** Packets declared lost / sent over the window, when the caller feeds packet counters and enough were sent. */
  packetLoss?: number;
  /** Probes sent, answered and counted lost since the link came up. */
  sent: number;
  answered: number;
  lost: number;
  /** The last RTT sample, ms (this side's own or the peer's carried one). */
  lastRttMs: number | undefined;
  /** The loss the peer last reported measuring, when it carried one. */
  peerLoss?: number;
}

/** Tracks probes of one link. */
export class ProbeStats {
  private rtt: number | undefined;
  private last: number | undefined;
  /** This side's own last sample (the one its pings carry). */
  private ownLast: number | undefined;
  private peerLoss: number | undefined;
  private jitter = 0;
  private sent = 0;
  private answered = 0;
  private lost = 0;
  /** Outcomes of the last `window` settled probes: true = answered. */
  private readonly outcomes: boolean[] = [];
  /** Cumulative packet counters at each of the last `window` + 1 probes. */
  private readonly packets: Array<{ sent: number; lost: number }> = [];

  constructor(private readonly window = 20) {}

  /** Counts a probe sent. */
  sentProbe(): void {
    this.sent += 1;
  }

  /** Records the connection's cumulative packet counters (call once per probe). */
  packetCounters(sent: number, lost: number): void {
    if (!(Number.isFinite(sent) && Number.isFinite(lost))) return;
    this.packets.push({ sent, lost });
    if (this.packets.length > this.window + 1) this.packets.shift();
  }

  /** Records an answered probe with its RTT; returns the new EWMA. */
  answer(rttMs: number): number {
    this.answered += 1;
    this.settle(true);
    this.ownLast = rttMs;
    return this.sample(rttMs);
  }

  /** Records the RTT sample and loss the peer measured and carried on its ping; returns the new EWMA. */
  peerSample(rttMs: number, loss: number): number {
    this.peerLoss = loss;
    return this.sample(rttMs);
  }

  private sample(rttMs: number): number {
    if (this.last !== undefined) this.jitter += RTT_EWMA_ALPHA * (Math.abs(rttMs - this.last) - this.jitter);
    this.last = rttMs;
    this.rtt = this.rtt === undefined ? rttMs : this.rtt + RTT_EWMA_ALPHA * (rttMs - this.rtt);
    return this.rtt;
  }

  /** Records a probe that was not answered in time. */
  timeout(): void {
    this.lost += 1;
    this.settle(false);
  }

  private settle(ok: boolean): void {
    this.outcomes.push(ok);
    if (this.outcomes.length > this.window) this.outcomes.shift();
  }

  /** What this side's pings carry: its own last sample and measured loss, once it has a sample. */
  carried(): { r: number; l: number } | undefined {
    if (this.ownLast === undefined) return undefined;
    return { r: Math.round(this.ownLast * 1000) / 1000, l: Math.round(this.measured().loss * 1e4) / 1e4 };
  }

  /** This side's own loss estimate: the larger of its probes' and its packets' (when counted). */
  private measured(): { loss: number; packetLoss: number | undefined } {
    const missed = this.outcomes.filter((o) => !o).length;
    const probeLoss = this.outcomes.length === 0 ? 0 : missed / this.outcomes.length;
    const first = this.packets[0];
    const last = this.packets[this.packets.length - 1];
    const sentIn = first === undefined || last === undefined ? 0 : last.sent - first.sent;
    const packetLoss = first !== undefined && last !== undefined && sentIn >= MIN_PACKETS ? Math.min(1, Math.max(0, (last.lost - first.lost) / sentIn)) : undefined;
    return { loss: Math.max(probeLoss, packetLoss ?? 0), packetLoss };
  }

  /** The current figures. */
  snapshot(): ProbeSnapshot {
    const { loss, packetLoss } = this.measured();
    return {
      rttMs: this.rtt,
      jitterMs: this.jitter,
      loss: Math.max(loss, this.peerLoss ?? 0),
      ...(packetLoss === undefined ? {} : { packetLoss }),
      sent: this.sent,
      answered: this.answered,
      lost: this.lost,
      lastRttMs: this.last,
      ...(this.peerLoss === undefined ? {} : { peerLoss: this.peerLoss }),
    };
  }
}
