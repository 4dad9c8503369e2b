/**
 * Datagrams of one idle mesh link's probe exchanges: two PeerLinks endpoints
 * in this process (patched hot path, agent defaults unless told) over
 * loopback, a link from `a` to `b`, then every UDP datagram either side sends
 * over `seconds`, with its size and time. QUIC encrypts the frames, so the
 * kind is read from the size: a 1-RTT packet carrying only an ACK is under
 * 60 bytes here (short header, 20-byte connection id, ACK frame, 16-byte
 * AEAD tag); a probe frame on the control stream adds a STREAM frame and
 * ~25 bytes of JSON. Prints each exchange (datagrams within 500 ms of each
 * other) and the mean datagrams per exchange and per second.
 *
 *   npx tsx test/bench/quic-transport-exchange.bench.ts [seconds=30] [probeIntervalMs]
 */
import { performance } from "node:perf_hooks";
import type { Socket } from "node:dgram";
import { PeerLinks } from "../../agent/mesh/transport/peer-links.js";
import { PROBE_INTERVAL_MS } from "../../agent/mesh/transport/probe-stats.js";
import { clusterCa, nodeCreds } from "../support/mesh-certs.js";

const SECONDS = Number(process.argv[2] ?? 30);
const PROBE_MS = process.argv[3] === undefined ? undefined : Number(process.argv[3]);
const CLUSTER = "exchange";
/** Largest datagram counted as ACK-only (see the module comment). */
const ACK_ONLY_MAX = 60;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const ca = clusterCa(CLUSTER);
const start = (node: string) =>
  PeerLinks.start({ cluster: CLUSTER, ...nodeCreds(ca, CLUSTER, node), caPem: ca.certPem, authorised: () => true, host: "127.0.0.1", ...(PROBE_MS !== undefined ? { probeIntervalMs: PROBE_MS } : {}) });
const a = await start("a");
const b = await start("b");
const sent: { at: number; from: string; bytes: number }[] = [];
let recording = false;
for (const [name, links] of [["a", a], ["b", b]] as const) {
  // The library keeps its dgram socket in a protected field (as quic-config.ts's tuneSocketBuffers reads it).
  const udp = (links as unknown as { socket: { socket: Socket } }).socket.socket;
  const send = udp.send.bind(udp) as (...args: unknown[]) => void;
  (udp as unknown as { send: (...args: unknown[]) => void }).send = (...args: unknown[]) => {
    const buf = args[0] as Buffer;
    const len = typeof args[2] === "number" ? args[2] : buf.length;
    if (recording) sent.push({ at: performance.now(), from: name, bytes: len });
    send(...args);
  };
}
try {
  await a.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: b.port }] });
  await sleep(6000);
  recording = true;
  const t0 = performance.now();
  await sleep(SECONDS * 1000);
  recording = false;
  const wall = (performance.now() - t0) / 1000;
  const exchanges: (typeof sent)[] = [];
  for (const d of sent) {
    const cur = exchanges.at(-1);
    if (cur !== undefined && d.at - cur.at(-1)!.at < 500) cur.push(d);
    else exchanges.push([d]);
  }
  for (const e of exchanges) {
    const t = e[0]!.at;
    console.log(`${((t - t0) / 1000).toFixed(2)} s: ${e.map((d) => `${d.from}->${d.from === "a" ? "b" : "a"} ${d.bytes} B${d.bytes <= ACK_ONLY_MAX ? " (ACK only)" : ""} +${(d.at - t).toFixed(1)} ms`).join(", ")}`);
  }
  const ackOnly = sent.filter((d) => d.bytes <= ACK_ONLY_MAX).length;
  console.log(`one idle link over ${wall.toFixed(0)} s (probes every ${PROBE_MS ?? PROBE_INTERVAL_MS} ms): ${sent.length} datagrams (${ackOnly} ACK-only) in ${exchanges.length} exchanges = ${(sent.length / Math.max(1, exchanges.length)).toFixed(2)} per exchange, ${(sent.length / wall).toFixed(2)} datagrams/s for the link (both directions)`);
  const probes = a.links()[0]?.probes;
  const probesB = b.links()[0]?.probes;
  console.log(`  a: rtt ${probes?.rttMs?.toFixed(3)} ms, sent ${probes?.sent}, answered ${probes?.answered}; b: rtt ${probesB?.rttMs?.toFixed(3)} ms, sent ${probesB?.sent}, answered ${probesB?.answered}`);
} finally {
  await a.stop();
  await b.stop();
}
