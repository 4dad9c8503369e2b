/**
 * How the mesh tunes @matrixai/quic (figures: docs/benchmarks.md, "Mesh
 * transport"; reasons: docs/decisions.md). 1350-byte datagrams fit every
 * common path MTU without fragmentation (the library does no path-MTU
 * discovery); larger UDP socket buffers were the single biggest gain measured
 * (2.7 -> 6.1 MiB/s). The library keeps its dgram socket in a protected
 * field, so the buffers are set through the one accessor below; a library
 * upgrade that renames the field fails loudly at start, never silently.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { Socket } from "node:dgram";
import type { QUICConfig, QUICServerCrypto, QUICSocket } from "@matrixai/quic";

/** ALPN of the mesh protocol: both sides must speak it. */
export const MESH_ALPN = "fabric-mesh/1";

/** UDP payload size sent and accepted. */
export const MESH_UDP_PAYLOAD = 1350;

/** Largest read from one stream at a time (the library allocates one buffer of this size per stream). */
export const MESH_READ_CHUNK = 64 * 1024;

/** Default UDP socket buffer size (Linux caps it at net.core.rmem_max/wmem_max). */
export const MESH_SOCKET_BUFFER = 4 * 1024 * 1024;

/**
 * The QUIC options both sides share (without key, cert, verification).
 * `probeIntervalMs`: how often the mesh probes each link itself.
 */
export function meshQuicConfig(maxIdleTimeoutMs: number, probeIntervalMs: number): Partial<QUICConfig> {
  const keepAliveMs = Math.max(1000, Math.floor(maxIdleTimeoutMs / 3));
  return {
    applicationProtos: [MESH_ALPN],
    maxSendUdpPayloadSize: MESH_UDP_PAYLOAD,
    maxIdleTimeout: maxIdleTimeoutMs,
    // The library's keepalive is a fixed timer per connection that sends a
    // PING (and draws an ACK) whatever else was sent. The mesh's own probes
    // (every 3 s by default) keep the connection and NAT bindings alive, so
    // QUIC pings are only asked for when probes are slower than them.
    ...(probeIntervalMs > keepAliveMs ? { keepAliveIntervalTime: keepAliveMs } : {}),
    // The control stream plus data streams (TCP forwards, relayed streams, agent/mesh/forward.ts).
    initialMaxStreamsBidi: 128,
    initialMaxStreamsUni: 0,
    // One stream read takes what the datagrams of an event-loop turn carried
    // (up to ~32 datagrams per poll); the library's 4 KiB default splits it.
    readableChunkSize: MESH_READ_CHUNK,
  };
}

/** Stateless retry-token crypto of a server: HMAC-SHA256 under a per-process key. */
export function serverCrypto(): QUICServerCrypto {
  const key = randomBytes(32);
  const mac = (k: ArrayBuffer, data: ArrayBuffer): Buffer => createHmac("sha256", Buffer.from(k)).update(Buffer.from(data)).digest();
  const own = (b: Buffer): ArrayBuffer => {
    const out = new ArrayBuffer(b.length);
    new Uint8Array(out).set(b);
    return out;
  };
  return {
    key: own(key),
    ops: {
      sign: async (k, data) => own(mac(k, data)),
      verify: async (k, data, sig) => {
        const d = mac(k, data);
        const s = Buffer.from(sig);
        return s.length === d.length && timingSafeEqual(s, d);
      },
    },
  };
}

/** Client randomness for connection ids. */
export const clientCrypto = {
  ops: {
    randomBytes: async (data: ArrayBuffer): Promise<void> => {
      randomBytes(data.byteLength).copy(Buffer.from(data));
    },
  },
};

/** Sets the UDP socket buffers of a started QUICSocket; returns what the kernel granted. */
export function tuneSocketBuffers(socket: QUICSocket, bytes: number): { recv: number; send: number } {
  const raw = (socket as unknown as { socket?: Socket }).socket;
  if (raw === undefined || typeof raw.setRecvBufferSize !== "function") throw new Error("quic socket has no dgram socket: @matrixai/quic internals changed");
  raw.setRecvBufferSize(bytes);
  raw.setSendBufferSize(bytes);
  return { recv: raw.getRecvBufferSize(), send: raw.getSendBufferSize() };
}
