/**
 * The agent loops' reconnect backoff (agent/sync/backoff.ts): full jitter,
 * i.e. the delay before retry n is uniform in [0, min(cap, base * 2^n)).
 * Drawn with a seeded generator, so the statistical checks below (bounds,
 * the range really covered, mean about half the ceiling, even buckets) are
 * deterministic; their margins are generous all the same.
 */
import assert from "node:assert/strict";
import { Backoff, backoffCeiling, fullJitterDelay } from "../../agent/sync/backoff.js";
import { seeded } from "../support/random.js";

const BASE = 100;
const CAP = 10_000;
/** Just below 1: the largest value a random source may return. */
const TOP = 1 - 2 ** -52;

describe("agent backoff: exponential with full jitter", () => {
  it("spreads delays uniformly over [0, min(cap, base * 2^n)) for every attempt", () => {
    for (const seed of [1, 42, 2025]) {
      const random = seeded(seed);
      for (let attempt = 1; attempt <= 10; attempt++) {
        const ceiling = Math.min(CAP, BASE * 2 ** attempt);
        const draws = 20_000;
        const buckets = new Array<number>(10).fill(0);
        let min = Infinity;
        let max = -Infinity;
        let sum = 0;
        for (let i = 0; i < draws; i++) {
          const d = fullJitterDelay(attempt, BASE, CAP, random);
          assert.ok(Number.isInteger(d) && d >= 0 && d < ceiling, `attempt ${attempt}: ${d} outside [0, ${ceiling})`);
          min = Math.min(min, d);
          max = Math.max(max, d);
          sum += d;
          buckets[Math.floor((d / ceiling) * 10)]!++;
        }
        const label = `seed ${seed}, attempt ${attempt}, ceiling ${ceiling}`;
        // The whole window is used, both ends included.
        assert.ok(max >= ceiling * 0.99, `${label}: max ${max} does not approach the ceiling`);
        assert.ok(min <= ceiling * 0.01, `${label}: min ${min} does not approach 0`);
        // Mean about half the ceiling (expected (ceiling - 1) / 2; standard error ~0.2% of the ceiling).
        const mean = sum / draws;
        assert.ok(Math.abs(mean / ceiling - 0.5) < 0.02, `${label}: mean ${mean.toFixed(1)} is not about half the ceiling`);
        // Even tenths: 2,000 expected in each (standard deviation ~42); 20% is far outside chance.
        for (const [i, n] of buckets.entries()) assert.ok(Math.abs(n - draws / 10) < draws / 10 / 5, `${label}: tenth ${i} holds ${n} of ${draws}`);
      }
    }
  });

  it("doubles the ceiling per failure up to the cap, without overflow", () => {
    const ceilings = Array.from({ length: 10 }, (_, i) => backoffCeiling(i + 1, BASE, CAP));
    assert.deepEqual(ceilings, [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000, 10_000]);
    assert.equal(backoffCeiling(0, BASE, CAP), BASE);
    assert.equal(backoffCeiling(-3, BASE, CAP), BASE);
    assert.equal(backoffCeiling(1e9, BASE, CAP), CAP);
    assert.equal(backoffCeiling(1e9, 500, Number.MAX_SAFE_INTEGER), 500 * 2 ** 30, "the exponent is bounded, the product stays finite");
    // The extreme draws: 0 and just under the ceiling.
    for (let attempt = 1; attempt <= 10; attempt++) {
      assert.equal(fullJitterDelay(attempt, BASE, CAP, () => 0), 0);
      assert.equal(fullJitterDelay(attempt, BASE, CAP, () => TOP), ceilings[attempt - 1]! - 1);
    }
  });

  it("counts consecutive failures, draws under each failure's ceiling, and starts over after a success", () => {
    const b = new Backoff({ baseMs: BASE, capMs: 1000, random: () => TOP });
    assert.equal(b.attempt, 0);
    const run = (n: number) => Array.from({ length: n }, () => b.fail());
    assert.deepEqual(
      run(6).map((s) => [s.attempt, s.ceilingMs, s.delayMs]),
      [
        [1, 200, 199],
        [2, 400, 399],
        [3, 800, 799],
        [4, 1000, 999],
        [5, 1000, 999],
        [6, 1000, 999],
      ],
    );
    assert.equal(b.attempt, 6);
    b.succeed();
    assert.equal(b.attempt, 0);
    assert.deepEqual(
      run(2).map((s) => [s.attempt, s.ceilingMs]),
      [
        [1, 200],
        [2, 400],
      ],
    );
    // A per-draw cap (the heartbeat loop's min(cap, 3 intervals)) bounds that draw only.
    assert.deepEqual([b.fail(300).ceilingMs, b.fail().ceilingMs], [300, 1000]);
  });

  it("draws each delay from the injected source, so two agents with different sources spread apart", () => {
    const values = [0.25, 0.5, 0.75, 0.1];
    let i = 0;
    const b = new Backoff({ baseMs: BASE, capMs: CAP, random: () => values[i++]! });
    assert.deepEqual(
      values.map(() => b.fail().delayMs),
      [50, 200, 600, 160],
    );
    // Two agents failing in lockstep: their delays differ at every attempt but one in a thousand.
    const a1 = new Backoff({ baseMs: BASE, capMs: CAP, random: seeded(7) });
    const a2 = new Backoff({ baseMs: BASE, capMs: CAP, random: seeded(8) });
    let same = 0;
    for (let k = 0; k < 1000; k++) {
      if (k % 8 === 0) {
        a1.succeed();
        a2.succeed();
      }
      if (a1.fail().delayMs === a2.fail().delayMs) same++;
    }
    assert.ok(same < 20, `${same} of 1000 equal delays`);
  });
});
