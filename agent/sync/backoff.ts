/**
 * Reconnect delays of the agent's loops: exponential backoff with full
 * jitter (AWS architecture blog, "Exponential Backoff And Jitter"): the
 * delay is uniform in [0, min(cap, base * 2^attempt)]. Ten thousand agents
 * that lost the control plane at the same instant thus spread their
 * reconnects over the whole window instead of arriving in waves.
 */

/** The upper bound of the delay before retry number `attempt`: min(cap, base * 2^attempt). */
export function backoffCeiling(attempt: number, baseMs: number, capMs: number): number {
  return Math.min(capMs, baseMs * 2 ** Math.min(Math.max(attempt, 0), 30));
}

/** Delay before retry number `attempt` (1-based); `random` is injectable for tests. */
export function fullJitterDelay(attempt: number, baseMs: number, capMs: number, random: () => number = Math.random): number {
  return Math.floor(random() * backoffCeiling(attempt, baseMs, capMs));
}

/** One failure's retry plan. */
export interface BackoffStep {
  /** Consecutive failures so far, this one included (1-based). */
  attempt: number;
  ceilingMs: number;
  delayMs: number;
}

/**
 * The state of one loop's backoff: each failure doubles the ceiling (up to
 * the cap) and draws a delay under it; a success starts over.
 */
export class Backoff {
  private failures = 0;

  constructor(private readonly o: { baseMs: number; capMs: number; random?: () => number }) {}

  /** Consecutive failures since the last success. */
  get attempt(): number {
    return this.failures;
  }

  /** Records a failure; `capMs` overrides the cap for this draw (it may follow a changing interval). */
  fail(capMs: number = this.o.capMs): BackoffStep {
    this.failures++;
    return { attempt: this.failures, ceilingMs: backoffCeiling(this.failures, this.o.baseMs, capMs), delayMs: fullJitterDelay(this.failures, this.o.baseMs, capMs, this.o.random) };
  }

  /** Records a success: the next failure is attempt 1 again. */
  succeed(): void {
    this.failures = 0;
  }
}

/** Sleeps `ms` or until signal aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
