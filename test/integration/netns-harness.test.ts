/**
 * The network-namespace harness and the UDP proxy themselves: real
 * namespaces, a bridge and veth pairs (root and iproute2 needed), a UDP echo
 * server inside a namespace reached from the root namespace through the
 * bridge, a host cut and restored, a killed run's leftovers removed, and the
 * proxy's latency, loss (seeded), cut, live changes and per-client
 * impairments (several listeners in one child).
 */
import assert from "node:assert/strict";
import dgram from "node:dgram";
import { ip, createLab, leftovers, type NetnsLab } from "../support/netns.js";
import { spawnUdpProxy, startUdpProxy, type UdpProxy } from "../support/udp-proxy.js";

const PREFIX = "afnh";
const ECHO = `const s=require("node:dgram").createSocket("udp4");s.on("message",(m,r)=>s.send(m,r.port,r.address));s.bind(7000,process.argv[1],()=>console.log("ready"));`;

/** Sends `n` datagrams `gapMs` apart and returns the round trips (ms) of those answered within `waitMs` after the last. */
async function probe(host: string, port: number, n: number, waitMs = 1500, from?: string, gapMs = 5): Promise<number[]> {
  const sock = dgram.createSocket("udp4");
  const sent = new Map<number, number>();
  const rtts: number[] = [];
  sock.on("message", (m) => {
    const i = m.readUInt32BE(0);
    const t = sent.get(i);
    if (t !== undefined) rtts.push(performance.now() - t);
  });
  await new Promise<void>((r) => sock.bind(0, from, r));
  for (let i = 0; i < n; i++) {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(i);
    sent.set(i, performance.now());
    sock.send(b, port, host);
    await new Promise((r) => setTimeout(r, gapMs));
  }
  await new Promise((r) => setTimeout(r, waitMs));
  sock.close();
  return rtts;
}

describe("test harness: network namespaces and the UDP proxy", function () {
  this.timeout(60_000);
  let lab: NetnsLab | undefined;
  const stops: Array<() => Promise<void>> = [];
  after(async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
    await lab?.destroy();
    const left = await leftovers(PREFIX);
    assert.deepEqual(left, { namespaces: [], links: [] });
  });

  it("removes a killed run's leftovers, reaches a server inside a namespace through the bridge, cuts and restores a host", async () => {
    // A killed run left a namespace and a bridge port behind.
    await ip(["netns", "add", `${PREFIX}-stale`]);
    await ip(["link", "add", `${PREFIX}9a`, "type", "veth", "peer", "name", `${PREFIX}9b`, "netns", `${PREFIX}-stale`]);
    lab = await createLab(PREFIX);
    const left = await leftovers(PREFIX);
    assert.deepEqual(left.namespaces, []);
    assert.deepEqual(left.links, [`${PREFIX}br`]);
    const a = await lab.addHost("a");
    const b = await lab.addHost("b");
    assert.notEqual(a.address, b.address);
    assert.equal((await a.exec("ip", ["-o", "-4", "addr", "show", "dev", a.innerVeth])).stdout.includes(`${a.address}/24`), true);
    const echo = a.spawn(process.execPath, ["-e", ECHO, a.address], { stdio: ["ignore", "pipe", "inherit"] });
    stops.push(async () => {
      const gone = new Promise((r) => echo.once("exit", r));
      echo.kill("SIGKILL");
      await gone;
    });
    await new Promise<void>((r) => echo.stdout?.once("data", () => r()));
    assert.equal((await probe(a.address, 7000, 5)).length, 5);
    // Not reachable on the root namespace's loopback: the server is inside the namespace.
    assert.equal((await probe("127.0.0.1", 7000, 3, 300)).length, 0);
    await a.cut();
    assert.equal((await probe(a.address, 7000, 5, 500)).length, 0);
    await a.restore();
    const back = async (): Promise<number> => (await probe(a.address, 7000, 3, 500)).length;
    let got = 0;
    for (let i = 0; i < 20 && got === 0; i++) got = await back();
    assert.ok(got > 0, "host a reachable again after restore");

    // A proxy inside namespace b forwards to a, with latency changed while it runs.
    let out = "";
    const proxy = await spawnUdpProxy(b, { listenPort: 0, targetHost: a.address, targetPort: 7000, seed: 42, onOutput: (t) => (out += t) });
    stops.push(() => proxy.close());
    assert.match(out, /seed=42/);
    const fast = await probe(b.address, proxy.port, 10);
    assert.equal(fast.length, 10);
    await proxy.set({ toTarget: { latencyMs: 80 } });
    const slow = await probe(b.address, proxy.port, 10);
    assert.equal(slow.length, 10);
    // The proxy never releases a datagram before its due time (its timers are re-armed when they fire early), and the
    // probe's clock starts before the proxy's does; without the latency the same probe answers in about 0.1 ms.
    assert.ok(Math.min(...slow) >= 80, `rtt through 80 ms latency: ${slow.map((x) => x.toFixed(2)).join(",")}`);
    await proxy.set({ cut: true });
    assert.equal((await probe(b.address, proxy.port, 5, 500)).length, 0);
    const st = await proxy.stats();
    assert.equal(st.forwarded.toTarget, 20);
    assert.equal(st.dropped.toTarget, 5);
    await assert.rejects(proxy.set({ toClient: { loss: 2 } }), /loss must be 0\.\.1/);
  });

  it("drops the configured share with a seeded PRNG (same seed, same drops)", async () => {
    const run = async (seed: number): Promise<number> => {
      // An echo server on loopback as the target; the proxy in process.
      const echo = dgram.createSocket("udp4");
      echo.on("message", (m, r) => echo.send(m, r.port, r.address));
      await new Promise<void>((r) => echo.bind(0, "127.0.0.1", r));
      const proxy: UdpProxy = await startUdpProxy({ listenHost: "127.0.0.1", listenPort: 0, targetHost: "127.0.0.1", targetPort: echo.address().port, seed, settings: { toClient: { loss: 0.1 } }, announce: () => undefined });
      try {
        // 1 ms apart: the drops depend on the seed and the order only, not on the pace.
        await probe("127.0.0.1", proxy.port, 400, 300, undefined, 1);
        const st = await proxy.stats();
        assert.equal(st.forwarded.toTarget, 400);
        assert.equal(st.forwarded.toClient + st.dropped.toClient, 400);
        return st.dropped.toClient;
      } finally {
        await proxy.close();
        echo.close();
      }
    };
    const first = await run(7);
    assert.ok(first >= 20 && first <= 65, `10 % of 400 dropped: ${first}`);
    assert.equal(await run(7), first);
  });

  it("never releases a datagram before its due time, and keeps each flow's order", async () => {
    // Node's timers measure from the event loop's cached millisecond clock, so a bare setTimeout may fire up to a
    // millisecond early; 300 datagrams 1 ms apart, several per loop turn, give it every chance to.
    const echo = dgram.createSocket("udp4");
    const order: number[] = [];
    echo.on("message", (m, r) => {
      order.push(m.readUInt32BE(0));
      echo.send(m, r.port, r.address);
    });
    await new Promise<void>((r) => echo.bind(0, "127.0.0.1", r));
    const proxy = await startUdpProxy({ listenHost: "127.0.0.1", listenPort: 0, targetHost: "127.0.0.1", targetPort: echo.address().port, seed: 11, settings: { toTarget: { latencyMs: 20, jitterMs: 3 } }, announce: () => undefined });
    try {
      const rtts = await probe("127.0.0.1", proxy.port, 300, 300, undefined, 1);
      assert.equal(rtts.length, 300);
      const early = rtts.filter((x) => x < 20);
      assert.deepEqual(early.map((x) => x.toFixed(3)), [], "round trips shorter than the 20 ms latency");
      assert.deepEqual(order, [...order].sort((a, b) => a - b), "one flow's datagrams arrive in the order sent");
    } finally {
      await proxy.close();
      echo.close();
    }
  });

  it("impairs only the flows of a client address it is told, both ways, until told to stop; refuses a bad address", async () => {
    const echo = dgram.createSocket("udp4");
    echo.on("message", (m, r) => echo.send(m, r.port, r.address));
    await new Promise<void>((r) => echo.bind(0, "127.0.0.1", r));
    const proxy = await startUdpProxy({ listenHost: "127.0.0.1", listenPort: 0, targetHost: "127.0.0.1", targetPort: echo.address().port, seed: 3, announce: () => undefined });
    try {
      // 127.0.0.2 is a loopback address of its own: a second client host.
      await proxy.set({ clients: { "127.0.0.2": { toClient: { latencyMs: 60 } } } });
      const slow = await probe("127.0.0.1", proxy.port, 10, 500, "127.0.0.2");
      const fast = await probe("127.0.0.1", proxy.port, 10, 500, "127.0.0.1");
      assert.equal(slow.length, 10);
      assert.equal(fast.length, 10);
      assert.ok(Math.min(...slow) >= 60, `slow client: ${slow.map((x) => x.toFixed(1)).join(",")}`);
      assert.ok(Math.max(...fast) < 40, `other client untouched: ${fast.map((x) => x.toFixed(1)).join(",")}`);
      await proxy.set({ clients: { "127.0.0.2": { toTarget: { loss: 1 } } } });
      assert.equal((await probe("127.0.0.1", proxy.port, 5, 300, "127.0.0.2")).length, 0);
      assert.equal((await probe("127.0.0.1", proxy.port, 5, 300, "127.0.0.1")).length, 5);
      await proxy.set({ clients: { "127.0.0.2": null } });
      const back = await probe("127.0.0.1", proxy.port, 5, 300, "127.0.0.2");
      assert.equal(back.length, 5);
      assert.ok(Math.max(...back) < 40);
      await assert.rejects(proxy.set({ clients: { "not-an-ip": { toTarget: { loss: 0.1 } } } }), /not an IP address/);
      await assert.rejects(proxy.set({ clients: { "127.0.0.3": { toTarget: { latencyMs: -1 } } } }), /latencyMs must be/);
    } finally {
      await proxy.close();
      echo.close();
    }
  });
});
