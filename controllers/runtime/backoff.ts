/**
 * Backoff policies: full-jitter exponential backoff for reconnect loops and a
 * per-key exponential rate limiter for workqueue retries.
 */

/** A source of uniform random numbers in [0, 1); injectable for tests. */
export type RandomSource = () => number;

/**
 * Full-jitter exponential backoff (AWS architecture blog): a uniform random
 * delay in [0, min(maxMs, baseMs * 2^attempt)]. Spreads reconnect storms of
 * many clients after a server restart. attempt counts from 0.
 */
export function fullJitter(attempt: number, baseMs: number, maxMs: number, random: RandomSource = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 52));
  return Math.floor(random() * ceiling);
}

/** Decides how long a key waits before its next retry. */
export interface RateLimiter {
  /** The delay before the next retry of key; counts one more failure. */
  when(key: string): number;
  /** Clears the failure count of key (call after a success). */
  forget(key: string): void;
  /** Failures counted for key since the last forget. */
  numRequeues(key: string): number;
}

/** Options of ExponentialRateLimiter. */
export interface ExponentialRateLimiterOptions {
  /** Delay after the first failure (default 5 ms, like client-go). */
  baseDelayMs?: number;
  /** Upper bound of the delay (default 5 minutes). */
  maxDelayMs?: number;
  /**
   * Extra random delay as a fraction of the exponential delay (default 0.1:
   * up to +10%). Keeps retries of keys that failed together from firing in
   * lockstep while the delay still grows monotonically with failures.
   */
  jitter?: number;
  random?: RandomSource;
}

/**
 * Per-key exponential backoff: baseDelay * 2^failures, capped at maxDelay,
 * plus jitter (client-go's ItemExponentialFailureRateLimiter with jitter).
 */
export class ExponentialRateLimiter implements RateLimiter {
  private readonly failures = new Map<string, number>();
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly jitter: number;
  private readonly random: RandomSource;

  constructor(opts: ExponentialRateLimiterOptions = {}) {
    this.baseDelayMs = opts.baseDelayMs ?? 5;
    this.maxDelayMs = opts.maxDelayMs ?? 5 * 60_000;
    this.jitter = opts.jitter ?? 0.1;
    this.random = opts.random ?? Math.random;
    if (this.baseDelayMs <= 0 || this.maxDelayMs < this.baseDelayMs) {
      throw new Error("rate limiter needs 0 < baseDelayMs <= maxDelayMs");
    }
  }

  when(key: string): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    const exp = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** Math.min(n, 52));
    return Math.min(this.maxDelayMs, Math.round(exp * (1 + this.jitter * this.random())));
  }

  forget(key: string): void {
    this.failures.delete(key);
  }

  numRequeues(key: string): number {
    return this.failures.get(key) ?? 0;
  }
}
