/**
 * The agents' `updates` reports as the ReleaseChannel controller reads them
 * (lib/state/rollouts.ts updateItems): whatever an agent sends through the
 * generic status endpoint, only well-formed, bounded items reach the plan;
 * anything else is dropped, never thrown. Seeded fuzz prints its seed.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { updateItems } from "../../lib/state/rollouts.js";
import { updatesBody } from "../../agent/update/reporter.js";

describe("update report items", () => {
  it("keeps well-formed items and what the agent's reporter sends", () => {
    const body = updatesBody([
      { workload: "web", channel: "web-prod", component: "web", state: "rolled_back", since: "2026-12-05T00:00:00.000Z", blocked: ["2.0.0"], current: { version: "1.0.0", slot: "1.0.0-aaaaaaaaaaaa" }, target: { version: "2.0.0", sha256: "a".repeat(64), length: 1, slot: "x" }, reason: "HealthCheckFailed: no" },
    ]);
    assert.deepEqual(updateItems(body), [{ workload: "web", channel: "web-prod", state: "rolled_back", version: "2.0.0", previousVersion: "1.0.0", reason: "HealthCheckFailed: no", since: "2026-12-05T00:00:00.000Z" }]);
  });

  it("drops malformed, oversized and wrongly typed input", () => {
    for (const body of [null, 1, "x", [], {}, { workloads: "no" }, { workloads: {} }, { workloads: [null, 1, "x", []] }]) assert.deepEqual(updateItems(body), []);
    assert.deepEqual(updateItems({ workloads: [{ workload: 1, channel: "c", state: "running" }] }), []);
    assert.deepEqual(updateItems({ workloads: [{ workload: "w", channel: "c", state: "x".repeat(33) }] }), []);
    const long = updateItems({ workloads: [{ workload: "w", channel: "c", state: "running", version: "v".repeat(65), reason: { nested: { deeper: [] } } }] });
    assert.deepEqual(long, [{ workload: "w", channel: "c", state: "running", version: undefined, previousVersion: undefined, reason: undefined, since: undefined }]);
    assert.equal(updateItems({ workloads: Array.from({ length: 1000 }, () => ({ workload: "w", channel: "c", state: "running" })) }).length, 256);
  });

  it("fuzz: random JSON never throws", () => {
    const seed = process.env.FUZZ_SEED ?? randomBytes(4).toString("hex");
    console.log(`      update report fuzz seed ${seed}`);
    let s = Number.parseInt(seed, 16) >>> 0;
    const rnd = (): number => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
    const value = (depth: number): unknown => {
      const k = Math.floor(rnd() * 7);
      if (depth > 4 || k === 0) return rnd() < 0.5 ? null : Math.floor(rnd() * 1e6);
      if (k === 1) return "s".repeat(Math.floor(rnd() * 80));
      if (k === 2) return Array.from({ length: Math.floor(rnd() * 4) }, () => value(depth + 1));
      const o: Record<string, unknown> = {};
      for (const key of ["workloads", "workload", "channel", "state", "version", "reason", "since"]) if (rnd() < 0.5) o[key] = value(depth + 1);
      return o;
    };
    for (let i = 0; i < 2000; i++) {
      const out = updateItems(value(0));
      for (const x of out) assert.equal(typeof x.state, "string");
    }
  });
});
