import assert from "node:assert/strict";
import { afterEach, describe, it } from "mocha";
import { PeerLinks } from "../../agent/mesh/transport/peer-links.js";
import { eventually } from "../support/controlplane.js";
import { clusterCa, nodeCreds } from "../support/mesh-certs.js";

const CLUSTER = "c1";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("mesh probes on an idle link", () => {
  // The dialling side probes; its pings carry its last RTT sample and measured loss, which the
  // accepting side answers and takes as its own figures: one exchange (ping, pong, ACK) per period.
  // The accepting side probes itself only beside the dialler's first ping (no figures yet) and
  // when the dialler's pings stop coming for 1.5 of its own periods.
  const ca = clusterCa(CLUSTER);
  const started: PeerLinks[] = [];
  const agent = async (node: string, probeIntervalMs: number, onMessage?: (from: string, method: string, payload: unknown) => void): Promise<PeerLinks> => {
    const c = nodeCreds(ca, CLUSTER, node);
    const l = await PeerLinks.start({ cluster: CLUSTER, node, keyPem: c.keyPem, certPem: c.certPem, caPem: ca.certPem, authorised: () => true, host: "127.0.0.1", probeIntervalMs, ...(onMessage ? { onMessage } : {}) });
    started.push(l);
    return l;
  };
  afterEach(async () => {
    await Promise.allSettled(started.splice(0).map((l) => l.stop()));
  });

  it("only the dialler probes; the accepting side reports the dialler's RTT, jitter and loss and stays alive", async function () {
    this.timeout(30_000);
    const a = await agent("a", 200);
    const b = await agent("b", 200);
    const heardByB: number[] = [];
    b.on("rtt", (e) => heardByB.push(e.sampleMs));
    await a.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: b.port }] });
    await sleep(1000);
    const sent = () => [a.links()[0]?.probes.sent ?? 0, b.links()[0]?.probes.sent ?? 0] as const;
    const [a0, b0] = sent();
    const heard0 = heardByB.length;
    await sleep(3000);
    const [a1, b1] = sent();
    assert.ok(a1 - a0 >= 8, `a sent only ${a1 - a0} probes in 3 s`);
    assert.equal(b1 - b0, 0, `b sent ${b1 - b0} probes beside a's ${a1 - a0}`);
    // b heard every ping that carried figures (an rtt event each: the mesh loop's "heard").
    assert.ok(heardByB.length - heard0 >= a1 - a0 - 1, `b had ${heardByB.length - heard0} samples for a's ${a1 - a0} probes`);
    const pa = a.links()[0]!.probes;
    const pb = b.links()[0]!.probes;
    assert.ok(pb.rttMs !== undefined && pb.rttMs > 0, `b has no RTT: ${JSON.stringify(pb)}`);
    // b's samples are a's, one exchange late: the EWMAs are close (loopback, well under a millisecond apart or 50 %).
    assert.ok(Math.abs(pb.rttMs - pa.rttMs!) < Math.max(1, pa.rttMs! / 2), `a ${pa.rttMs} ms, b ${pb.rttMs} ms`);
    assert.equal(pa.loss, 0);
    assert.equal(pb.loss, 0);
    assert.equal(pb.peerLoss, 0);
  });

  it("the accepting side probes itself when the dialler's pings come slower than 1.5 of its periods", async function () {
    this.timeout(30_000);
    const a = await agent("a", 2000);
    const b = await agent("b", 200);
    await a.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: b.port }] });
    const bSent = () => b.links()[0]?.probes.sent ?? 0;
    await eventually(async () => (a.links()[0]?.probes.answered ?? 0) >= 2 || undefined, 10_000, 50);
    const b0 = bSent();
    await sleep(2000);
    // a pings every 2 s; between two pings b's watchdog (200 ms period) finds the last one older than 300 ms about 8 times.
    assert.ok(bSent() - b0 >= 5, `b probed ${bSent() - b0} times in 2 s while a's pings came every 2 s`);
    assert.ok((b.links()[0]?.probes.answered ?? 0) >= 5, "b's own probes were not answered");
  });

  it("a message sent with the probe leaves with the next ping (or the pong being written), and a plain send of the same method replaces it", async function () {
    this.timeout(30_000);
    const got: Array<{ at: number; payload: unknown }> = [];
    const pings: number[] = [];
    const a = await agent("a", 1000);
    const b = await agent("b", 1000, (_from, method, payload) => method === "x" && got.push({ at: performance.now(), payload }));
    b.on("rtt", () => pings.push(performance.now()));
    await a.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: b.port }] });
    // Right after a pong arrived at a (its rtt event), nothing of a's is being written: the message waits for a's next ping.
    const ponged = new Promise<void>((resolve) => a.on("rtt", () => resolve()));
    await eventually(async () => (pings.length >= 1 ? true : undefined), 10_000, 20);
    await ponged;
    const sentAt = performance.now();
    assert.equal(a.sendWithProbe("b", "x", 1), true);
    await eventually(async () => (got.length >= 1 ? true : undefined), 10_000, 20);
    const pingBefore = pings.filter((t) => t <= got[0]!.at).at(-1) ?? 0;
    assert.ok(got[0]!.at - sentAt > 300, `the message arrived ${(got[0]!.at - sentAt).toFixed(0)} ms after it was queued, before a's next ping was due`);
    assert.ok(got[0]!.at - pingBefore < 20, `the message arrived ${(got[0]!.at - pingBefore).toFixed(0)} ms after the ping it should ride with`);
    // A waiting one is replaced by a newer plain send of the same method, which leaves at once.
    assert.equal(a.sendWithProbe("b", "x", 2), true);
    assert.equal(a.send("b", "x", 3), true);
    await eventually(async () => (got.length >= 2 ? true : undefined), 10_000, 20);
    const n = pings.length;
    await eventually(async () => (pings.length >= n + 2 ? true : undefined), 10_000, 20);
    assert.deepEqual(got.map((g) => g.payload), [1, 3]);
    assert.equal(a.sendWithProbe("nobody", "x", 4), false);
  });
});
