/**
 * Mesh transport: one QUIC connection (agent/mesh/transport, @matrixai/quic
 * tuned to 1350-byte datagrams and 4 MiB socket buffers) between two
 * processes on loopback, side by side in the same run with one TCP + TLS 1.3
 * connection (node:tls, mutual TLS, the same frames and handlers). Real
 * cluster-issued P-256 node certificates on both sides. Prints figures only.
 *
 *   npx tsx test/bench/quic-transport.bench.ts [serialRequests] [bulkMiB]
 *
 * Small RPC: 64-byte payload `echo`, one at a time (p50/p99 latency) and 16
 * in flight (requests/s). Bulk: 48 KiB string messages one way, then a
 * `bulkDone` request (ordered after them on the stream) returns the count.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { connect, type TLSSocket } from "node:tls";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { performance } from "node:perf_hooks";
import { encodeFrame, FrameDecoder } from "../../agent/mesh/transport/frames.js";
import { nodeServerName } from "../../agent/mesh/transport/peer-identity.js";
import { PeerLinks } from "../../agent/mesh/transport/peer-links.js";
import { repoRoot } from "../support/controlplane.js";
import { clusterCa, nodeCreds } from "../support/mesh-certs.js";

const SERIAL = Number(process.argv[2] ?? 2000);
const BULK_MIB = Number(process.argv[3] ?? 8);
const CONCURRENT = 16;
const CONCURRENT_TOTAL = 4000;
const CLUSTER = "bench";

const ca = clusterCa(CLUSTER);
const a = nodeCreds(ca, CLUSTER, "a");
const b = nodeCreds(ca, CLUSTER, "b");

const child = spawn(process.execPath, ["--import", "tsx", join(repoRoot, "test/bench/quic-transport-peer.ts")], { stdio: ["pipe", "pipe", "inherit"], cwd: repoRoot });
child.stdin.write(JSON.stringify({ cluster: CLUSTER, ...b, caPem: ca.certPem }) + "\n");
const rl = createInterface({ input: child.stdout });
const [portsLine] = (await once(rl, "line")) as [string];
const ports = JSON.parse(portsLine) as { quic: number; tls: number };

type Rpc = (method: string, payload: unknown) => Promise<unknown>;
type Send = (method: string, payload: unknown) => void;

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

const progress = (s: string): void => void (process.env["BENCH_VERBOSE"] && process.stderr.write(`${s}\n`));

async function measure(name: string, rpc: Rpc, send: Send): Promise<Record<string, string>> {
  progress(`${name}: serial`);
  const payload = "x".repeat(64);
  for (let i = 0; i < 200; i++) await rpc("echo", payload); // warm-up
  const lat: number[] = [];
  for (let i = 0; i < SERIAL; i++) {
    const t = performance.now();
    await rpc("echo", payload);
    lat.push(performance.now() - t);
  }
  lat.sort((x, y) => x - y);
  progress(`${name}: ${CONCURRENT} in flight`);
  let issued = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENT }, async () => {
      while (issued < CONCURRENT_TOTAL) {
        issued += 1;
        await rpc("echo", payload);
      }
    }),
  );
  const rps = CONCURRENT_TOTAL / ((performance.now() - t0) / 1000);
  progress(`${name}: bulk`);
  const chunk = "y".repeat(48 * 1024);
  const n = Math.ceil((BULK_MIB * 1024 * 1024) / chunk.length);
  const t1 = performance.now();
  for (let i = 0; i < n; i++) send("bulk", chunk);
  const got = (await rpc("bulkDone", null)) as number;
  const mibs = got / 1024 / 1024 / ((performance.now() - t1) / 1000);
  return {
    transport: name,
    "p50 ms": pct(lat, 50).toFixed(3),
    "p99 ms": pct(lat, 99).toFixed(3),
    "serial req/s": (SERIAL / (lat.reduce((s, x) => s + x, 0) / 1000)).toFixed(0),
    [`req/s (${CONCURRENT} in flight)`]: rps.toFixed(0),
    "bulk MiB/s": mibs.toFixed(1),
    "bulk bytes ok": String(got === n * chunk.length),
  };
}

// QUIC through the mesh links.
const links = await PeerLinks.start({ cluster: CLUSTER, ...a, caPem: ca.certPem, authorised: () => true, host: "127.0.0.1", requestTimeoutMs: 120_000 });
const th = performance.now();
await links.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: ports.quic }] });
const handshakeQuic = performance.now() - th;
const quic = await measure("QUIC (@matrixai/quic 2.0.9, 1350 B, 4 MiB bufs)", (m, p) => links.request("b", m, p), (m, p) => void links.send("b", m, p));
await links.stop();

// TCP + TLS 1.3, mutual TLS, same frames.
const tt = performance.now();
const sock: TLSSocket = connect({ host: "127.0.0.1", port: ports.tls, key: a.keyPem, cert: a.certPem, ca: ca.certPem, servername: nodeServerName(CLUSTER, "b"), minVersion: "TLSv1.3" });
await once(sock, "secureConnect");
const handshakeTls = performance.now() - tt;
sock.setNoDelay(true);
const pending = new Map<number, (v: unknown) => void>();
let nextId = 1;
const dec = new FrameDecoder();
sock.on("data", (c: Buffer) => {
  for (const f of dec.push(c)) if (f.t === "res" && f.ok) pending.get(f.id)?.(f.p);
});
const tlsRpc: Rpc = (m, p) =>
  new Promise((resolve) => {
    const id = nextId++;
    pending.set(id, (v) => {
      pending.delete(id);
      resolve(v);
    });
    sock.write(encodeFrame({ t: "req", id, m, p }));
  });
const tls = await measure("TCP + TLS 1.3 (node:tls, mutual)", tlsRpc, (m, p) => void sock.write(encodeFrame({ t: "msg", m, p })));
sock.destroy();

console.log(`mesh transport, two processes on loopback; ${SERIAL} serial 64-byte echoes, ${CONCURRENT_TOTAL} with ${CONCURRENT} in flight, ${BULK_MIB} MiB bulk`);
console.table([quic, tls]);
console.log(`handshake incl. first probe answer: QUIC ${handshakeQuic.toFixed(1)} ms, TLS ${handshakeTls.toFixed(1)} ms (P-256 node certificates)`);
child.stdin.end();
await once(child, "exit");
