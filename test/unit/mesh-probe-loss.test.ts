/**
 * Path loss reaches the loss estimate and the cost: probes ride a QUIC stream,
 * which retransmits, so a probe whose packet is dropped arrives late rather
 * than never; the estimate also counts the connection's lost packets
 * (agent/mesh/transport/probe-stats.ts). Pure window arithmetic, then real
 * QUIC links on loopback through the UDP proxy dropping 10 % each way.
 */
import assert from "node:assert/strict";
import { peerCost } from "../../agent/mesh/scoring.js";
import type { MeshCandidate, MeshSelf } from "../../agent/mesh/types.js";
import { PeerLinks } from "../../agent/mesh/transport/peer-links.js";
import { MIN_PACKETS, ProbeStats } from "../../agent/mesh/transport/probe-stats.js";
import { clusterCa, nodeCreds } from "../support/mesh-certs.js";
import { startUdpProxy, type UdpProxy } from "../support/udp-proxy.js";

const CLUSTER = "c1";

describe("mesh probe loss: packets lost on the wire reach the estimate", () => {
  it("reports the larger of probe and packet loss over the probe window, packets only past the minimum count", () => {
    const s = new ProbeStats(4);
    s.packetCounters(0, 0);
    s.sentProbe();
    s.answer(5);
    assert.equal(s.snapshot().packetLoss, undefined, "one sample: nothing to compare");
    s.packetCounters(MIN_PACKETS - 1, 5);
    assert.equal(s.snapshot().packetLoss, undefined, "below the minimum packet count");
    assert.equal(s.snapshot().loss, 0);
    s.packetCounters(100, 10);
    assert.equal(s.snapshot().packetLoss, 0.1);
    assert.equal(s.snapshot().loss, 0.1);
    // The window slides with the probes: window + 1 counter samples, the oldest dropped.
    for (let i = 1; i <= 4; i++) s.packetCounters(100 + i * 50, 10);
    assert.equal(s.snapshot().packetLoss, 0, "old losses leave the window");
    // Probe loss larger: it wins.
    s.sentProbe();
    s.timeout();
    assert.equal(s.snapshot().loss, 0.5);
    // Nonsense counters are ignored, never NaN.
    s.packetCounters(Number.NaN, 1);
    assert.ok(Number.isFinite(s.snapshot().loss));
  });

  describe("real QUIC links through a proxy dropping 10 % each way", function () {
    this.timeout(60_000);
    const ca = clusterCa(CLUSTER);
    const started: PeerLinks[] = [];
    let proxy: UdpProxy | undefined;
    after(async () => {
      await Promise.allSettled(started.map((l) => l.stop()));
      await proxy?.close();
    });

    it("the loss estimate reaches the wire's loss (probes alone stay at 0) and the cost's loss term saturates", async () => {
      const mk = async (node: string): Promise<PeerLinks> => {
        const c = nodeCreds(ca, CLUSTER, node);
        const l = await PeerLinks.start({ cluster: CLUSTER, node, keyPem: c.keyPem, certPem: c.certPem, caPem: ca.certPem, authorised: () => true, host: "127.0.0.1", probeIntervalMs: 100 });
        started.push(l);
        return l;
      };
      const a = await mk("a");
      const b = await mk("b");
      proxy = await startUdpProxy({ listenHost: "127.0.0.1", listenPort: 0, targetHost: "127.0.0.1", targetPort: b.port, announce: (l) => console.log(`      ${l}`) });
      await a.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: proxy.port }] });
      await proxy.set({ toTarget: { loss: 0.1 }, toClient: { loss: 0.1 } });
      // Windows of 20 probes of 100 ms: wait for the first full lossy window, then average five disjoint ones (one window holds ~80 packets).
      await new Promise((r) => setTimeout(r, 2500));
      const samples: number[] = [];
      for (let i = 0; i < 5; i++) {
        await new Promise((r) => setTimeout(r, 2100));
        samples.push(a.links()[0]?.probes.loss ?? Number.NaN);
      }
      const probes = a.links()[0]?.probes;
      const mean = samples.reduce((x, y) => x + y, 0) / samples.length;
      const st = await proxy.stats();
      console.log(`      after ${probes?.sent} probes: probe timeouts ${probes?.lost}; loss per window ${samples.map((x) => x.toFixed(3)).join(" ")} (mean ${mean.toFixed(3)}); proxy dropped ${st.dropped.toTarget} of ${st.dropped.toTarget + st.forwarded.toTarget} towards b`);
      assert.ok(probes !== undefined && probes.sent >= 100, "probes ran");
      assert.ok(st.dropped.toTarget > 0, "the proxy dropped datagrams");
      assert.ok(mean >= 0.05 && mean <= 0.2, `mean loss estimate ${mean} for 10 % dropped`);
      const self: MeshSelf = { node: "a", cluster: CLUSTER, nodeClass: "standard", directlyReachable: true };
      const cand: MeshCandidate = { node: "b", cluster: CLUSTER, endpoints: ["127.0.0.1:1"], nodeClass: "standard", roles: [], relayCapable: false, directlyReachable: true };
      const now = Date.now();
      const link = { node: "b", state: "active" as const, sinceMs: now - 1000, lastHeardMs: now, rttEwmaMs: 1, jitterMs: 0, loss: mean, failures: 0 };
      const cost = peerCost(self, cand, link, now);
      assert.ok(cost.loss >= 0.8, `loss term ${cost.loss}`);
    });
  });
});
