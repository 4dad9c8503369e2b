/**
 * Keepalive probe statistics of one link: RTT as an EWMA (a = 0.2), jitter
 * as the EWMA of the absolute difference between consecutive samples (RFC
 * 3550's estimator uses 1/16; the mesh uses the same a as the RTT so both
 * react within a few probes), and loss over a sliding window of the last
 * probes. Pure: the caller supplies times.
 */

/** EWMA weight of a new sample. */
export const RTT_EWMA_ALPHA = 0.2;

/** A snapshot of a link's probe statistics. */
export interface ProbeSnapshot {
  /** EWMA of RTT, ms; undefined before the first answer. */
  rttMs: number | undefined;
  /** EWMA of |sample - previous sample|, ms. */
  jitterMs: number;
  /** Lost fraction of the probes in the window (0..1). */
  loss: number;
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

  constructor(private readonly window = 20) {}

  /** Counts a probe sent. */
  sentProbe(): void {
    this.sent += 1;
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
    return {
      rttMs: this.rtt,
      jitterMs: this.jitter,
      loss: this.outcomes.length === 0 ? 0 : missed / this.outcomes.length,
      sent: this.sent,
      answered: this.answered,
      lost: this.lost,
      lastRttMs: this.last,
    };
  }
}
