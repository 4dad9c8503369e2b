/**
 * Snapshot builder and verifier costs: build, canonicalise and sign 10,000
 * realistic node snapshots (3-7 workloads, 3-7 mesh peers, 1 VPN assignment,
 * 2 updates; ~5 of each on average), then verify each as an agent would.
 * Prints figures only; asserts nothing.
 *
 *   npx tsx test/bench/snapshot.bench.ts [count]
 */
import { generateKeyPairSync, sign as edSign, verify as edVerify } from "node:crypto";
import { performance } from "node:perf_hooks";
import { sampleHeader, sampleNodeName, samplePayload } from "../../lib/snapshot/fixtures.js";
import { encodeSnapshot, keyIdOf, signAndEncodeSnapshot, signedMessage, signSnapshot, type SnapshotHeader, type SnapshotPayload } from "../../lib/snapshot/format.js";
import { assertSnapshotHeader, assertSnapshotPayload } from "../../lib/snapshot/shape.js";
import { verifySnapshot } from "../../lib/snapshot/verify.js";

const COUNT = Number(process.argv[2] ?? 10_000);
const { publicKey, privateKey } = generateKeyPairSync("ed25519");
const keyId = keyIdOf(publicKey);
const issuedAt = new Date("2025-01-01T00:00:00.000Z");
const now = new Date("2025-01-01T01:00:00.000Z");

function build(i: number): { header: SnapshotHeader; payload: SnapshotPayload } {
  const node = sampleNodeName(i);
  return {
    header: sampleHeader({ keyId, node, serial: 1000 + i, authorityTerm: 4, issuedAt }),
    payload: samplePayload(i, { node, workloads: 3 + (i % 5), meshPeers: 3 + ((i * 7) % 5), vpnAssignments: 1 }),
  };
}

function us(ms: number, n = COUNT): string {
  return `${((ms * 1000) / n).toFixed(1)} µs`;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
}

// Warm up the JIT on a different set of nodes.
for (let i = 0; i < 500; i++) {
  const { header, payload } = build(COUNT + i);
  verifySnapshot(encodeSnapshot(signSnapshot(header, payload, privateKey)), {
    trustedKeys: new Map([[keyId, publicKey]]),
    cluster: "eu-1",
    node: header.node,
    now,
  });
}

// 1. End to end, the way the snapshot builder will call it (one canonicalisation).
let t = performance.now();
const encoded: Buffer[] = new Array(COUNT);
for (let i = 0; i < COUNT; i++) {
  const { header, payload } = build(i);
  encoded[i] = signAndEncodeSnapshot(header, payload, privateKey).bytes;
}
const totalMs = performance.now() - t;

// The two-call path canonicalises twice (signSnapshot, then encodeSnapshot).
t = performance.now();
for (let i = 0; i < COUNT; i++) {
  const { header, payload } = build(i);
  encodeSnapshot(signSnapshot(header, payload, privateKey));
}
const twoCallMs = performance.now() - t;

// 2. The same work, phase by phase.
t = performance.now();
const built = Array.from({ length: COUNT }, (_, i) => build(i));
const buildMs = performance.now() - t;

t = performance.now();
for (const { header, payload } of built) {
  assertSnapshotHeader(header);
  assertSnapshotPayload(payload);
}
const shapeMs = performance.now() - t;

t = performance.now();
const messages = built.map(({ header, payload }) => signedMessage(header, payload));
const canonMs = performance.now() - t;

t = performance.now();
const signatures = messages.map((m) => edSign(null, m, privateKey).toString("base64"));
const signMs = performance.now() - t;

t = performance.now();
for (let i = 0; i < COUNT; i++) {
  const b = built[i];
  const s = signatures[i];
  if (b === undefined || s === undefined) throw new Error("bench: missing snapshot");
  encodeSnapshot({ header: b.header, payload: b.payload, signature: s });
}
const encodeMs = performance.now() - t;

// 3. Sizes.
const sizes = encoded.map((b) => b.length).sort((a, b) => a - b);
const mean = sizes.reduce((a, b) => a + b, 0) / COUNT;

// 4. Agent side.
t = performance.now();
for (let i = 0; i < COUNT; i++) {
  const bytes = encoded[i];
  if (bytes === undefined) throw new Error("bench: missing snapshot");
  verifySnapshot(bytes, {
    trustedKeys: new Map([[keyId, publicKey]]),
    cluster: "eu-1",
    node: sampleNodeName(i),
    lastTerm: 4,
    lastSerial: 999 + i,
    now,
  });
}
const verifyMs = performance.now() - t;

t = performance.now();
for (let i = 0; i < COUNT; i++) {
  const m = messages[i];
  const s = signatures[i];
  if (m === undefined || s === undefined) throw new Error("bench: missing snapshot");
  edVerify(null, m, publicKey, Buffer.from(s, "base64"));
}
const edVerifyMs = performance.now() - t;

const rows: Array<[string, string]> = [
  ["snapshots", String(COUNT)],
  ["node / cpus", `${process.version} / ${(await import("node:os")).cpus().length}`],
  ["build+sign+encode total", `${totalMs.toFixed(0)} ms (${us(totalMs)} per snapshot, signAndEncodeSnapshot)`],
  ["  same via signSnapshot+encodeSnapshot", `${twoCallMs.toFixed(0)} ms (${us(twoCallMs)} per snapshot)`],
  ["  build payload (fixtures)", us(buildMs)],
  ["  shape check", us(shapeMs)],
  ["  canonicalize {header,payload}", us(canonMs)],
  ["  ed25519 sign", us(signMs)],
  ["  canonicalize envelope (encodeSnapshot, avoidable)", us(encodeMs)],
  ["bytes per snapshot", `mean ${mean.toFixed(0)}, p50 ${percentile(sizes, 50)}, p99 ${percentile(sizes, 99)}, max ${sizes[sizes.length - 1]}`],
  ["verifySnapshot per snapshot", us(verifyMs)],
  ["  of which ed25519 verify", us(edVerifyMs)],
];
const width = Math.max(...rows.map(([k]) => k.length));
for (const [k, v] of rows) console.log(`${k.padEnd(width)}  ${v}`);
