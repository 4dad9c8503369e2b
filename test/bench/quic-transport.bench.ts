/**
 * Mesh transport: one QUIC connection (agent/mesh/transport, @matrixai/quic
 * tuned to 1350-byte datagrams and 4 MiB socket buffers) between two
 * processes on loopback, on the stock library and on the patched hot path
 * (quic-fast-path.ts), side by side in the same run with one TCP + TLS 1.3
 * connection (node:tls, mutual TLS, the same frames and handlers). Real
 * cluster-issued P-256 node certificates on both sides. Prints figures only.
 *
 *   npx tsx test/bench/quic-transport.bench.ts [serialRequests] [bulkMiB] [variants]
 *
 * `variants` is a comma list of stock, fast, tls (default all three), e.g.
 * to profile one of them (see the comment at the spawn below).
 *
 * Small RPC: 64-byte payload `echo`, one at a time and 16 in flight (p50/p99
 * latency, requests/s). Bulk: 48 KiB string messages one way, then a
 * `bulkDone` request (ordered after them on the stream) returns the count.
 * CPU per side (this process: process.cpuUsage; the peer: /proc, 10 ms
 * ticks) is given per request and per MiB: a figure that other load on the
 * machine moves much less than wall-clock time. On the patched hot path the
 * datagrams each side sent are counted per request and per MiB.
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
import { cpuSeconds } from "./proc-stats.js";

const SERIAL = Number(process.argv[2] ?? 2000);
const BULK_MIB = Number(process.argv[3] ?? 8);
const VARIANTS = new Set((process.argv[4] ?? "stock,fast,tls").split(","));
const CONCURRENT = 16;
const CONCURRENT_TOTAL = 4000;
const CLUSTER = "bench";

const ca = clusterCa(CLUSTER);
const a = nodeCreds(ca, CLUSTER, "a");
const b = nodeCreds(ca, CLUSTER, "b");

// `node --cpu-prof --cpu-prof-dir=DIR --import tsx <this file>` profiles both processes.
const profile = process.execArgv.filter((arg) => arg.startsWith("--cpu-prof"));
const child = spawn(process.execPath, [...profile, "--import", "tsx", join(repoRoot, "test/bench/quic-transport-peer.ts")], { stdio: ["pipe", "pipe", "inherit"], cwd: repoRoot });
child.stdin.write(JSON.stringify({ cluster: CLUSTER, ...b, caPem: ca.certPem }) + "\n");
const rl = createInterface({ input: child.stdout });
const [portsLine] = (await once(rl, "line")) as [string];
const ports = JSON.parse(portsLine) as { quicStock: number; quicFast: number; tls: number };
const peerPid = child.pid ?? 0;

/** CPU seconds of this process and of the peer since `from`. */
function cpu(): { self: number; peer: number } {
  const u = process.cpuUsage();
  return { self: (u.user + u.system) / 1e6, peer: cpuSeconds(peerPid) };
}
function cpuSince(from: { self: number; peer: number }): { self: number; peer: number } {
  const now = cpu();
  return { self: now.self - from.self, peer: now.peer - from.peer };
}

type Rpc = (method: string, payload: unknown) => Promise<unknown>;
type Send = (method: string, payload: unknown) => void;

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

const progress = (s: string): void => void (process.env["BENCH_VERBOSE"] && process.stderr.write(`${s}\n`));

async function latencies(rpc: Rpc, inFlight: number, total: number): Promise<{ lat: number[]; seconds: number }> {
  const payload = "x".repeat(64);
  const lat: number[] = [];
  let issued = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (issued < total) {
        issued += 1;
        const t = performance.now();
        await rpc("echo", payload);
        lat.push(performance.now() - t);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  lat.sort((x, y) => x - y);
  return { lat, seconds };
}

/** Datagrams sent by each side on the patched hot path (a: this process, b: the peer). */
type Datagrams = { a: number; b: number };
type CountDatagrams = () => Promise<Datagrams>;

async function measure(name: string, rpc: Rpc, send: Send, datagrams?: CountDatagrams): Promise<Record<string, string>> {
  const sent: Record<string, Datagrams> = {};
  const counted = async <T>(phase: string, run: () => Promise<T>): Promise<T> => {
    const before = await datagrams?.();
    const out = await run();
    const after = await datagrams?.();
    if (before !== undefined && after !== undefined) sent[phase] = { a: after.a - before.a, b: after.b - before.b };
    return out;
  };
  progress(`${name}: serial`);
  await latencies(rpc, 1, 200); // warm-up
  let c = cpu();
  const serial = await counted("serial", () => latencies(rpc, 1, SERIAL));
  const serialCpu = cpuSince(c);
  progress(`${name}: ${CONCURRENT} in flight`);
  c = cpu();
  const conc = await counted("conc", () => latencies(rpc, CONCURRENT, CONCURRENT_TOTAL));
  const concCpu = cpuSince(c);
  progress(`${name}: bulk`);
  const chunk = "y".repeat(48 * 1024);
  const n = Math.ceil((BULK_MIB * 1024 * 1024) / chunk.length);
  c = cpu();
  const t1 = performance.now();
  const got = await counted("bulk", async () => {
    for (let i = 0; i < n; i++) send("bulk", chunk);
    return (await rpc("bulkDone", null)) as number;
  });
  const mib = got / 1024 / 1024;
  const mibs = mib / ((performance.now() - t1) / 1000);
  const bulkCpu = cpuSince(c);
  const us = (s: number, count: number): string => ((s * 1e6) / count).toFixed(0);
  const per = (d: Datagrams | undefined, count: number, digits: number): string => (d === undefined ? "-" : `${(d.a / count).toFixed(digits)}/${(d.b / count).toFixed(digits)}`);
  return {
    transport: name,
    "1: p50/p99 ms": `${pct(serial.lat, 50).toFixed(2)}/${pct(serial.lat, 99).toFixed(2)}`,
    "1: req/s": (SERIAL / serial.seconds).toFixed(0),
    [`${CONCURRENT}: p50/p99 ms`]: `${pct(conc.lat, 50).toFixed(2)}/${pct(conc.lat, 99).toFixed(2)}`,
    [`${CONCURRENT}: req/s`]: (CONCURRENT_TOTAL / conc.seconds).toFixed(0),
    "CPU us/req a/b (1)": `${us(serialCpu.self, SERIAL)}/${us(serialCpu.peer, SERIAL)}`,
    [`CPU us/req a/b (${CONCURRENT})`]: `${us(concCpu.self, CONCURRENT_TOTAL)}/${us(concCpu.peer, CONCURRENT_TOTAL)}`,
    "bulk MiB/s": mibs.toFixed(1),
    "CPU ms/MiB a/b": `${((bulkCpu.self * 1000) / mib).toFixed(1)}/${((bulkCpu.peer * 1000) / mib).toFixed(1)}`,
    "bulk ok": String(got === n * chunk.length),
    "dgrams/req a/b (1)": per(sent["serial"], SERIAL, 2),
    [`dgrams/req a/b (${CONCURRENT})`]: per(sent["conc"], CONCURRENT_TOTAL, 2),
    "dgrams/MiB a/b": per(sent["bulk"], mib, 0),
  };
}

// QUIC through the mesh links: the stock library, then the patched hot path.
async function quic(fastPath: boolean, port: number): Promise<{ row: Record<string, string>; handshakeMs: number }> {
  const links = await PeerLinks.start({ cluster: CLUSTER, ...a, caPem: ca.certPem, authorised: () => true, host: "127.0.0.1", requestTimeoutMs: 120_000, fastPath });
  const th = performance.now();
  await links.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port }] });
  const handshakeMs = performance.now() - th;
  const label = fastPath ? "QUIC patched hot path" : "QUIC stock 2.0.9";
  const datagrams: CountDatagrams | undefined = fastPath
    ? async () => ({ a: links.fastPath?.datagramsOut ?? 0, b: (await links.request("b", "datagramsOut", null)) as number })
    : undefined;
  const row = await measure(label, (m, p) => links.request("b", m, p), (m, p) => void links.send("b", m, p), datagrams);
  await links.stop();
  return { row, handshakeMs };
}
const rows: Record<string, string>[] = [];
const handshakes: string[] = [];
for (const [variant, fastPath, port] of [["stock", false, ports.quicStock], ["fast", true, ports.quicFast]] as const) {
  if (!VARIANTS.has(variant)) continue;
  const r = await quic(fastPath, port);
  rows.push(r.row);
  handshakes.push(`QUIC ${variant} ${r.handshakeMs.toFixed(1)} ms`);
}

if (VARIANTS.has("tls")) {
  // TCP + TLS 1.3, mutual TLS, same frames.
  const tt = performance.now();
  const sock: TLSSocket = connect({ host: "127.0.0.1", port: ports.tls, key: a.keyPem, cert: a.certPem, ca: ca.certPem, servername: nodeServerName(CLUSTER, "b"), minVersion: "TLSv1.3" });
  await once(sock, "secureConnect");
  handshakes.push(`TLS ${(performance.now() - tt).toFixed(1)} ms`);
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
  rows.push(await measure("TCP + TLS 1.3 (node:tls, mutual)", tlsRpc, (m, p) => void sock.write(encodeFrame({ t: "msg", m, p }))));
  sock.destroy();
}

console.log(`mesh transport, two processes on loopback (a: this process, b: the peer); ${SERIAL} serial 64-byte echoes, ${CONCURRENT_TOTAL} with ${CONCURRENT} in flight, ${BULK_MIB} MiB bulk; QUIC: 1350 B datagrams, 4 MiB socket buffers`);
console.table(rows);
console.log(`handshake incl. first probe answer: ${handshakes.join(", ")} (P-256 node certificates)`);
child.stdin.end();
const exited = await Promise.race([once(child, "exit").then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 10_000).unref())]);
if (!exited) {
  console.log("peer did not exit within 10 s of its stdin closing (links.stop hung); killed");
  child.kill("SIGKILL");
}
