/**
 * Warm probing (agent/mesh/warm-probe.ts): the scheduling bounds (in flight,
 * spacing, expiry, order), the observations handed to the peer manager and
 * what they change in its choice, and the probe itself against a fake
 * transport (announce, samples, close, keep).
 */
import assert from "node:assert/strict";
import { emptyPeerMemory, evaluatePeers } from "../../agent/mesh/peer-manager.js";
import type { LinkObservation, MeshCandidate, MeshSelf } from "../../agent/mesh/types.js";
import { measureWarm, planWarmProbes, pruneWarmResults, summariseSamples, WARM_PROBE, WARM_PROBE_METHOD, warmObservations, type WarmResult } from "../../agent/mesh/warm-probe.js";

const T0 = 1_000_000;
const res = (node: string, measuredAtMs: number, rttMs = 5): WarmResult => ({ node, rttMs, jitterMs: 0, loss: 0, measuredAtMs });

describe("mesh warm probing", () => {
  describe("planWarmProbes", () => {
    const base = { wanted: ["a", "b", "c"], linked: new Set<string>(), inFlight: new Set<string>(), results: new Map<string, WarmResult>(), lastStartMs: undefined, now: T0 };

    it("starts one probe at a time, never measured first, in the peer manager's order", () => {
      assert.deepEqual(planWarmProbes(base), ["a"]);
      assert.deepEqual(planWarmProbes({ ...base, results: new Map([["a", res("a", T0 - 1000)]]) }), ["b"]);
    });

    it("never exceeds the in-flight bound nor starts within the spacing of the last start", () => {
      assert.deepEqual(planWarmProbes({ ...base, inFlight: new Set(["x"]) }), []);
      assert.deepEqual(planWarmProbes({ ...base, lastStartMs: T0 - WARM_PROBE.spacingMs + 1 }), []);
      assert.deepEqual(planWarmProbes({ ...base, lastStartMs: T0 - WARM_PROBE.spacingMs }), ["a"]);
      // A looser bound still starts one per step: the probe rate is bounded by the spacing.
      assert.deepEqual(planWarmProbes(base, { maxInFlight: 3, spacingMs: 0, ttlMs: 1000 }), ["a"]);
    });

    it("skips linked nodes, nodes in flight and fresh results; re-probes the oldest expired one first", () => {
      assert.deepEqual(planWarmProbes({ ...base, linked: new Set(["a"]), inFlight: new Set() }), ["b"]);
      const results = new Map([
        ["a", res("a", T0 - 10_000)],
        ["b", res("b", T0 - WARM_PROBE.ttlMs - 5)],
        ["c", res("c", T0 - WARM_PROBE.ttlMs - 50)],
      ]);
      assert.deepEqual(planWarmProbes({ ...base, results }), ["c"]);
      assert.deepEqual(planWarmProbes({ ...base, results: new Map([["a", res("a", T0)], ["b", res("b", T0)], ["c", res("c", T0)]]) }), []);
      assert.deepEqual(planWarmProbes({ ...base, wanted: [] }), []);
    });

    it("bounds probe starts over a long run of evaluations (seeded)", () => {
      const seed = 20261205;
      console.log(`      seed=${seed}`);
      let x = seed;
      const rand = (): number => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32);
      const results = new Map<string, WarmResult>();
      const inFlight = new Map<string, number>();
      let lastStartMs: number | undefined;
      let starts = 0;
      let maxAtOnce = 0;
      const wanted = ["a", "b", "c", "d", "e"];
      for (let now = T0; now < T0 + 600_000; now += 1000) {
        for (const [n, done] of inFlight) if (now >= done) (inFlight.delete(n), results.set(n, res(n, now)));
        pruneWarmResults(results, now);
        for (const n of planWarmProbes({ wanted, linked: new Set(), inFlight: new Set(inFlight.keys()), results, lastStartMs, now })) {
          inFlight.set(n, now + 500 + Math.floor(rand() * 8000));
          lastStartMs = now;
          starts++;
        }
        maxAtOnce = Math.max(maxAtOnce, inFlight.size);
      }
      assert.ok(maxAtOnce <= WARM_PROBE.maxInFlight);
      assert.ok(starts <= 600_000 / WARM_PROBE.spacingMs, `${starts} starts in 10 minutes`);
      // Five candidates, each measurement kept 3 minutes: each re-measured a few times, not continuously.
      assert.ok(starts >= 5 && starts <= 5 * (600_000 / WARM_PROBE.ttlMs + 1), `${starts} starts`);
    });
  });

  it("hands unexpired results to the peer manager as warm observations, never for linked nodes", () => {
    const results = new Map([
      ["a", { ...res("a", T0 - 1000, 3), jitterMs: 1, loss: 1 / 3 }],
      ["b", res("b", T0 - WARM_PROBE.ttlMs)],
      ["c", res("c", T0)],
    ]);
    assert.deepEqual(warmObservations(results, new Set(["c"]), T0), [{ node: "a", state: "warm", rttEwmaMs: 3, jitterMs: 1, loss: 1 / 3, lastHeardMs: T0 - 1000, failures: 0, sinceMs: T0 - 1000 }]);
    pruneWarmResults(results, T0);
    assert.deepEqual([...results.keys()], ["a", "c"]);
  });

  it("summarises samples: median RTT, mean consecutive difference, unanswered share", () => {
    assert.deepEqual(summariseSamples([10, 30, 20], 3), { rttMs: 20, jitterMs: 15, loss: 0 });
    assert.deepEqual(summariseSamples([8], 3), { rttMs: 8, jitterMs: 0, loss: 2 / 3 });
    assert.equal(summariseSamples([], 3), undefined);
  });

  it("a warm measurement worse than the typical live link keeps a candidate out; a better one never scores below it", () => {
    const self: MeshSelf = { node: "n", cluster: "c", nodeClass: "standard", directlyReachable: true };
    const cand = (node: string): MeshCandidate => ({ node, cluster: "c", nodeClass: "standard", endpoints: ["10.0.0.1:1"], roles: [], relayCapable: false, directlyReachable: true });
    const candidates = ["p1", "p2", "w1", "w2"].map(cand);
    const now = T0;
    const active = (node: string, rtt: number): LinkObservation => ({ node, state: "active", rttEwmaMs: rtt, jitterMs: 0, loss: 0, lastHeardMs: now, failures: 0, sinceMs: now - 60_000 });
    const fill = (warm: Map<string, WarmResult>): string[] =>
      evaluatePeers({ self, bounds: { min: 3, max: 3, warm: 1 }, candidates, links: [active("p1", 10), active("p2", 10), ...warmObservations(warm, new Set(), now)], now }, emptyPeerMemory())
        .actions.filter((a) => a.kind === "connect")
        .map((a) => a.node);
    const first = fill(new Map())[0] as string;
    const other = first === "w1" ? "w2" : "w1";
    // Measured at 300 ms, the candidate the rendezvous order would pick is passed over.
    assert.deepEqual(fill(new Map([[first, res(first, now - 1000, 300)]])), [other]);
    // Measured at 1 ms it is scored like the median live link (10 ms), not better: no edge from one calm moment.
    const d = evaluatePeers({ self, bounds: { min: 2, max: 2, warm: 2 }, candidates, links: [active("p1", 10), active("p2", 10), ...warmObservations(new Map([["w1", res("w1", now - 1000, 1)]]), new Set(), now)], now }, emptyPeerMemory());
    assert.equal(d.costs.w1?.total, d.costs.w2?.total);
  });

  describe("measureWarm", () => {
    const fake = (answers: boolean[], failConnect = false) => {
      const calls: string[] = [];
      let i = 0;
      return {
        calls,
        t: {
          connect: async (target: { node: string }) => {
            calls.push(`connect ${target.node}`);
            if (failConnect) throw new Error("refused");
          },
          send: (node: string, method: string) => (calls.push(`send ${node} ${method}`), true),
          request: async (node: string, method: string) => {
            calls.push(`request ${node} ${method}`);
            if (!answers[i++]) throw new Error("timeout");
            return {};
          },
          close: async (node: string) => void calls.push(`close ${node}`),
        },
      };
    };
    const target = { node: "w", endpoints: [{ host: "10.0.0.1", port: 1 }] };

    it("links, announces itself as a warm probe, takes the samples and closes", async () => {
      const f = fake([true, false, true]);
      const r = await measureWarm(f.t, target, "ping", () => T0);
      assert.equal(r.node, "w");
      assert.equal(r.loss, 1 / 3);
      assert.equal(r.measuredAtMs, T0);
      assert.deepEqual(f.calls, ["connect w", `send w ${WARM_PROBE_METHOD}`, "request w ping", "request w ping", "request w ping", "close w"]);
    });

    it("fails without an answer (the link closed all the same) or without a link", async () => {
      const silent = fake([false, false, false]);
      await assert.rejects(measureWarm(silent.t, target, "ping", () => T0), /no answer/);
      assert.equal(silent.calls.at(-1), "close w");
      await assert.rejects(measureWarm(fake([], true).t, target, "ping", () => T0), /refused/);
    });
  });
});
