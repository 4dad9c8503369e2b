/**
 * Mesh data streams in process, over real QUIC links on loopback with real
 * cluster certificates: A and B are never told each other's endpoints (no
 * direct path), relays R1 and R2 link to both. Proves: relay advertisements
 * reach the routing engine, ping and a TCP forward go `relay via R`, 1 MiB
 * crosses end to end with its checksum, failover to R2 when R1 stops, the
 * target refuses undeclared ports and nodes outside its snapshot with a
 * reason the source sees, a relay cannot pose as the target (end-to-end
 * TLS), and hostile headers are refused while the node keeps serving.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import net from "node:net";
import type { Duplex } from "node:stream";
import type { QUICStream } from "@matrixai/quic";
import { observationsOf, type PeerRecord } from "../../agent/mesh/adapter.js";
import type { StreamView } from "../../agent/mesh/forward-policy.js";
import { encodeHeader, readHeader, streamDuplex, tlsFromSource } from "../../agent/mesh/forward-streams.js";
import { MeshStreams, routeText } from "../../agent/mesh/forward.js";
import { RELAY_ADVERT_METHOD, RelayTable } from "../../agent/mesh/relay-table.js";
import { PeerLinks } from "../../agent/mesh/transport/peer-links.js";
import type { CertBundle } from "../../lib/crypto/pki.js";
import { logger } from "../../lib/log.js";
import { clusterCa, nodeCreds, type NodeCreds } from "../support/mesh-certs.js";

const CLUSTER = "c1";

async function until(check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error("condition not reached in time");
    await new Promise((r) => setTimeout(r, 25));
  }
}

interface TestNode {
  name: string;
  creds: NodeCreds;
  links: PeerLinks;
  streams: MeshStreams;
  relays: RelayTable;
  view: StreamView;
}

/** A TCP echo server on loopback. */
async function echoServer(): Promise<{ port: number; close: () => Promise<void> }> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on("error", () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return { port: (server.address() as net.AddressInfo).port, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/** Sends `data` over a TCP connection to 127.0.0.1:port, half-closes, and returns what came back. */
async function roundTrip(port: number, data: Buffer): Promise<Buffer> {
  const sock = net.connect({ host: "127.0.0.1", port, allowHalfOpen: true });
  const chunks: Buffer[] = [];
  sock.on("data", (c: Buffer) => chunks.push(c));
  await new Promise<void>((resolve, reject) => {
    sock.once("error", reject);
    sock.once("connect", () => sock.end(data));
    sock.once("close", () => resolve());
  });
  return Buffer.concat(chunks);
}

const sha = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

describe("agent/mesh relays and forwarding (real QUIC links on loopback)", function () {
  this.timeout(60_000);
  let ca: CertBundle;
  const nodes: TestNode[] = [];
  const closers: Array<() => Promise<void>> = [];

  before(() => {
    ca = clusterCa(CLUSTER);
  });
  afterEach(async () => {
    await Promise.allSettled(closers.splice(0).map((c) => c()));
    await Promise.allSettled(nodes.splice(0).map((n) => n.links.stop()));
  });

  /** Starts a node; `peers` is its snapshot's meshPeers (name -> relay-capable). */
  async function meshNode(name: string, peers: Record<string, boolean>, o: { relay?: boolean; ports?: number[] } = {}): Promise<TestNode> {
    const creds = nodeCreds(ca, CLUSTER, name);
    const view: StreamView = { self: name, cluster: CLUSTER, peers: new Map(Object.entries(peers).map(([n, r]) => [n, { relayCapable: r }])), relay: o.relay === true, ports: new Set(o.ports ?? []) };
    const records = new Map<string, PeerRecord>();
    const relays = new RelayTable(CLUSTER);
    let links: PeerLinks | undefined;
    const streams = new MeshStreams({
      self: name,
      cluster: CLUSTER,
      log: logger("test", { node: name }),
      links: () => links,
      creds: () => ({ cluster: CLUSTER, keyPem: creds.keyPem, certPem: creds.certPem, caPem: ca.certPem }),
      view: () => view,
      routingLinks: () =>
        observationsOf(links?.links() ?? [], records).map((l) => ({ ...l, cluster: CLUSTER, relayCapable: view.peers.get(l.node)?.relayCapable === true })),
      relays,
      now: Date.now,
    });
    links = await PeerLinks.start({
      cluster: CLUSTER,
      node: name,
      keyPem: creds.keyPem,
      certPem: creds.certPem,
      caPem: ca.certPem,
      authorised: (n) => view.peers.has(n),
      host: "127.0.0.1",
      probeIntervalMs: 200,
      onRequest: (_from, method) => {
        if (method === "mesh.ping") return { node: name };
        throw new Error(`unknown method ${method}`);
      },
      onMessage: (from, method, payload) => streams.onMessage(from, method, payload),
      onStream: (from, stream) => streams.accept(from, stream),
    });
    links.on("rtt", (e) => records.set(e.node, { failures: 0, sinceMs: Date.now(), lastHeardMs: Date.now() }));
    links.on("up", (i) => records.set(i.node, { failures: 0, sinceMs: Date.now(), lastHeardMs: Date.now() }));
    links.on("down", (e) => streams.linkDown(e.node));
    if (view.relay) {
      // As the agent does (every 5 s there): keeps the advertisements fresh past their TTL in slow runs.
      const timer = setInterval(() => streams.advertise(), 1000);
      closers.push(async () => clearInterval(timer));
    }
    const n: TestNode = { name, creds, links, streams, relays, view };
    nodes.push(n);
    return n;
  }

  const ep = (n: TestNode) => ({ node: n.name, endpoints: [{ host: "127.0.0.1", port: n.links.port }] });

  /** A, B (no direct path), R1 and R2 relays linked to both; B declares `port`. */
  async function topology(port: number): Promise<{ a: TestNode; b: TestNode; r1: TestNode; r2: TestNode }> {
    const all = { a: false, b: false, r1: true, r2: true };
    const without = (n: string): Record<string, boolean> => Object.fromEntries(Object.entries(all).filter(([k]) => k !== n));
    const a = await meshNode("a", without("a"));
    const b = await meshNode("b", without("b"), { ports: [port] });
    const r1 = await meshNode("r1", without("r1"), { relay: true });
    const r2 = await meshNode("r2", without("r2"), { relay: true });
    for (const r of [r1, r2]) for (const x of [a, b]) await x.links.connect(ep(r));
    for (const r of [r1, r2]) r.streams.advertise();
    await until(() => a.relays.current(Date.now()).length === 2 && b.relays.current(Date.now()).length === 2);
    return { a, b, r1, r2 };
  }

  it("pings and forwards 1 MiB end to end through a relay, and fails over to the second relay", async () => {
    const echo = await echoServer();
    closers.push(echo.close);
    const t = await topology(echo.port);
    const a = t.a;
    assert.deepEqual(a.relays.current(Date.now()).map((r) => [r.relay, r.reaches]), [["r1", ["b"]], ["r2", ["b"]]]);

    const p = await a.streams.ping("b");
    assert.match(routeText(p.route), /^relay via r[12]$/);
    assert.ok(p.rttMs > 0);
    const [first, second] = p.route.kind === "relay" && p.route.relay === "r1" ? [t.r1, t.r2] : [t.r2, t.r1];

    const fwd = await a.streams.forward({ host: "127.0.0.1", port: 0 }, "b", echo.port);
    closers.push(fwd.close);
    const data = randomBytes(1024 * 1024);
    const back = await roundTrip(fwd.listen.port, data);
    assert.equal(back.length, data.length);
    assert.equal(sha(back), sha(data));
    assert.ok(first.streams.counters.relayed >= 3, "the ping, the check and the connection went through the first relay");
    assert.ok(first.streams.counters.relayedBytes > 2 * data.length, `${first.name} relayed ${first.streams.counters.relayedBytes} bytes`);
    assert.equal(second.streams.counters.relayed, 0);

    await first.links.stop();
    await until(() => a.relays.current(Date.now()).every((r) => r.relay !== first.name));
    const p2 = await a.streams.ping("b");
    assert.equal(routeText(p2.route), `relay via ${second.name}`);
    const back2 = await roundTrip(fwd.listen.port, data);
    assert.equal(sha(back2), sha(data));
  });

  it("counts relayed bytes as they pass: a stream still open, neither end closed, shows in the relay's counter", async () => {
    const echo = await echoServer();
    closers.push(echo.close);
    const t = await topology(echo.port);
    const fwd = await t.a.streams.forward({ host: "127.0.0.1", port: 0 }, "b", echo.port);
    closers.push(fwd.close);
    const [before1, before2] = [t.r1.streams.counters.relayedBytes, t.r2.streams.counters.relayedBytes];
    const data = randomBytes(256 * 1024);
    const sock = net.connect({ host: "127.0.0.1", port: fwd.listen.port, allowHalfOpen: true });
    closers.push(async () => void sock.destroy());
    sock.on("error", () => undefined);
    let got = 0;
    sock.on("data", (c: Buffer) => (got += c.length));
    sock.write(data);
    await until(() => got === data.length);
    // The echo came back and the connection stays open both ways: nothing has closed at the relay.
    const grown = t.r1.streams.counters.relayedBytes - before1 + (t.r2.streams.counters.relayedBytes - before2);
    assert.ok(grown >= 2 * data.length, `relayed bytes grew by ${grown} while the stream is open`);
    assert.ok(!sock.readableEnded && !sock.writableEnded);
  });

  it("delivers a reply sent after the client's half-close in full, relayed and direct (no reset of queued bytes)", async () => {
    // Stores everything, answers 1 MiB only after the client's FIN, then closes: the tail is still
    // queued in QUIC when the target's side of the stream finishes.
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      const chunks: Buffer[] = [];
      s.on("data", (c: Buffer) => chunks.push(c));
      s.on("end", () => s.end(Buffer.concat([Buffer.concat(chunks), Buffer.concat(chunks)])));
      s.on("error", () => undefined);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    closers.push(() => new Promise<void>((r) => server.close(() => r())));
    const port = (server.address() as net.AddressInfo).port;
    const { a, b } = await topology(port);
    const data = randomBytes(512 * 1024);
    const want = sha(Buffer.concat([data, data]));
    const relayed = await a.streams.forward({ host: "127.0.0.1", port: 0 }, "b", port);
    closers.push(relayed.close);
    assert.equal(sha(await roundTrip(relayed.listen.port, data)), want, "relayed");
    await a.links.connect(ep(b));
    const direct = await a.streams.forward({ host: "127.0.0.1", port: 0 }, "b", port);
    closers.push(direct.close);
    assert.equal(sha(await roundTrip(direct.listen.port, data)), want, "direct");
  });

  it("prefers a direct link and keeps a working relay path (sticky)", async () => {
    const echo = await echoServer();
    closers.push(echo.close);
    const { a, b, r1, r2 } = await topology(echo.port);
    const chosen = routeText(a.streams.route("b"));
    assert.match(chosen, /^relay via r[12]$/);
    // New advertisements and fresh RTT samples do not move a working path.
    for (let i = 0; i < 5; i++) {
      r1.streams.advertise();
      r2.streams.advertise();
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(routeText(a.streams.route("b")), chosen);
    }
    await a.links.connect(ep(b));
    assert.equal(routeText(a.streams.route("b")), "direct");
    assert.equal(routeText((await a.streams.ping("b")).route), "direct");
    const fwd = await a.streams.forward({ host: "127.0.0.1", port: 0 }, "b", echo.port);
    closers.push(fwd.close);
    const data = randomBytes(64 * 1024);
    assert.equal(sha(await roundTrip(fwd.listen.port, data)), sha(data));
  });

  it("refuses an undeclared port, a node outside the target's or the relay's snapshot, and a non-relay, with the reason at the source", async () => {
    const echo = await echoServer();
    closers.push(echo.close);
    const { a, b, r1, r2 } = await topology(echo.port);
    await assert.rejects(a.streams.forward({ host: "127.0.0.1", port: 0 }, "b", echo.port + 1 > 65535 ? 1 : echo.port + 1), /PortNotDeclared: port \d+ on node b is not declared/);
    await assert.rejects(a.streams.ping("x"), /node x is not a mesh candidate in this node's verified snapshot/);

    // B's snapshot drops A: B refuses the relayed stream, the relay passes the reason on.
    (b.view.peers as Map<string, { relayCapable: boolean }>).delete("a");
    await assert.rejects(a.streams.ping("b"), /NoPath \(relay r\d \(to node b\) refused: TargetUnreachable: node b refused: NotInSnapshot: node a is not in node b's verified snapshot/);
    (b.view.peers as Map<string, { relayCapable: boolean }>).set("a", { relayCapable: false });

    // The relays' snapshots drop B: both refuse to forward (mayForward), A runs out of relays.
    for (const r of [r1, r2]) (r.view.peers as Map<string, { relayCapable: boolean }>).delete("b");
    await assert.rejects(a.streams.ping("b"), /no path to node b: NoPath \(relay r\d \(to node b\) refused: NotInSnapshot: relay r\d may not forward from a to b/);
    for (const r of [r1, r2]) (r.view.peers as Map<string, { relayCapable: boolean }>).set("b", { relayCapable: false });

    // A node without a relay role refuses to relay, whatever it advertised.
    (r1.view as { relay: boolean }).relay = false;
    (r2.view as { relay: boolean }).relay = false;
    a.relays.accept("r1", { reaches: ["b"] }, true, Date.now());
    await assert.rejects(a.streams.ping("b"), /no path to node b/);
    assert.ok(r1.streams.counters.refused >= 1 && r2.streams.counters.refused >= 1);
  });

  it("a relay cannot pose as the target: the end-to-end TLS checks the target's certificate", async () => {
    const a = await meshNode("a", { evil: true, b: false });
    const evilCreds = nodeCreds(ca, CLUSTER, "evil");
    const evil = await PeerLinks.start({
      cluster: CLUSTER,
      node: "evil",
      keyPem: evilCreds.keyPem,
      certPem: evilCreds.certPem,
      caPem: ca.certPem,
      authorised: () => true,
      host: "127.0.0.1",
      probeIntervalMs: 200,
      // Accepts the relay header, then answers the source's TLS with its own certificate, posing as b.
      onStream: (_from, s: QUICStream) => {
        const d = streamDuplex(s);
        void (async () => {
          await readHeader(d);
          d.write(encodeHeader({ ok: true }));
          await tlsFromSource(d, { cluster: CLUSTER, keyPem: evilCreds.keyPem, certPem: evilCreds.certPem, caPem: ca.certPem }, "a", () => true).catch(() => undefined);
        })().catch(() => d.destroy());
      },
    });
    closers.push(() => evil.stop());
    await a.links.connect({ node: "evil", endpoints: [{ host: "127.0.0.1", port: evil.port }] });
    evil.send("a", RELAY_ADVERT_METHOD, { reaches: ["b"] });
    await until(() => a.relays.current(Date.now()).length === 1);
    await assert.rejects(a.streams.ping("b"), /end-to-end authentication of node b failed/);
  });

  it("refuses hostile headers and advertisements and keeps serving", async () => {
    const echo = await echoServer();
    closers.push(echo.close);
    const b = await meshNode("b", { a: false, r: true }, { ports: [echo.port] });
    const a = await meshNode("a", { b: false, r: true });
    await a.links.connect(ep(b));
    const ask = async (bytes: Buffer): Promise<string> => {
      const d: Duplex = streamDuplex(a.links.openStream("b"));
      d.write(bytes);
      try {
        const v = (await readHeader(d, 5000)) as { ok: boolean; error?: string };
        return v.ok ? "ok" : (v.error ?? "");
      } finally {
        d.destroy();
      }
    };
    const framed = (s: string): Buffer => {
      const body = Buffer.from(s);
      const h = Buffer.alloc(4);
      h.writeUInt32BE(body.length);
      return Buffer.concat([h, body]);
    };
    const huge = Buffer.alloc(4);
    huge.writeUInt32BE(1 << 30);
    assert.match(await ask(huge), /^BadHeader: stream header of 1073741824 bytes/);
    assert.match(await ask(framed("not json")), /^BadHeader: stream header is not JSON/);
    assert.match(await ask(framed(`{"kind":${"[".repeat(40)}${"]".repeat(40)}}`)), /^BadHeader/);
    assert.match(await ask(framed(JSON.stringify({ kind: "tcp", port: "80" }))), /^BadHeader: not a stream header/);
    assert.match(await ask(framed(JSON.stringify({ kind: "tcp", port: 70000 }))), /^BadHeader/);
    assert.match(await ask(framed(JSON.stringify({ kind: "tcp", port: echo.port, extra: 1 }))), /^BadHeader/);
    assert.match(await ask(framed(JSON.stringify({ kind: "relay", target: "x".repeat(300) }))), /^BadHeader/);
    assert.match(await ask(framed(JSON.stringify({ kind: "relay", target: "r" }))), /^NotARelay: node b holds no relay role/);
    assert.match(await ask(framed(JSON.stringify({ kind: "relayed", source: "r" }))), /^NotARelay: node a is not a relay in node b's snapshot/);
    assert.match(await ask(framed(JSON.stringify({ kind: "tcp", port: echo.port === 1 ? 2 : 1 }))), /^PortNotDeclared/);
    assert.equal(await ask(framed(JSON.stringify({ kind: "tcp", port: echo.port, check: true }))), "ok");

    // Advertisements: from a non-relay, malformed, oversized: ignored.
    assert.equal(b.relays.accept("a", { reaches: ["r"] }, false, Date.now()), false);
    a.links.send("b", RELAY_ADVERT_METHOD, { reaches: ["r"] });
    a.links.send("b", RELAY_ADVERT_METHOD, { reaches: "r" });
    assert.equal(b.relays.accept("r", { reaches: Array.from({ length: 300 }, (_, i) => `n${i}`) }, true, Date.now()), false);
    assert.equal(b.relays.accept("r", { reaches: [1, 2] }, true, Date.now()), false);
    assert.equal(b.relays.accept("r", [], true, Date.now()), false);
    assert.deepEqual(b.relays.current(Date.now()), []);

    // Still serving: a real forward over the same link.
    const fwd = await a.streams.forward({ host: "127.0.0.1", port: 0 }, "b", echo.port);
    closers.push(fwd.close);
    const data = randomBytes(4096);
    assert.equal(sha(await roundTrip(fwd.listen.port, data)), sha(data));
    assert.equal(b.links.links().length, 1);
  });
});
