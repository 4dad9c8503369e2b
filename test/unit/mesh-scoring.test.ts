import assert from "node:assert/strict";
import {
  COST_WEIGHTS,
  failureTerm,
  hardFilter,
  isLinkLive,
  latencyTerm,
  nextQuarantine,
  peerCost,
  quarantineDurationMs,
  regionTerm,
  rendezvousWeight,
  roleTerm,
  SCORING,
  unmeasuredRttEstimateMs,
  type QuarantineRecord,
} from "../../agent/mesh/scoring.js";
import type { MeshSelf } from "../../agent/mesh/types.js";
import { PROBE_INTERVAL_MS } from "../../agent/mesh/transport/probe-stats.js";
import { activeLink, candidate } from "../support/mesh-sim.js";

const NOW = 10_000_000;
const self: MeshSelf = { node: "self", cluster: "eu-1", nodeClass: "standard", region: "eu", zone: "eu-a", directlyReachable: true };

describe("mesh scoring", () => {
  it("an unmeasured candidate is scored as the median live measured link (at most 100 ms), else 100 ms", () => {
    const now = 1_000_000;
    assert.equal(unmeasuredRttEstimateMs([], now), 100);
    const links = [activeLink("a", now, { rttEwmaMs: 2, jitterMs: 0 }), activeLink("b", now, { rttEwmaMs: 10, jitterMs: 1 }), activeLink("c", now, { rttEwmaMs: 80, jitterMs: 0 })];
    assert.equal(unmeasuredRttEstimateMs(links, now), 12);
    // Silent links and links without a measurement do not count.
    assert.equal(unmeasuredRttEstimateMs([...links, activeLink("d", now, { rttEwmaMs: 1, lastHeardMs: now - 10_000 }), { node: "e", state: "connecting", failures: 0, sinceMs: now }], now), 12);
    assert.equal(unmeasuredRttEstimateMs([activeLink("a", now, { rttEwmaMs: 400, jitterMs: 0 })], now), 100);
    const self: MeshSelf = { node: "self", cluster: "eu-1", nodeClass: "standard", directlyReachable: true };
    assert.equal(peerCost(self, candidate("x"), undefined, now, 12).latency, latencyTerm(12));
    assert.equal(peerCost(self, candidate("x"), undefined, now).latency, latencyTerm(100));
  });


  it("the weights sum to 1, so every cost lies in [0, 1]", () => {
    const sum = Object.values(COST_WEIGHTS).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(sum - 1) < 1e-12);
    const worst = peerCost({ ...self, region: "us" }, candidate("p", { load: 1, nodeClass: "thin" }), activeLink("p", NOW, { rttEwmaMs: 5000, loss: 1, failures: 50, lastFailureMs: NOW }), NOW);
    assert.ok(worst.total <= 1 && worst.total > 0.99, `worst cost ${worst.total}`);
  });

  const latency: Array<[number, number]> = [
    [0, 0],
    [10, Math.log(2) / Math.log(51)],
    [100, Math.log(11) / Math.log(51)],
    [500, 1],
    [5000, 1],
  ];
  for (const [rtt, want] of latency) {
    it(`L of an effective RTT of ${rtt} ms is ${want.toFixed(3)}`, () => {
      assert.ok(Math.abs(latencyTerm(rtt) - want) < 1e-12);
    });
  }

  it("L scores RTT EWMA plus twice the jitter, and an unmeasured peer as 100 ms", () => {
    const c = candidate("p");
    assert.equal(peerCost(self, c, activeLink("p", NOW, { rttEwmaMs: 20, jitterMs: 5 }), NOW).latency, latencyTerm(30));
    assert.equal(peerCost(self, c, undefined, NOW).latency, latencyTerm(100));
  });

  it("P saturates at 5 % loss; U is load squared; unknown load counts as 0.5", () => {
    const c = candidate("p", { load: 0.6 });
    assert.ok(Math.abs(peerCost(self, c, activeLink("p", NOW, { loss: 0.025 }), NOW).loss - 0.5) < 1e-12);
    assert.equal(peerCost(self, c, activeLink("p", NOW, { loss: 0.1 }), NOW).loss, 1);
    assert.ok(Math.abs(peerCost(self, c, undefined, NOW).load - 0.36) < 1e-12);
    const { load: _omit, ...noLoad } = c;
    assert.equal(peerCost(self, noLoad, undefined, NOW).load, 0.25);
  });

  it("F is 1 - e^(-f/2) and the failure count halves every 10 minutes", () => {
    assert.equal(failureTerm(0, NOW, NOW), 0);
    assert.ok(Math.abs(failureTerm(2, NOW, NOW) - (1 - Math.exp(-1))) < 1e-12);
    assert.ok(Math.abs(failureTerm(4, NOW - 10 * 60_000, NOW) - (1 - Math.exp(-1))) < 1e-12);
    assert.ok(failureTerm(4, NOW - 60 * 60_000, NOW) < 0.05);
  });

  const regions: Array<{ name: string; peer: { region?: string; zone?: string }; want: number }> = [
    { name: "same zone", peer: { region: "eu", zone: "eu-a" }, want: 0 },
    { name: "same region, other zone", peer: { region: "eu", zone: "eu-b" }, want: 0.3 },
    { name: "same region, no zone", peer: { region: "eu" }, want: 0.3 },
    { name: "other region", peer: { region: "us", zone: "eu-a" }, want: 1 },
    { name: "unknown region", peer: {}, want: 1 },
  ];
  for (const r of regions) {
    it(`R is ${r.want} for a peer in the ${r.name}`, () => assert.equal(regionTerm(self, r.peer), r.want));
  }

  it("Q prefers relay and core peers, accepts standard ones, shuns thin ones", () => {
    assert.deepEqual(
      (["core", "relay", "standard", "thin"] as const).map((nodeClass) => roleTerm({ nodeClass })),
      [0, 0, 0.5, 1],
    );
  });

  const filters: Array<{ name: string; run: () => string | undefined; want: string | undefined }> = [
    { name: "a healthy peer passes", run: () => hardFilter(self, candidate("p"), activeLink("p", NOW), undefined, NOW), want: undefined },
    { name: "another cluster is refused", run: () => hardFilter(self, candidate("p", { cluster: "us-1" }), undefined, undefined, NOW), want: "OtherCluster" },
    { name: "loss of 20 % is refused", run: () => hardFilter(self, candidate("p"), activeLink("p", NOW, { loss: 0.2 }), undefined, NOW), want: "HighLoss" },
    { name: "loss of 19 % passes", run: () => hardFilter(self, candidate("p"), activeLink("p", NOW, { loss: 0.19 }), undefined, NOW), want: undefined },
    { name: "load of 0.95 is refused", run: () => hardFilter(self, candidate("p", { load: 0.95 }), undefined, undefined, NOW), want: "Overloaded" },
    { name: "a quarantined peer is refused", run: () => hardFilter(self, candidate("p"), undefined, NOW + 1, NOW), want: "Quarantined" },
    { name: "an expired quarantine passes", run: () => hardFilter(self, candidate("p"), undefined, NOW, NOW), want: undefined },
    {
      name: "two nodes neither of which accepts connections are refused",
      run: () => hardFilter({ ...self, directlyReachable: false }, candidate("p", { directlyReachable: false }), undefined, undefined, NOW),
      want: "NoDirectPath",
    },
  ];
  for (const f of filters) {
    it(`hard filter: ${f.name}`, () => assert.equal(f.run(), f.want));
  }

  it("a link is live only when active and heard within the trust window: two probe periods and 1.5 s (7.5 s)", () => {
    assert.equal(SCORING.trustWindowMs, 2 * PROBE_INTERVAL_MS + 1_500);
    assert.equal(SCORING.trustWindowMs, 7_500);
    assert.equal(isLinkLive(activeLink("p", NOW, { lastHeardMs: NOW - 7_500 }), NOW), true);
    assert.equal(isLinkLive(activeLink("p", NOW, { lastHeardMs: NOW - 7_501 }), NOW), false);
    assert.equal(isLinkLive(activeLink("p", NOW, { state: "warm" }), NOW), false);
    assert.equal(isLinkLive(undefined, NOW), false);
  });

  it("quarantines last 30 s x 2^n, capped at 30 minutes", () => {
    assert.deepEqual(
      [0, 1, 2, 3, 4, 5, 6, 7, 50].map((n) => quarantineDurationMs(n) / 1000),
      [30, 60, 120, 240, 480, 960, 1800, 1800, 1800],
    );
  });

  it("a peer is quarantined at its third failure, again at each new failure after expiry, and forgiven by a success", () => {
    let record: QuarantineRecord | undefined;
    let t = NOW;
    const observe = (failures: number): boolean => {
      const r = nextQuarantine(record, activeLink("p", t, { state: "failed", failures, lastFailureMs: t }), t);
      record = r.record;
      return r.started;
    };
    assert.equal(observe(1), false);
    assert.equal(observe(2), false);
    const lengths: number[] = [];
    let failures = 3;
    for (let i = 0; i < 8; i++) {
      assert.equal(observe(failures), true, `quarantine ${i} starts`);
      const length = (record?.untilMs ?? 0) - t;
      lengths.push(length / 1000);
      t += length / 2;
      assert.equal(observe(failures), false, "no new quarantine while one runs");
      t += length / 2;
      assert.equal(observe(failures), false, "no new quarantine for the same failures");
      failures++;
    }
    assert.deepEqual(lengths, [30, 60, 120, 240, 480, 960, 1800, 1800]);
    assert.equal(observe(0), false);
    assert.equal(record, undefined, "a success forgets the history");
    assert.equal(observe(3), true);
    assert.equal(((record as QuarantineRecord | undefined)?.untilMs ?? 0) - t, 30_000, "the backoff starts over");
  });

  it("the rendezvous weight is stable and differs between observers", () => {
    assert.equal(rendezvousWeight("a", "b"), rendezvousWeight("a", "b"));
    assert.notEqual(rendezvousWeight("a", "b"), rendezvousWeight("b", "a"));
  });
});
