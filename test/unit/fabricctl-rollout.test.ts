/**
 * `fabricctl rollout status` rendering (cli/commands/rollout.ts): one
 * progress bar per ring, failures marked, the halt and pin shown.
 */
import assert from "node:assert/strict";
import { progressBar, renderRollout, settledExit } from "../../cli/commands/rollout.js";

describe("fabricctl rollout status rendering", () => {
  it("draws bars: updated, failed, remaining, bounded by the total", () => {
    assert.equal(progressBar(0, 0, 4, 8), "[........]");
    assert.equal(progressBar(2, 1, 4, 8), "[####xx..]");
    assert.equal(progressBar(4, 0, 4, 8), "[########]");
    assert.equal(progressBar(9, 9, 4, 8), "[########]");
    assert.equal(progressBar(0, 0, 0, 4), "[    ]");
  });

  it("renders phase, versions, halt, pin, rings and agent states", () => {
    const text = renderRollout({
      metadata: { name: "web", generation: 3 },
      spec: { cluster: "east", component: "web", current: "3.0.0", pin: { version: "2.0.0", reason: "incident" }, blocklist: ["2.9.0"] },
      status: {
        observedGeneration: 2,
        phase: "Halted",
        stable: "2.0.0",
        halted: { version: "3.0.0", ring: "canary", reason: "2 failed update(s) in ring canary" },
        rings: [
          { name: "canary", targetVersion: "3.0.0", phase: "Halted", total: 2, updated: 0, failed: 2 },
          { name: "rest", targetVersion: "3.0.0", phase: "Blocked", total: 10, updated: 0, failed: 0 },
        ],
        nodeStates: [{ state: "running", nodes: 12 }],
        promotionHistory: [{ version: "2.0.0", to: "stable", time: "2026-12-05T00:00:00Z" }],
      },
    });
    assert.match(text, /phase: +Halted/);
    assert.match(text, /PINNED to 2\.0\.0 \(incident\)/);
    assert.match(text, /halted: +3\.0\.0 in ring canary: 2 failed/);
    assert.match(text, /blocklist: 2\.9\.0/);
    assert.match(text, /has not seen the latest spec/);
    assert.match(text, /canary \[x{24}\] +0\/2 +3\.0\.0 +Halted, 2 failed/);
    assert.match(text, /rest +\[\.{24}\] +0\/10 +3\.0\.0 +Blocked/);
    assert.match(text, /agents: +running 12/);
    assert.match(text, /promoted: +2\.0\.0 -> stable/);
  });

  it("--watch settles on Complete, Idle, Pinned (0) and Halted (1), only once the controller saw the latest spec", () => {
    const at = (phase: string, observedGeneration: number | undefined, generation = 2) => ({
      metadata: { name: "web", generation },
      spec: { cluster: "east", component: "web" },
      status: { phase, ...(observedGeneration !== undefined ? { observedGeneration } : {}) },
    });
    assert.equal(settledExit(at("Complete", 2)), 0);
    assert.equal(settledExit(at("Idle", 2)), 0);
    assert.equal(settledExit(at("Pinned", 3)), 0);
    assert.equal(settledExit(at("Halted", 2)), 1);
    assert.equal(settledExit(at("Progressing", 2)), undefined);
    assert.equal(settledExit(at("Paused", 2)), undefined);
    assert.equal(settledExit(at("Complete", 1)), undefined, "a Complete of the previous spec is not the end");
    assert.equal(settledExit(at("Complete", undefined)), undefined);
    assert.equal(settledExit({ metadata: {} }), undefined);
  });
});
