/**
 * Benchmark child (not a benchmark itself): simulates a share of a fleet of
 * agents in one process with the agent's real transport (mTLS with the
 * node's own certificate, one keep-alive connection pool per agent) and the
 * real snapshot verification (lib/snapshot/verify.ts with the key from the
 * identity). Driven over IPC by agent-fleet.bench.ts.
 */
import { setMaxListeners } from "node:events";
import type { StoredIdentity } from "../../agent/enroll/identity-store.js";
import { trustedKeysOf } from "../../agent/sync/snapshot-sync.js";
import { SyncTransport } from "../../agent/sync/transport.js";
import { DEFAULT_MAX_SNAPSHOT_BYTES, verifySnapshot } from "../../lib/snapshot/verify.js";
import type { HeartbeatRequest } from "../../lib/agent-protocol.js";

/** One simulated agent's identity, as the parent sends it. */
export interface FleetIdentity {
  node: string;
  serial: string;
  keyPem: string;
  certPem: string;
}

/** Messages from the parent. */
export type ParentMessage =
  | { type: "setup"; server: string; cluster: string; serverCaPem: string; caPem: string; snapshotKey: { keyId: string; publicKey: string }; identities: FleetIdentity[] }
  | { type: "poll" }
  | { type: "stop-poll" }
  | { type: "heartbeat"; intervalMs: number; rampMs: number; warmupMs: number; measureMs: number };

const send = (m: unknown): void => {
  process.send?.(m);
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let ids: StoredIdentity[] = [];
let cluster = "";
let pollStop = new AbortController();
const pollTransports: SyncTransport[] = [];

async function pollLoop(id: StoredIdentity, t: SyncTransport, signal: AbortSignal): Promise<void> {
  const trustedKeys = trustedKeysOf(id);
  let lastSerial: number | undefined;
  let lastTerm: number | undefined;
  while (!signal.aborted) {
    try {
      const r = await t.pollSnapshot(lastSerial ?? 0, 30, DEFAULT_MAX_SNAPSHOT_BYTES, signal);
      if (r.kind !== "snapshot") continue;
      const v = verifySnapshot(r.bytes, { trustedKeys, cluster, node: id.info.node, lastSerial, lastTerm, now: new Date() });
      if (v.status === "unchanged") continue;
      lastSerial = v.snapshot.header.serial;
      lastTerm = v.snapshot.header.authorityTerm;
      send({ type: "verified", node: id.info.node, serial: lastSerial, at: process.hrtime.bigint().toString() });
    } catch (err) {
      if (signal.aborted) return;
      send({ type: "error", node: id.info.node, error: (err as Error).message });
      await sleep(500 + Math.random() * 1000);
    }
  }
}

async function heartbeats(intervalMs: number, rampMs: number, warmupMs: number, measureMs: number): Promise<void> {
  const start = Date.now();
  const from = start + warmupMs;
  const until = from + measureMs;
  const latencies: number[] = [];
  let failed = 0;
  await Promise.all(
    ids.map(async (id) => {
      const t = new SyncTransport(id);
      // Connections (TLS handshakes) are opened over the ramp, as a fleet that was already running would have them.
      await sleep(Math.random() * Math.max(rampMs, intervalMs));
      let seq = Date.now();
      while (Date.now() < until) {
        const body: HeartbeatRequest = { seq: ++seq, agentVersion: "0.1.0", capabilities: [], facts: { hostname: id.info.node, os: "linux" }, health: { status: "Healthy" } };
        const t0 = process.hrtime.bigint();
        try {
          await t.postJson("/v1/heartbeat", body);
          if (Date.now() >= from) latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
        } catch {
          failed++;
        }
        await sleep(intervalMs * (0.9 + 0.2 * Math.random()));
      }
      t.close();
    }),
  );
  send({ type: "heartbeats", latencies, failed });
}

process.on("message", (m: ParentMessage) => {
  if (m.type === "setup") {
    cluster = m.cluster;
    ids = m.identities.map((i) => ({
      dir: "/nonexistent",
      info: { server: m.server, cluster: m.cluster, node: i.node, joinRequest: "bench", snapshotKey: m.snapshotKey, serial: i.serial, notBefore: "", notAfter: "" },
      key: undefined as never,
      keyPem: i.keyPem,
      certPem: i.certPem,
      caPem: m.caPem,
      serverCaPem: m.serverCaPem,
    }));
    send({ type: "ready" });
  } else if (m.type === "poll") {
    pollStop = new AbortController();
    setMaxListeners(0, pollStop.signal);
    void (async () => {
      for (const [i, id] of ids.entries()) {
        const t = new SyncTransport(id);
        pollTransports.push(t);
        void pollLoop(id, t, pollStop.signal);
        if (i % 25 === 24) await sleep(50);
      }
    })();
  } else if (m.type === "stop-poll") {
    pollStop.abort();
    for (const t of pollTransports.splice(0)) t.close();
    send({ type: "stopped" });
  } else if (m.type === "heartbeat") {
    void heartbeats(m.intervalMs, m.rampMs, m.warmupMs, m.measureMs);
  }
});
