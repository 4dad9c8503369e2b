/**
 * Benchmark child (not a benchmark itself): simulates a share of a fleet of
 * agents in one process with the agent's real transport (mTLS with the
 * node's own certificate, one keep-alive connection pool per agent) and the
 * real snapshot verification (lib/snapshot/verify.ts with the key from the
 * identity). Driven over IPC by agent-fleet.bench.ts.
 *
 * Heartbeats use, by default, a minimal client instead of the agent's
 * transport, so that the load generator costs as little CPU as possible
 * next to the server on the same cores: one mTLS connection per agent with
 * its own key and certificate (server verified against the agent API CA),
 * kept alive, carrying the same HTTP/1.1 request the agent sends, written
 * as one prebuilt string; the answer is checked for its status line and
 * read to its Content-Length. `client: "agent"` uses SyncTransport instead.
 */
import { setMaxListeners } from "node:events";
import tls from "node:tls";
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
  | { type: "heartbeat"; intervalMs: number; rampMs: number; warmupMs: number; measureMs: number; client?: "raw" | "agent" };

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

/** One agent's heartbeat connection: mTLS with its own certificate, kept alive, one request at a time. */
class RawHeartbeatClient {
  private sock: tls.TLSSocket | undefined;
  private connecting: Promise<tls.TLSSocket> | undefined;
  private waiting: { resolve: (status: number) => void; reject: (err: Error) => void; text: string; timer: NodeJS.Timeout } | undefined;
  private readonly head: string;
  /** Connections opened (1 unless the server or a timeout closed one). */
  connects = 0;

  constructor(
    private readonly id: StoredIdentity,
    private readonly host: string,
    private readonly port: number,
  ) {
    this.head = `POST /v1/heartbeat HTTP/1.1\r\nHost: ${host}:${port}\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: `;
  }

  private connect(): Promise<tls.TLSSocket> {
    if (this.connecting !== undefined) return this.connecting;
    const p = new Promise<tls.TLSSocket>((resolve, reject) => {
      this.connects++;
      let handshaking = true;
      const sock = tls.connect({ host: this.host, port: this.port, ca: this.id.serverCaPem, cert: this.id.certPem, key: this.id.keyPem });
      sock.setEncoding("utf8");
      sock.once("secureConnect", () => {
        handshaking = false;
        this.sock = sock;
        if (this.connecting === p) this.connecting = undefined;
        resolve(sock);
      });
      sock.on("data", (d: string) => {
        if (this.sock === sock) this.onData(d);
      });
      const gone = (err?: Error): void => {
        if (handshaking) {
          handshaking = false;
          if (this.connecting === p) this.connecting = undefined;
          reject(err ?? new Error("connection closed during the handshake"));
          return;
        }
        if (this.sock !== sock) return;
        this.sock = undefined;
        const w = this.waiting;
        if (w !== undefined) {
          this.waiting = undefined;
          clearTimeout(w.timer);
          w.reject(err ?? new Error("connection closed"));
        }
      };
      sock.on("error", gone);
      sock.on("close", () => gone());
    });
    this.connecting = p;
    return p;
  }

  private onData(d: string): void {
    const w = this.waiting;
    if (w === undefined) return;
    w.text += d;
    const end = w.text.indexOf("\r\n\r\n");
    if (end < 0) return;
    const m = /\r\ncontent-length: *(\d+)/i.exec(w.text.slice(0, end));
    if (w.text.length - end - 4 < Number(m?.[1] ?? 0)) return;
    this.waiting = undefined;
    clearTimeout(w.timer);
    if (/\r\nconnection: *close/i.test(w.text.slice(0, end))) this.sock?.end();
    w.resolve(Number(w.text.slice(9, 12)));
  }

  /** Connects now (the handshake of a fleet that was already running). */
  async open(): Promise<void> {
    await this.connect();
  }

  /** Posts a heartbeat; resolves with the HTTP status. */
  async post(body: string): Promise<number> {
    const sock = this.sock ?? (await this.connect());
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = undefined;
        sock.destroy();
        reject(new Error("heartbeat timed out"));
      }, 15_000);
      this.waiting = { resolve, reject, text: "", timer };
      sock.write(`${this.head}${Buffer.byteLength(body)}\r\n\r\n${body}`);
    });
  }

  close(): void {
    this.sock?.destroy();
  }
}

async function heartbeats(intervalMs: number, rampMs: number, warmupMs: number, measureMs: number, client: "raw" | "agent"): Promise<void> {
  const start = Date.now();
  const from = start + warmupMs;
  const until = from + measureMs;
  const latencies: number[] = [];
  let failed = 0;
  let failedTotal = 0;
  let reconnects = 0;
  let lastError = "";
  await Promise.all(
    ids.map(async (id) => {
      const url = new URL(id.info.server);
      const raw = client === "raw" ? new RawHeartbeatClient(id, url.hostname, Number(url.port)) : undefined;
      const t = client === "agent" ? new SyncTransport(id) : undefined;
      // Connections (TLS handshakes) are opened over the ramp, as a fleet that was already running would have them.
      await sleep(Math.random() * Math.max(rampMs, intervalMs));
      let seq = Date.now();
      const facts = `{"hostname":${JSON.stringify(id.info.node)},"os":"linux"}`;
      while (Date.now() < until) {
        const t0 = process.hrtime.bigint();
        try {
          if (raw !== undefined) {
            const status = await raw.post(`{"seq":${++seq},"agentVersion":"0.1.0","capabilities":[],"facts":${facts},"health":{"status":"Healthy"}}`);
            if (status !== 202) throw new Error(`HTTP ${status}`);
          } else {
            const body: HeartbeatRequest = { seq: ++seq, agentVersion: "0.1.0", capabilities: [], facts: { hostname: id.info.node, os: "linux" }, health: { status: "Healthy" } };
            await t?.postJson("/v1/heartbeat", body);
          }
          if (Date.now() >= from) latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
        } catch (err) {
          if (Date.now() >= from) failed++;
          failedTotal++;
          lastError = (err as Error).message;
        }
        await sleep(intervalMs * (0.9 + 0.2 * Math.random()));
      }
      if (raw !== undefined) reconnects += raw.connects - 1;
      raw?.close();
      t?.close();
    }),
  );
  send({ type: "heartbeats", latencies, failed, failedTotal, reconnects, lastError });
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
    void heartbeats(m.intervalMs, m.rampMs, m.warmupMs, m.measureMs, m.client ?? "raw");
  }
});
