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
 */

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
  /** Lost fraction in the window (0..1): the larger of the probes' and the packets' (when counted). */
  loss: number;
  /** Packets declared lost / sent over the window, when the caller feeds packet counters and enough were sent. */
  packetLoss?: number;
  /** Probes sent, answered and counted lost since the link came up. */
  sent: number;
  answered: number;
  lost: number;
  /** The last RTT sample, ms. */
  lastRttMs: number | undefined;
}

/** Tracks probes of one link. */
export class ProbeStats {
  private rtt: number | undefined;
  private last: number | undefined;
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

  /** The current figures. */
  snapshot(): ProbeSnapshot {
    const missed = this.outcomes.filter((o) => !o).length;
    const probeLoss = this.outcomes.length === 0 ? 0 : missed / this.outcomes.length;
    const first = this.packets[0];
    const last = this.packets[this.packets.length - 1];
    const sentIn = first === undefined || last === undefined ? 0 : last.sent - first.sent;
    const packetLoss = first !== undefined && last !== undefined && sentIn >= MIN_PACKETS ? Math.min(1, Math.max(0, (last.lost - first.lost) / sentIn)) : undefined;
    return {
      rttMs: this.rtt,
      jitterMs: this.jitter,
      loss: Math.max(probeLoss, packetLoss ?? 0),
      ...(packetLoss === undefined ? {} : { packetLoss }),
      sent: this.sent,
      answered: this.answered,
      lost: this.lost,
      lastRttMs: this.last,
    };
  }
}
