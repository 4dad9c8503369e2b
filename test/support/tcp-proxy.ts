/**
 * A loopback TCP proxy for fault injection: freeze() stops forwarding
 * server-to-client bytes on every connection open at that moment without
 * closing it (a watch that goes silent but never ends). A frozen connection
 * thaws when the client sends on it again: that is a new request on a pooled
 * keep-alive connection, not the stream in progress (a watch's client never
 * sends after its request). Later connections are forwarded normally.
 * cut() resets every open connection and every new one until restore(): an
 * unreachable server, as a client sees it.
 */
import net from "node:net";

/** A running proxy. */
export interface TcpProxy {
  port: number;
  /** Connections currently open. */
  openConnections(): number;
  /** Silences every open connection (server-to-client); returns how many. */
  freeze(): number;
  /** Resets every open connection and refuses (resets) new ones until restore(). */
  cut(): void;
  restore(): void;
  /** Connections reset on arrival while cut. */
  refused(): number;
  /** Server-to-client bytes forwarded since the start or the last resetBytesDown(). */
  bytesDown(): number;
  resetBytesDown(): void;
  /** Holds each connection's server-to-client bytes past this count (upstream paused, nothing closed); undefined: never. */
  stallAfter(bytes: number | undefined): void;
  /** Connections open and held by stallAfter. */
  stalled(): number;
  close(): Promise<void>;
}

/** Starts a proxy on 127.0.0.1 to target host:port. */
export async function startTcpProxy(targetHost: string, targetPort: number): Promise<TcpProxy> {
  const conns = new Set<{ client: net.Socket; upstream: net.Socket; frozen: boolean; sent: number; stalled: boolean }>();
  let isCut = false;
  let refused = 0;
  let down = 0;
  let stallAt: number | undefined;
  const server = net.createServer((client) => {
    if (isCut) {
      refused++;
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(targetPort, targetHost);
    const c = { client, upstream, frozen: false, sent: 0, stalled: false };
    conns.add(c);
    client.on("data", (b) => {
      c.frozen = false;
      upstream.write(b);
    });
    upstream.on("data", (b) => {
      if (stallAt !== undefined && c.sent + b.length > stallAt) {
        c.stalled = true;
        upstream.pause();
        return;
      }
      if (c.frozen) return;
      c.sent += b.length;
      down += b.length;
      client.write(b);
    });
    const end = (): void => {
      conns.delete(c);
      client.destroy();
      upstream.destroy();
    };
    client.on("close", end).on("error", end);
    upstream.on("close", end).on("error", end);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const addr = server.address();
  if (typeof addr !== "object" || addr === null) throw new Error("proxy has no address");
  return {
    port: addr.port,
    openConnections: () => conns.size,
    freeze() {
      for (const c of conns) c.frozen = true;
      return conns.size;
    },
    cut() {
      isCut = true;
      for (const c of conns) {
        c.client.destroy();
        c.upstream.destroy();
      }
    },
    restore() {
      isCut = false;
    },
    refused: () => refused,
    bytesDown: () => down,
    resetBytesDown: () => void (down = 0),
    stallAfter: (bytes) => void (stallAt = bytes),
    stalled: () => [...conns].filter((c) => c.stalled).length,
    async close() {
      for (const c of conns) {
        c.client.destroy();
        c.upstream.destroy();
      }
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A free TCP port on 127.0.0.1 (racy by nature; fine for tests). */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  const addr = srv.address();
  await new Promise<void>((r) => srv.close(() => r()));
  if (typeof addr !== "object" || addr === null) throw new Error("no port");
  return addr.port;
}
