/**
 * Token-bucket rate limiting per client address. Two buckets guard the
 * enrollment API: all requests, and failed token checks (a brute-force
 * guard that refills slowly).
 */

/** Bucket size and refill rate. */
export interface RateLimit {
  burst: number;
  perSecond: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/** See the module comment. */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  constructor(
    readonly limit: RateLimit,
    private readonly now: () => number = Date.now,
  ) {}

  /** Takes one token for key; returns 0 when allowed, else the seconds to wait. */
  take(key: string): number {
    const t = this.now();
    let b = this.buckets.get(key);
    if (b === undefined) {
      if (this.buckets.size > 100_000) this.prune(t);
      b = { tokens: this.limit.burst, at: t };
      this.buckets.set(key, b);
    } else {
      b.tokens = Math.min(this.limit.burst, b.tokens + ((t - b.at) / 1000) * this.limit.perSecond);
      b.at = t;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / this.limit.perSecond));
  }

  /** Whether key has a token left, without taking one. */
  peek(key: string): boolean {
    const b = this.buckets.get(key);
    if (b === undefined) return true;
    return Math.min(this.limit.burst, b.tokens + ((this.now() - b.at) / 1000) * this.limit.perSecond) >= 1;
  }

  private prune(t: number): void {
    for (const [k, b] of this.buckets) if (b.tokens + ((t - b.at) / 1000) * this.limit.perSecond >= this.limit.burst) this.buckets.delete(k);
  }
}

/** Parses "BURST/PER_SECOND", e.g. "200/50". */
export function parseRateLimit(text: string): RateLimit {
  const m = /^(\d+)\/(\d+(?:\.\d+)?)$/.exec(text);
  if (m === null || m[1] === undefined || m[2] === undefined) throw new Error(`invalid rate limit ${JSON.stringify(text)} (want BURST/PER_SECOND)`);
  return { burst: Number(m[1]), perSecond: Number(m[2]) };
}
