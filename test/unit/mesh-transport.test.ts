import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import type { CertBundle } from "../../lib/crypto/pki.js";
import { encodeFrame, FrameDecoder, FrameError, MAX_CARRIED_RTT_MS, type Frame } from "../../agent/mesh/transport/frames.js";
import { PeerRefused, verifyPeerCertificate } from "../../agent/mesh/transport/peer-identity.js";
import { PeerLinks, type PeerLinksOptions } from "../../agent/mesh/transport/peer-links.js";
import { ProbeStats } from "../../agent/mesh/transport/probe-stats.js";
import { assertPatchedVersion, PATCHED_QUIC_VERSION } from "../../agent/mesh/transport/quic-fast-path.js";
import { clusterCa, nodeCreds, selfSignedNodeCreds, type NodeCreds } from "../support/mesh-certs.js";

const CLUSTER = "c1";

/** Polls until `check` is true or the deadline passes. */
async function until(check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error("condition not reached in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("agent/mesh/transport", () => {
  describe("frames", () => {
    it("round-trips frames split across arbitrary chunks", () => {
      const bytes = Buffer.concat([encodeFrame({ t: "req", id: 1, m: "echo", p: { a: [1, 2] } }), encodeFrame({ t: "msg", m: "hi", p: null })]);
      const d = new FrameDecoder();
      const out = [...d.push(bytes.subarray(0, 7)), ...d.push(bytes.subarray(7, 20)), ...d.push(bytes.subarray(20))];
      assert.deepEqual(out, [
        { t: "req", id: 1, m: "echo", p: { a: [1, 2] } },
        { t: "msg", m: "hi", p: null },
      ]);
    });

    it("decodes the same frames whatever the split point, and a large frame fed byte by byte", () => {
      const frames = [
        { t: "req", id: 7, m: "echo", p: "é".repeat(50) },
        { t: "ping", id: 8 },
        { t: "res", id: 7, ok: true, p: [1, { b: null }] },
      ] as const;
      const bytes = Buffer.concat(frames.map((f) => encodeFrame(f)));
      for (let i = 0; i <= bytes.length; i++) {
        for (let j = i; j <= bytes.length; j += 5) {
          const d = new FrameDecoder();
          const out = [...d.push(bytes.subarray(0, i)), ...d.push(bytes.subarray(i, j)), ...d.push(bytes.subarray(j))];
          assert.deepEqual(out, frames, `split at ${i}/${j}`);
        }
      }
      const big = encodeFrame({ t: "msg", m: "bulk", p: "q".repeat(100_000) });
      const d = new FrameDecoder();
      const out = [];
      for (let i = 0; i < big.length; i++) out.push(...d.push(big.subarray(i, i + 1)));
      assert.deepEqual(out, [{ t: "msg", m: "bulk", p: "q".repeat(100_000) }]);
    });

    it("refuses a declared length above the limit before buffering the body", () => {
      const head = Buffer.alloc(4);
      head.writeUInt32BE(10 * 1024 * 1024);
      assert.throws(() => new FrameDecoder({ maxFrameBytes: 1024, maxDepth: 8 }).push(head), (e: unknown) => e instanceof FrameError && e.code === "TooLarge");
    });

    it("refuses nesting deeper than the limit and frames of unknown shape", () => {
      const deep = Buffer.from(`{"t":"msg","m":"x","p":${"[".repeat(50)}${"]".repeat(50)}}`);
      const framed = Buffer.concat([Buffer.from([0, 0, 0, deep.length]), deep]);
      assert.throws(() => new FrameDecoder({ maxFrameBytes: 1024, maxDepth: 8 }).push(framed), (e: unknown) => e instanceof FrameError && e.code === "TooDeep");
      const odd = Buffer.from(`{"t":"nope"}`);
      assert.throws(() => new FrameDecoder().push(Buffer.concat([Buffer.from([0, 0, 0, odd.length]), odd])), (e: unknown) => e instanceof FrameError && e.code === "BadFrame");
    });

    it("takes a ping's carried RTT sample and loss as a pair within range, and refuses anything else", () => {
      const raw = (body: string): Frame[] => new FrameDecoder().push(Buffer.concat([Buffer.from([0, 0, 0, Buffer.byteLength(body)]), Buffer.from(body)]));
      assert.deepEqual(raw(`{"t":"ping","id":3,"r":1.25,"l":0.05}`), [{ t: "ping", id: 3, r: 1.25, l: 0.05 }]);
      assert.deepEqual(raw(`{"t":"ping","id":3}`), [{ t: "ping", id: 3 }]);
      assert.deepEqual(raw(`{"t":"ping","id":3,"r":${MAX_CARRIED_RTT_MS},"l":1}`), [{ t: "ping", id: 3, r: MAX_CARRIED_RTT_MS, l: 1 }]);
      const hostile = [
        `{"t":"ping","id":3,"r":1}`,
        `{"t":"ping","id":3,"l":0}`,
        `{"t":"ping","id":3,"r":-1,"l":0}`,
        `{"t":"ping","id":3,"r":${MAX_CARRIED_RTT_MS + 1},"l":0}`,
        `{"t":"ping","id":3,"r":1e308,"l":0}`,
        `{"t":"ping","id":3,"r":1,"l":1.5}`,
        `{"t":"ping","id":3,"r":1,"l":-0.1}`,
        `{"t":"ping","id":3,"r":"1","l":0}`,
        `{"t":"ping","id":3,"r":1,"l":null}`,
        `{"t":"ping","id":3,"r":[1],"l":{"x":0}}`,
        `{"t":"ping","id":-3,"r":1,"l":0}`,
      ];
      for (const body of hostile) assert.throws(() => raw(body), (e: unknown) => e instanceof FrameError && e.code === "BadFrame", body);
    });
  });

  describe("probe statistics", () => {
    it("keeps an EWMA of RTT with a = 0.2, a jitter estimate and windowed loss", () => {
      const s = new ProbeStats(4);
      for (const rtt of [10, 20]) {
        s.sentProbe();
        s.answer(rtt);
      }
      s.sentProbe();
      s.timeout();
      const snap = s.snapshot();
      assert.equal(snap.rttMs, 12); // 10 + 0.2 * (20 - 10)
      assert.equal(snap.jitterMs, 2); // 0 + 0.2 * |20 - 10|
      assert.equal(snap.loss, 1 / 3);
      assert.deepEqual([snap.sent, snap.answered, snap.lost], [3, 2, 1]);
    });

    it("an answering side takes the prober's carried samples and loss, and carries only its own figures", () => {
      const s = new ProbeStats(4);
      assert.equal(s.carried(), undefined, "nothing to carry before an own sample");
      s.peerSample(10, 0.25);
      s.peerSample(20, 0.1);
      let snap = s.snapshot();
      assert.equal(snap.rttMs, 12);
      assert.equal(snap.jitterMs, 2);
      assert.equal(snap.loss, 0.1, "the peer's latest loss");
      assert.equal(snap.peerLoss, 0.1);
      assert.deepEqual([snap.sent, snap.answered, snap.lost], [0, 0, 0], "no probe of its own");
      assert.equal(s.carried(), undefined, "a peer's sample is never carried back");
      // Its own probes (the watchdog): own loss above the peer's wins; the carried loss is its own only.
      s.sentProbe();
      s.answer(30);
      s.sentProbe();
      s.timeout();
      snap = s.snapshot();
      assert.equal(snap.loss, 0.5);
      assert.deepEqual(s.carried(), { r: 30, l: 0.5 });
      s.peerSample(14, 0.9);
      assert.equal(s.snapshot().loss, 0.9);
      assert.deepEqual(s.carried(), { r: 30, l: 0.5 }, "the peer's 0.9 does not echo back");
    });
  });

  describe("peer certificate verification", () => {
    const ca = clusterCa(CLUSTER);
    const caX = new X509Certificate(ca.certPem);
    const der = (c: NodeCreds): Uint8Array => new X509Certificate(c.certPem).raw;
    const refusal = (f: () => unknown): string => {
      try {
        f();
      } catch (err) {
        if (err instanceof PeerRefused) return err.reason;
        throw err;
      }
      return "accepted";
    };
    const all = (): boolean => true;

    const table: Array<{ name: string; creds: () => NodeCreds; authorised?: (n: string) => boolean; expected?: string; want: string }> = [
      { name: "accepts an authorised node of the cluster", creds: () => nodeCreds(ca, CLUSTER, "n1"), want: "accepted" },
      { name: "refuses a certificate from another cluster CA", creds: () => nodeCreds(clusterCa(CLUSTER), CLUSTER, "n1"), want: "NotIssuedByClusterCa" },
      { name: "refuses a self-signed certificate with a valid node name", creds: () => selfSignedNodeCreds(CLUSTER, "n1"), want: "NotIssuedByClusterCa" },
      {
        name: "refuses an expired certificate",
        creds: () => nodeCreds(ca, CLUSTER, "n1", { notBefore: new Date(Date.now() - 7_200_000), notAfter: new Date(Date.now() - 3_600_000) }),
        want: "Expired",
      },
      { name: "refuses a node of another cluster signed by the same CA", creds: () => nodeCreds(ca, "c2", "n1"), want: "OtherCluster" },
      { name: "refuses a node that is not authorised", creds: () => nodeCreds(ca, CLUSTER, "n1"), authorised: (n) => n !== "n1", want: "NotAuthorised" },
      { name: "refuses a valid node other than the one dialled", creds: () => nodeCreds(ca, CLUSTER, "n1"), expected: "n2", want: "WrongNode" },
    ];
    for (const row of table) {
      it(row.name, () => {
        assert.equal(refusal(() => verifyPeerCertificate(der(row.creds()), caX, CLUSTER, row.authorised ?? all, new Date(), row.expected)), row.want);
      });
    }
    it("refuses a peer that sent no certificate", () => {
      assert.equal(refusal(() => verifyPeerCertificate(undefined, caX, CLUSTER, all, new Date())), "NoCertificate");
    });
  });

  describe("links over loopback QUIC", function () {
    this.timeout(20_000);
    let ca: CertBundle;
    const started: PeerLinks[] = [];
    const allowed = new Set<string>();

    before(() => {
      ca = clusterCa(CLUSTER);
    });
    beforeEach(() => {
      allowed.clear();
      for (const n of ["a", "b", "c"]) allowed.add(n);
    });
    afterEach(async () => {
      await Promise.allSettled(started.splice(0).map((l) => l.stop()));
    });

    async function agent(creds: NodeCreds, extra: Partial<PeerLinksOptions> = {}, caPem = ca.certPem): Promise<PeerLinks> {
      const links = await PeerLinks.start({
        cluster: CLUSTER,
        node: creds.node,
        keyPem: creds.keyPem,
        certPem: creds.certPem,
        caPem,
        authorised: (n) => allowed.has(n),
        host: "127.0.0.1",
        probeIntervalMs: 200,
        onRequest: (from, method, payload) => {
          if (method === "echo") return { from, payload };
          throw new Error(`unknown method ${method}`);
        },
        ...extra,
      });
      started.push(links);
      return links;
    }

    it("connects with mutual TLS, answers requests and one-way messages both ways", async () => {
      const got: string[] = [];
      const a = await agent(nodeCreds(ca, CLUSTER, "a"));
      const b = await agent(nodeCreds(ca, CLUSTER, "b"), { onMessage: (from, m) => got.push(`${from}:${m}`) });
      assert.ok(b.socketBuffers.recv >= 4 * 1024 * 1024, `recv buffer ${b.socketBuffers.recv}`);
      const info = await a.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: b.port }] });
      assert.equal(info.node, "b");
      assert.equal(info.direction, "outbound");
      assert.deepEqual(await a.request("b", "echo", { x: 1 }), { from: "a", payload: { x: 1 } });
      await until(() => b.links().length === 1);
      assert.deepEqual(await b.request("a", "echo", "back"), { from: "b", payload: "back" });
      await assert.rejects(a.request("b", "nope", null), /unknown method nope/);
      assert.ok(a.send("b", "hello", { n: 1 }));
      await until(() => got.length === 1);
      assert.deepEqual(got, ["a:hello"]);
      // A second connect reuses the link.
      await a.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: b.port }] });
      assert.equal(a.links().length, 1);
    });

    it("carries large frames and many messages in order on the patched hot path, and only there", async function () {
      this.timeout(60_000);
      for (const fastPath of [true, false]) {
        const got: number[] = [];
        const a = await agent(nodeCreds(ca, CLUSTER, "a"), { fastPath });
        const b = await agent(nodeCreds(ca, CLUSTER, "b"), { fastPath, onMessage: (_from, _m, p) => got.push((p as { i: number }).i) });
        await a.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: b.port }] });
        // 200 KiB frames span many datagrams and stream-window updates; 200 messages span many send passes.
        const big = "z".repeat(200 * 1024);
        const answers = await Promise.all([1, 2, 3].map(() => a.request("b", "echo", big)));
        for (const r of answers) assert.equal((r as { payload: string }).payload, big);
        for (let i = 0; i < 200; i++) a.send("b", "seq", { i, pad: "p".repeat(2000) });
        await until(() => got.length === 200, 30_000);
        assert.deepEqual(got, Array.from({ length: 200 }, (_, i) => i));
        if (fastPath) {
          assert.ok(a.fastPath !== undefined && b.fastPath !== undefined);
          assert.ok(a.fastPath.datagramsOut > 200 && b.fastPath.datagramsIn > 200, `fast path carried ${JSON.stringify(a.fastPath)} / ${JSON.stringify(b.fastPath)}`);
        } else {
          assert.equal(a.fastPath, undefined);
        }
        await Promise.all([a.stop(), b.stop()]);
      }
    });

    it("writes small frames straight into quiche, and behind a pending writer write through the writer, in order", async function () {
      this.timeout(60_000);
      const got: number[] = [];
      const a = await agent(nodeCreds(ca, CLUSTER, "a"));
      const b = await agent(nodeCreds(ca, CLUSTER, "b"), { onMessage: (_from, _m, p) => got.push((p as { i: number }).i) });
      await a.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: b.port }] });
      assert.deepEqual(await a.request("b", "echo", 1), { from: "a", payload: 1 });
      const direct0 = a.fastPath!.directWrites;
      assert.ok(direct0 > 0, "a small request went straight into quiche");
      // Each send in its own microtask is a write of its own: a 200 KiB frame exceeds the
      // congestion window and waits in the writer, the small ones behind it must not overtake it.
      const big = "z".repeat(200 * 1024);
      for (let i = 0; i < 60; i++) {
        a.send("b", "seq", { i, pad: i % 20 === 0 ? big : "" });
        await Promise.resolve();
      }
      await until(() => got.length === 60, 30_000);
      assert.deepEqual(got, Array.from({ length: 60 }, (_, i) => i));
      // The writer has drained: small frames go straight into quiche again.
      const direct1 = a.fastPath!.directWrites;
      assert.deepEqual(await a.request("b", "echo", 2), { from: "a", payload: 2 });
      assert.ok(a.fastPath!.directWrites > direct1, `direct writes ${direct1} -> ${a.fastPath!.directWrites}`);
    });

    it("reports the link down when the dialler stops, on the patched hot path", async function () {
      this.timeout(60_000);
      // Several rounds: the peer's end of stream and its close race differently each time.
      for (let round = 0; round < 5; round++) {
        const down: string[] = [];
        const a = await agent(nodeCreds(ca, CLUSTER, "a"));
        const b = await agent(nodeCreds(ca, CLUSTER, "b"));
        a.on("down", ({ node }) => down.push(node));
        // b dials, a accepts: the accepting side is the one that read the dialler's end of stream.
        await b.connect({ node: "a", endpoints: [{ host: "127.0.0.1", port: a.port }] });
        assert.deepEqual(await b.request("a", "echo", round), { from: "b", payload: round });
        await until(() => a.links().length === 1);
        await b.stop();
        await until(() => down.length === 1, 15_000);
        assert.deepEqual(down, ["b"]);
        await a.stop();
      }
    });

    it("hands the streams a peer opens, in order and out of order, to the handler on the patched hot path", async function () {
      this.timeout(60_000);
      const seen = new Map<number, string>();
      const failures: unknown[] = [];
      const b = await agent(nodeCreds(ca, CLUSTER, "b"), {
        onStream: (_from, stream) => {
          void (async () => {
            const chunks: Buffer[] = [];
            for await (const chunk of stream.readable) chunks.push(Buffer.from(chunk));
            seen.set(stream.streamId, Buffer.concat(chunks).toString());
          })().catch((e: unknown) => failures.push(e));
        },
      });
      const a = await agent(nodeCreds(ca, CLUSTER, "a"));
      await a.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: b.port }] });
      const send = async (streams: ReturnType<PeerLinks["openStream"]>[], body: (id: number) => string): Promise<void> => {
        for (const s of streams) {
          const w = s.writable.getWriter();
          await w.write(Buffer.from(body(s.streamId)));
          await w.close();
        }
      };
      // In order: each new stream is the next id the peer expects.
      const inOrder = Array.from({ length: 3 }, () => a.openStream("b"));
      await send(inOrder, (id) => `in order ${id}`);
      await until(() => seen.size === 3, 20_000);
      const stockBefore = b.fastPath!.stockScans;
      // Out of order: the last opened (an id beyond the look-ahead) carries bytes
      // while the streams before it carry none, then the others in reverse.
      const outOfOrder = Array.from({ length: 6 }, () => a.openStream("b"));
      const last = outOfOrder[outOfOrder.length - 1]!;
      await send([last], (id) => `out of order ${id}`);
      await until(() => seen.has(last.streamId), 20_000);
      await send(outOfOrder.slice(0, -1).reverse(), (id) => `out of order ${id}`);
      // Bytes of a 200 KiB frame on the control stream still arrive in full beside them.
      const big = "q".repeat(200 * 1024);
      assert.equal(((await a.request("b", "echo", big)) as { payload: string }).payload, big);
      await until(() => seen.size === 9, 20_000);
      assert.deepEqual(failures, []);
      for (const s of inOrder) assert.equal(seen.get(s.streamId), `in order ${s.streamId}`);
      for (const s of outOfOrder) assert.equal(seen.get(s.streamId), `out of order ${s.streamId}`);
      // Known streams were found without the library's iterators; new ones went through them.
      assert.ok(b.fastPath!.streamScans > 0, `stream scans ${JSON.stringify(b.fastPath)}`);
      assert.ok(b.fastPath!.stockScans > stockBefore, `stock scans ${JSON.stringify(b.fastPath)}`);
    });

    it("fails a writer blocked on flow control when the peer stops reading, on the patched hot path", async function () {
      this.timeout(60_000);
      let peerStream: ReturnType<PeerLinks["openStream"]> | undefined;
      const b = await agent(nodeCreds(ca, CLUSTER, "b"), { onStream: (_from, stream) => (peerStream = stream) });
      const a = await agent(nodeCreds(ca, CLUSTER, "a"));
      await a.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: b.port }] });
      const w = a.openStream("b").writable.getWriter();
      await w.write(Buffer.alloc(16));
      await until(() => peerStream !== undefined, 20_000);
      // The peer never reads, so 4 MiB cannot fit its 1 MiB stream window: the write blocks.
      const blocked = w.write(Buffer.alloc(4 * 1024 * 1024));
      blocked.catch(() => undefined);
      // STOP_SENDING: only the stream scan can wake the blocked writer to learn of it.
      await peerStream!.readable.cancel(new Error("not reading"));
      let timer: NodeJS.Timeout | undefined;
      const stillBlocked = new Promise<string>((resolve) => (timer = setTimeout(() => resolve("the writer is still blocked 20 s after STOP_SENDING"), 20_000)));
      await assert.rejects(Promise.race([blocked, stillBlocked]), (err: unknown) => err instanceof Error);
      clearTimeout(timer);
      assert.ok(a.fastPath!.streamScans > 0, `stream scans ${JSON.stringify(a.fastPath)}`);
    });

    it("applies the hot-path patch to its pinned library version only", () => {
      assert.doesNotThrow(() => assertPatchedVersion(PATCHED_QUIC_VERSION));
      assert.throws(() => assertPatchedVersion("2.0.10"), /@matrixai\/quic 2\.0\.10 is installed but .* patches 2\.0\.9 only/);
    });

    it("measures RTT, jitter and loss with probes and emits rtt samples", async () => {
      const a = await agent(nodeCreds(ca, CLUSTER, "a"));
      const b = await agent(nodeCreds(ca, CLUSTER, "b"));
      let samples = 0;
      a.on("rtt", () => (samples += 1));
      await a.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: b.port }] });
      await until(() => samples >= 3);
      const [link] = a.links();
      assert.ok(link !== undefined);
      assert.ok(link.probes.rttMs !== undefined && link.probes.rttMs > 0 && link.probes.rttMs < 200, `rtt ${String(link.probes.rttMs)}`);
      assert.ok(link.probes.jitterMs >= 0);
      assert.equal(link.probes.loss, 0);
      assert.ok(link.probes.answered >= 3);
    });

    const refusals: Array<{ name: string; client: () => NodeCreds; reason: string; unauthorise?: string }> = [
      { name: "a certificate from another cluster CA", client: () => nodeCreds(clusterCa(CLUSTER), CLUSTER, "a"), reason: "NotIssuedByClusterCa" },
      { name: "a self-signed certificate with a valid node name", client: () => selfSignedNodeCreds(CLUSTER, "a"), reason: "NotIssuedByClusterCa" },
      {
        name: "an expired certificate",
        client: () => nodeCreds(ca, CLUSTER, "a", { notBefore: new Date(Date.now() - 7_200_000), notAfter: new Date(Date.now() - 3_600_000) }),
        reason: "Expired",
      },
      { name: "a node that is not authorised", client: () => nodeCreds(ca, CLUSTER, "a"), reason: "NotAuthorised", unauthorise: "a" },
    ];
    for (const row of refusals) {
      it(`refuses ${row.name} at the handshake`, async () => {
        const b = await agent(nodeCreds(ca, CLUSTER, "b"));
        const seen: string[] = [];
        b.on("refused", (r) => seen.push(r.reason));
        // The attacker trusts the real cluster CA so it gets as far as presenting its certificate.
        const a = await agent(row.client(), { connectTimeoutMs: 2000 });
        if (row.unauthorise !== undefined) allowed.delete(row.unauthorise);
        // The dialler's own authoriser must not stop it before the wire (the attacker's would not).
        const attacker = row.unauthorise === undefined ? a : await agent(row.client(), { authorised: () => true, connectTimeoutMs: 2000 });
        await assert.rejects(attacker.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: b.port }] }));
        await until(() => seen.length > 0);
        assert.equal(seen[0], row.reason);
        assert.equal(b.links().length, 0);
        assert.equal(b.stats.refused >= 1, true);
      });
    }

    it("refuses a server whose certificate names a node other than the one dialled", async () => {
      const a = await agent(nodeCreds(ca, CLUSTER, "a"), { connectTimeoutMs: 2000 });
      const impostor = await agent(nodeCreds(ca, CLUSTER, "c"));
      const seen: string[] = [];
      a.on("refused", (r) => seen.push(r.reason));
      await assert.rejects(a.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: impostor.port }] }));
      assert.deepEqual(seen, ["WrongNode"]);
    });

    it("disconnects a node removed from the authorised set on reauthorise", async () => {
      const a = await agent(nodeCreds(ca, CLUSTER, "a"));
      const b = await agent(nodeCreds(ca, CLUSTER, "b"));
      const downs: string[] = [];
      b.on("down", (d) => downs.push(`${d.node}:${d.reason}`));
      await a.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: b.port }] });
      await until(() => b.links().length === 1);
      assert.deepEqual(await b.reauthorise(), []);
      allowed.delete("a");
      assert.deepEqual(await b.reauthorise(), ["a"]);
      assert.deepEqual(downs, ["a:NotAuthorised"]);
      assert.equal(b.links().length, 0);
      await until(() => a.links().length === 0);
    });

    it("closes the link on a hostile oversized or deep frame, counts it, and keeps serving", async () => {
      const b = await agent(nodeCreds(ca, CLUSTER, "b"), { frameLimits: { maxFrameBytes: 4096, maxDepth: 16 } });
      const a = await agent(nodeCreds(ca, CLUSTER, "a"));
      for (const [i, hostile] of [{ big: "x".repeat(10_000) }, JSON.parse(`${"[".repeat(100)}${"]".repeat(100)}`) as unknown].entries()) {
        await a.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: b.port }] });
        const downs: string[] = [];
        b.on("down", (d) => downs.push(d.reason));
        await assert.rejects(a.request("b", "echo", hostile, 3000));
        await until(() => downs.length === 1);
        assert.match(downs[0] ?? "", /^ProtocolError:(TooLarge|TooDeep)$/);
        assert.equal(b.stats.protocolErrors, i + 1);
        await until(() => a.links().length === 0);
      }
      // Still alive: a fresh, well-behaved link works.
      await a.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: b.port }] });
      assert.deepEqual(await a.request("b", "echo", 1), { from: "a", payload: 1 });
    });

    it("keeps one connection when both sides dial at once", async () => {
      const a = await agent(nodeCreds(ca, CLUSTER, "a"));
      const b = await agent(nodeCreds(ca, CLUSTER, "b"));
      await Promise.allSettled([
        a.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: b.port }] }),
        b.connect({ node: "a", endpoints: [{ host: "127.0.0.1", port: a.port }] }),
      ]);
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(a.links().length, 1);
      assert.equal(b.links().length, 1);
      assert.deepEqual(await a.request("b", "echo", 2), { from: "a", payload: 2 });
    });
  });
});
