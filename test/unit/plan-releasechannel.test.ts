/**
 * The ReleaseChannel controller's pure rollout plan
 * (controllers/releasechannel/plan.ts): rings in order behind a health gate
 * and a soak, maxUnavailable, the failure threshold that halts a rollout and
 * returns the ring's nodes to stable while later rings never receive the
 * version, blocklist, pin, pause, and stable only from a completed rollout.
 * A small simulation plays the agents: a node assigned a version reports
 * `running` on it (or `rolled_back` for the versions marked bad).
 */
import assert from "node:assert/strict";
import {
  emptyRolloutState,
  maxUnavailableCount,
  planRollout,
  type ChannelPolicy,
  type NodeObservation,
  type PlanOutput,
  type RolloutState,
} from "../../controllers/releasechannel/plan.js";

const RINGS = [
  { name: "canary", nodes: ["a1", "a2"], version: "current" as const, soakMs: 1000 },
  { name: "early", nodes: ["b1", "b2"], version: "current" as const, soakMs: 1000 },
  { name: "rest", nodes: ["c1", "c2"], version: "current" as const, soakMs: 0 },
];
const ALL = RINGS.flatMap((r) => r.nodes);

function policy(over: Partial<ChannelPolicy> = {}): ChannelPolicy {
  return { current: "1.0.0", rings: RINGS, maxUnavailable: 1, minHealthyPercent: 100, maxFailures: 1, paused: false, blocklist: [], ...over };
}

/** A fleet of simulated agents: they install what they are assigned; bad versions roll back. */
class Fleet {
  nodes = new Map<string, NodeObservation>();
  state: RolloutState = emptyRolloutState();
  now = 0;
  /** Every version each node was ever assigned. */
  seen = new Map<string, Set<string>>();
  constructor(
    readonly bad = new Set<string>(),
    readonly verified = new Set(["1.0.0", "2.0.0", "3.0.0"]),
  ) {
    for (const n of ALL) this.nodes.set(n, { nodeReady: true, instancesReady: true });
  }
  step(p: ChannelPolicy, advanceMs = 500): PlanOutput {
    const out = planRollout({ policy: p, verified: this.verified, nodes: this.nodes, state: this.state, now: this.now });
    this.state = out.state;
    for (const [n, v] of out.assignments) {
      const o = this.nodes.get(n) as NodeObservation;
      o.assigned = v;
      if (v !== undefined) {
        const s = this.seen.get(n) ?? new Set<string>();
        s.add(v);
        this.seen.set(n, s);
        if (o.report?.version === v && o.report.state !== "running") continue; // a failure report stays
        o.report = this.bad.has(v) ? { state: "rolled_back", version: v, reason: "health check failed" } : { state: "running", version: v };
      }
    }
    this.now += advanceMs;
    return out;
  }
  run(p: ChannelPolicy, until: (o: PlanOutput) => boolean, max = 100): PlanOutput {
    for (let i = 0; i < max; i++) {
      const o = this.step(p);
      if (until(o)) return o;
    }
    assert.fail(`no convergence in ${max} steps: ${JSON.stringify(this.state)}`);
  }
  assigned(): Record<string, string | undefined> {
    return Object.fromEntries([...this.nodes].map(([n, o]) => [n, o.assigned]));
  }
}

describe("ReleaseChannel rollout plan", () => {
  it("maxUnavailable counts and percentages", () => {
    assert.equal(maxUnavailableCount(2, 10), 2);
    assert.equal(maxUnavailableCount("25%", 10), 3);
    assert.equal(maxUnavailableCount("0%", 10), 1);
    assert.equal(maxUnavailableCount(0, 10), 1);
  });

  it("a good release reaches the rings in order behind the gate and the soak, then becomes stable", () => {
    const f = new Fleet();
    const first = f.step(policy());
    // Only one canary node moves at first (maxUnavailable 1); later rings wait.
    assert.deepEqual(f.assigned(), { a1: "1.0.0", a2: undefined, b1: undefined, b2: undefined, c1: undefined, c2: undefined });
    assert.equal(first.rings[1]?.phase, "Pending");
    let sawEarlyBeforeCanaryComplete = false;
    const done = f.run(policy(), (o) => {
      if (o.rings[0]?.phase !== "Complete" && f.nodes.get("b1")?.assigned !== undefined) sawEarlyBeforeCanaryComplete = true;
      return o.phase === "Complete";
    });
    assert.equal(sawEarlyBeforeCanaryComplete, false);
    assert.deepEqual(Object.values(f.assigned()), ALL.map(() => "1.0.0"));
    assert.equal(f.state.stable, "1.0.0");
    assert.equal(f.state.lastCompleted, "1.0.0");
    assert.ok(done.decisions.some((d) => d.type === "RolloutComplete" && d.version === "1.0.0"));
  });

  it("the soak restarts when health drops and the ring completes only after soakTime healthy", () => {
    const f = new Fleet();
    f.run(policy(), (o) => o.rings[0]?.phase === "Soaking");
    const since = f.state.rings.canary?.healthySince as number;
    (f.nodes.get("a2") as NodeObservation).instancesReady = false;
    let o = f.step(policy(), 2000);
    assert.equal(o.rings[0]?.phase, "Progressing");
    assert.equal(f.state.rings.canary?.healthySince, undefined);
    (f.nodes.get("a2") as NodeObservation).instancesReady = true;
    o = f.step(policy(), 600);
    assert.equal(o.rings[0]?.phase, "Soaking");
    assert.ok(Number(f.state.rings["canary"]?.healthySince) > since);
    o = f.step(policy(), 600);
    assert.equal(o.rings[0]?.phase, "Soaking");
    o = f.step(policy(), 600);
    assert.equal(o.rings[0]?.phase, "Complete");
  });

  it("a bad release halts in the first ring, its nodes go back to stable, later rings never receive it", () => {
    const f = new Fleet(new Set(["2.0.0"]));
    f.run(policy(), (o) => o.phase === "Complete");
    const p = policy({ current: "2.0.0", maxUnavailable: 2 });
    const halted = f.run(p, (o) => o.phase === "Halted");
    assert.equal(f.state.halted?.version, "2.0.0");
    assert.equal(f.state.halted?.ring, "canary");
    assert.ok(halted.decisions.some((d) => d.type === "Halt" && d.ring === "canary"));
    assert.ok(halted.decisions.some((d) => d.type === "RollBack" && d.version === "1.0.0" && d.nodes?.length === 2));
    // Keep reconciling: nothing else ever gets 2.0.0.
    for (let i = 0; i < 20; i++) f.step(p);
    assert.deepEqual(Object.values(f.assigned()), ALL.map(() => "1.0.0"));
    for (const n of ["b1", "b2", "c1", "c2"]) assert.equal(f.seen.get(n)?.has("2.0.0"), false, n);
    assert.equal(f.state.stable, "1.0.0");
    assert.deepEqual(
      f.step(p).rings.map((r) => r.phase),
      ["Halted", "Blocked", "Blocked"],
    );
    // A new target resumes the rollout.
    f.run(policy({ current: "3.0.0" }), (o) => o.phase === "Complete");
    assert.equal(f.state.stable, "3.0.0");
  });

  it("the threshold counts failures: maxFailures 2 lets one failure pass", () => {
    const f = new Fleet();
    f.run(policy(), (o) => o.phase === "Complete");
    const p = policy({ current: "2.0.0", maxFailures: 2, maxUnavailable: 2, minHealthyPercent: 50 });
    f.step(p);
    (f.nodes.get("a1") as NodeObservation).report = { state: "failed", version: "2.0.0" };
    const o = f.step(p);
    assert.notEqual(o.phase, "Halted");
    assert.equal(o.rings[0]?.failed, 1);
    (f.nodes.get("a2") as NodeObservation).report = { state: "fenced", version: "2.0.0" };
    assert.equal(f.step(p).phase, "Halted");
  });

  it("blocklist: a blocklisted target never moves, nodes on it go back to stable", () => {
    const f = new Fleet();
    f.run(policy(), (o) => o.phase === "Complete");
    f.run(policy({ current: "2.0.0" }), (o) => o.phase === "Complete");
    assert.equal(f.state.stable, "2.0.0");
    // Promote stable back to the older completed version, then blocklist 2.0.0.
    const p = policy({ current: "2.0.0", stable: "1.0.0", blocklist: ["2.0.0"] });
    const o = f.step(p);
    assert.deepEqual(Object.values(f.assigned()), ALL.map(() => "1.0.0"));
    assert.ok(o.rings.every((r) => r.phase === "Blocked"));
    assert.ok(o.decisions.some((d) => d.type === "RollBack"));
  });

  it("stable only from a completed rollout; refused once", () => {
    const f = new Fleet();
    f.run(policy(), (o) => o.phase === "Complete");
    const o = f.step(policy({ stable: "3.0.0" }));
    assert.equal(f.state.stable, "1.0.0");
    assert.ok(o.decisions.some((d) => d.type === "Refuse" && d.version === "3.0.0"));
    assert.equal(f.step(policy({ stable: "3.0.0" })).decisions.filter((d) => d.type === "Refuse").length, 0);
  });

  it("only verified versions are assigned: an unverified target waits", () => {
    const f = new Fleet(new Set(), new Set(["1.0.0"]));
    f.run(policy(), (o) => o.phase === "Complete");
    const o = f.step(policy({ current: "2.0.0" }));
    assert.equal(o.rings[0]?.phase, "WaitingForRelease");
    assert.deepEqual(Object.values(f.assigned()), ALL.map(() => "1.0.0"));
    const pinned = f.step(policy({ pin: { version: "2.0.0" } }));
    assert.ok(pinned.decisions.some((d) => d.type === "Refuse"));
    assert.deepEqual(Object.values(f.assigned()), ALL.map(() => "1.0.0"));
  });

  it("pin assigns one version everywhere at once, overriding rings; unpinning returns to the rollout", () => {
    const f = new Fleet();
    f.run(policy(), (o) => o.phase === "Complete");
    const o = f.step(policy({ current: "2.0.0", pin: { version: "3.0.0", reason: "incident 7" } }));
    assert.equal(o.phase, "Pinned");
    assert.deepEqual(Object.values(f.assigned()), ALL.map(() => "3.0.0"));
    assert.ok(o.decisions.some((d) => d.type === "Pin" && d.message.includes("incident 7")));
    f.step(policy({ current: "2.0.0" }));
    assert.equal(f.nodes.get("c1")?.assigned, "3.0.0", "a rollout node keeps an assignable version until its ring moves");
    f.run(policy({ current: "2.0.0" }), (x) => x.phase === "Complete");
    assert.deepEqual(Object.values(f.assigned()), ALL.map(() => "2.0.0"));
  });

  it("pause stops new assignments but not a halt's rollback; resume continues", () => {
    const f = new Fleet(new Set(["2.0.0"]));
    f.run(policy(), (o) => o.phase === "Complete");
    f.step(policy({ current: "3.0.0" }));
    assert.equal(f.nodes.get("a1")?.assigned, "3.0.0");
    for (let i = 0; i < 10; i++) assert.equal(f.step(policy({ current: "3.0.0", paused: true })).phase, "Paused");
    assert.equal(f.nodes.get("a2")?.assigned, "1.0.0");
    f.run(policy({ current: "3.0.0" }), (o) => o.phase === "Complete");
    // Paused while a bad version fails: it still halts and rolls back.
    f.bad.add("2.0.0");
    f.step(policy({ current: "2.0.0" }));
    assert.equal(f.nodes.get("a1")?.assigned, "2.0.0");
    const o = f.step(policy({ current: "2.0.0", paused: true }));
    assert.equal(o.phase, "Halted");
    assert.equal(f.nodes.get("a1")?.assigned, "3.0.0");
  });

  it("candidate rings: the canary runs the candidate, the others current; a failing candidate never leaves the canary", () => {
    const rings = [{ ...RINGS[0], version: "candidate" as const }, RINGS[1], RINGS[2]].map((r) => r as (typeof RINGS)[number]);
    const f = new Fleet(new Set(["3.0.0"]));
    f.run(policy({ rings }), (o) => o.phase === "Complete");
    const o = f.run(policy({ rings, candidate: "3.0.0" }), (x) => x.phase === "Halted");
    assert.equal(o.rings[0]?.phase, "Halted");
    assert.deepEqual(f.assigned(), Object.fromEntries(ALL.map((n) => [n, "1.0.0"])));
    assert.equal(f.state.stable, "1.0.0");
  });

  it("records promotion history, bounded", () => {
    const f = new Fleet(new Set(), new Set(Array.from({ length: 80 }, (_, i) => `1.0.${i}`)));
    for (let i = 0; i < 60; i++) f.run(policy({ current: `1.0.${i}`, maxUnavailable: "100%", rings: RINGS.map((r) => ({ ...r, soakMs: 0 })) }), (o) => o.phase === "Complete");
    assert.equal(f.state.history.length, 50);
    assert.equal(f.state.completed.length, 50);
    assert.deepEqual(f.state.history[0], { version: "1.0.59", to: "stable", at: f.state.history[0]?.at });
  });
});
