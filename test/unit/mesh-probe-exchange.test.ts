import assert from "node:assert/strict";
import { describe, it } from "mocha";
import { PeerLinks } from "../../agent/mesh/transport/peer-links.js";
import { clusterCa, nodeCreds } from "../support/mesh-certs.js";

const CLUSTER = "c1";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("mesh probes on an idle link", () => {
  // Both sides probe every link; a side answers a ping with its own probe when at least half its
  // period has passed, so the two sides' probes share one exchange (ping, pong + ping, pong).
  // Seen from outside: a side with a 300 ms period facing one with 200 ms probes at the faster
  // pace (every ping it answers comes 200 ms after its last probe), where on its own it would
  // send two for the other's three.
  it("answers a ping with this side's own probe once half its period has passed", async function () {
    this.timeout(30_000);
    const ca = clusterCa(CLUSTER);
    const started: PeerLinks[] = [];
    try {
      const agent = async (node: string, probeIntervalMs: number) => {
        const c = nodeCreds(ca, CLUSTER, node);
        const l = await PeerLinks.start({ cluster: CLUSTER, node, keyPem: c.keyPem, certPem: c.certPem, caPem: ca.certPem, authorised: () => true, host: "127.0.0.1", probeIntervalMs });
        started.push(l);
        return l;
      };
      const a = await agent("a", 200);
      const b = await agent("b", 300);
      await a.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: b.port }] });
      await sleep(1000);
      const sent = () => [a.links()[0]?.probes.sent ?? 0, b.links()[0]?.probes.sent ?? 0] as const;
      const [a0, b0] = sent();
      await sleep(4000);
      const [a1, b1] = sent();
      const ratio = (b1 - b0) / (a1 - a0);
      assert.ok(a1 - a0 >= 8, `a sent only ${a1 - a0} probes in 4 s`);
      assert.ok(ratio >= 0.85, `b sent ${b1 - b0} probes for a's ${a1 - a0} (alone it would send about 2 for 3)`);
      assert.equal(a.links()[0]?.probes.loss, 0);
      assert.equal(b.links()[0]?.probes.loss, 0);
    } finally {
      await Promise.allSettled(started.map((l) => l.stop()));
    }
  });
});
