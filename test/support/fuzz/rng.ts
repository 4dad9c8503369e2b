/** A small helper over the shared seeded PRNG, so generators read as choices. */
import { seeded } from "../random.js";

/** Seeded choices; the same seed gives the same sequence of choices. */
export class Rng {
  private readonly next: () => number;

  constructor(readonly seed: number) {
    this.next = seeded(seed);
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.next();
  }

  /** Uniform integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** One element of a non-empty list. */
  pick<T>(items: readonly T[]): T {
    const v = items[Math.floor(this.next() * items.length)];
    if (v === undefined) throw new Error("picking from an empty list");
    return v;
  }

  /** One element, chosen with the given weights (`[weight, value]` pairs). */
  weighted<T>(items: readonly (readonly [number, T])[]): T {
    const total = items.reduce((s, [w]) => s + w, 0);
    let r = this.next() * total;
    for (const [w, v] of items) {
      r -= w;
      if (r < 0) return v;
    }
    const last = items[items.length - 1];
    if (last === undefined) throw new Error("choosing from an empty list");
    return last[1];
  }

  /** A short string of characters from `alphabet`. */
  string(alphabet: string, min: number, max: number): string {
    const chars = [...alphabet];
    let s = "";
    for (let i = this.int(min, max); i > 0; i--) s += this.pick(chars);
    return s;
  }

  /** `n` random bytes. */
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(this.next() * 256);
    return b;
  }
}
