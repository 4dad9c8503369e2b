/**
 * A runtime patch of @matrixai/quic's hot path, pinned to one library version
 * (figures: docs/benchmarks.md, "Mesh transport"; reasons: docs/decisions.md).
 *
 * The stock library runs every received datagram through an async socket
 * handler, a `Lock` per datagram (timers and abort controllers), a full send
 * pass per datagram (one ACK packet per data packet), and every sent datagram
 * through an event object, an async listener and a promisified `dgram.send`.
 * Once a connection is established and its peer verified, this patch:
 *
 * - receives synchronously: the datagram goes straight to quiche and to the
 *   streams, without the lock (nothing else can interleave: the only await in
 *   the stock recv/send pair is the certificate check, done by then);
 * - coalesces sends: any number of `send()` requests (a datagram received, a
 *   stream written or read, a timer) in one event-loop turn become one send
 *   pass at the end of the turn (`setImmediate`), so a burst of datagrams is
 *   acknowledged by one ACK and a response rides with it;
 * - sends each packet quiche produces with one `dgram.send` and a shared
 *   callback, no event, no promise.
 *
 * Everything else (handshake, certificate verification, starting, stopping,
 * closing, draining, errors) stays on the stock code: a connection takes the
 * fast path only while it is running, verified and not closing, and any
 * surprise falls back to the stock method. (Taking it while the connection
 * was stopping made quiche's stock send loop spin: measured, see
 * docs/decisions.md.) Applied once per process by
 * {@link installQuicFastPath}; a library version other than
 * {@link PATCHED_QUIC_VERSION} or a changed internal fails loudly at start.
 */
import { createRequire } from "node:module";
import type { RemoteInfo, Socket } from "node:dgram";
import { running, status } from "@matrixai/async-init";
import { QUICConnection, QUICConnectionId, QUICSocket, errors as quicErrors, events as quicEvents, native } from "@matrixai/quic";

/** The only @matrixai/quic version this patch was written against and measured with. */
export const PATCHED_QUIC_VERSION = "2.0.9";

/** Datagrams that took the fast path on one socket (status and tests). */
export interface FastPathCounters {
  datagramsIn: number;
  datagramsOut: number;
}

/** Marks a QUICSocket whose connections take the fast path, and holds its counters. */
const FAST = Symbol("meshQuicFastPath");

type SendResult = [number, { to: { host: string; port: number } }] | null;

/** The quiche connection handle, as far as the patch uses it. */
interface NativeConn {
  recv(data: Uint8Array, info: { to: { host: string; port: number }; from: { host: string; port: number } }): number;
  send(buf: Uint8Array): SendResult;
  isDraining(): boolean;
  isClosed(): boolean;
  localError(): unknown;
  peerError(): unknown;
}

/** The library internals the patch reads (stable within {@link PATCHED_QUIC_VERSION}). */
interface ConnInternals {
  [running]: boolean;
  [status]: string | null;
  conn: NativeConn;
  socket: QUICSocket;
  config: { maxSendUdpPayloadSize: number };
  secureEstablished: boolean;
  recvLock: { isLocked(): boolean };
  localHost: string;
  localPort: number;
  _remoteHost: string;
  _remotePort: number;
  processStreams(): void;
  setConnTimeoutTimer(): void;
  dispatchEvent(evt: Event): boolean;
  /** Set by this patch: a send pass is queued for the end of the turn. */
  fastSendQueued?: boolean;
}

interface SocketInternals {
  [FAST]?: FastPathCounters;
  socket: Socket;
  connectionMap: { get(id: QUICConnectionId): QUICConnection | undefined };
  handleSocketMessage: (data: Buffer, rinfo: RemoteInfo) => Promise<void>;
}

type StockSend = (this: ConnInternals) => Promise<void>;

let stockSend: StockSend | undefined;
const ignoreSendError = (): void => undefined;

function libraryVersion(): string {
  const require = createRequire(import.meta.url);
  return (require("@matrixai/quic/package.json") as { version: string }).version;
}

/**
 * Whether a connection may use the fast path now: running (not starting or
 * stopping), verified, and not closing; everything else is stock.
 */
function fast(c: ConnInternals): boolean {
  return (c.socket as unknown as SocketInternals)[FAST] !== undefined && c[running] && c[status] === null && c.secureEstablished && !c.conn.isDraining() && !c.conn.isClosed() && c.conn.localError() == null;
}

/** One send pass: every packet quiche has ready, straight to the UDP socket. */
function sendPass(c: ConnInternals): void {
  c.fastSendQueued = false;
  if (!fast(c)) {
    void stockSend!.call(c).catch(() => undefined);
    return;
  }
  const s = c.socket as unknown as SocketInternals;
  const counters = s[FAST]!;
  const udp = s.socket;
  const size = c.config.maxSendUdpPayloadSize;
  for (;;) {
    const buf = Buffer.allocUnsafe(size);
    let result: SendResult;
    try {
      result = c.conn.send(buf);
    } catch {
      // Let the stock path raise the library's internal error event.
      void stockSend!.call(c).catch(() => undefined);
      return;
    }
    if (result === null) break;
    counters.datagramsOut += 1;
    udp.send(buf, 0, result[0], result[1].to.port, result[1].to.host, ignoreSendError);
  }
  c.setConnTimeoutTimer();
  // A peer close is reported by the stock send (its loop finds nothing left to send).
  if (c.conn.peerError() != null) void stockSend!.call(c).catch(() => undefined);
}

/** Replaces QUICConnection.send: established connections queue one pass per turn. */
function patchedSend(this: ConnInternals): Promise<void> {
  if (!fast(this)) return stockSend!.call(this);
  if (!this.fastSendQueued) {
    this.fastSendQueued = true;
    setImmediate(sendPass, this);
  }
  return Promise.resolve();
}

/** Synchronous receive of one datagram on an established connection (the stock `recv` without its lock). */
function recvFast(c: ConnInternals, counters: FastPathCounters, data: Buffer, rinfo: RemoteInfo): void {
  counters.datagramsIn += 1;
  try {
    c.conn.recv(data, { to: { host: c.localHost, port: c.localPort }, from: { host: rinfo.address, port: rinfo.port } });
  } catch (e) {
    // The same outcome as the stock recv: a local error closes the connection,
    // anything else is an internal error of the library.
    const localError = c.conn.localError();
    if (localError == null) {
      const err = new quicErrors.ErrorQUICConnectionInternal("Failed connection recv due with unknown error", { cause: e });
      c.dispatchEvent(new quicEvents.EventQUICConnectionError({ detail: err }));
      return;
    }
    const err =
      e instanceof Error && e.message === "TlsFail"
        ? new quicErrors.ErrorQUICConnectionLocalTLS("Failed connection due to native TLS verification", { cause: e, data: localError as never })
        : new quicErrors.ErrorQUICConnectionLocal("Failed connection due to local error", { cause: e, data: localError as never });
    c.dispatchEvent(new quicEvents.EventQUICConnectionError({ detail: err }));
    return;
  }
  c._remoteHost = rinfo.address;
  c._remotePort = rinfo.port;
  c.processStreams();
  void patchedSend.call(c);
}

/** Throws unless `version` is the one the patch was written for. */
export function assertPatchedVersion(version: string): void {
  if (version !== PATCHED_QUIC_VERSION) {
    throw new Error(`@matrixai/quic ${version} is installed but agent/mesh/transport/quic-fast-path.ts patches ${PATCHED_QUIC_VERSION} only: re-measure and update the patch`);
  }
}

/**
 * Patches the library once per process (idempotent). Throws when the
 * installed @matrixai/quic is not {@link PATCHED_QUIC_VERSION} or its
 * internals are not where this patch expects them.
 */
export function installQuicFastPath(): void {
  if (stockSend !== undefined) return;
  const version = libraryVersion();
  assertPatchedVersion(version);
  const proto = QUICConnection.prototype as unknown as Record<string, unknown>;
  for (const name of ["send", "recv", "processStreams", "setConnTimeoutTimer"]) {
    if (typeof proto[name] !== "function") throw new Error(`@matrixai/quic ${version}: QUICConnection.${name} is missing; the fast path cannot be applied`);
  }
  // The status symbols must be the ones the library's own @matrixai/async-init defines.
  if (!(running in QUICConnection.prototype) || !(status in QUICConnection.prototype)) {
    throw new Error(`@matrixai/quic ${version}: QUICConnection does not use this @matrixai/async-init's status symbols; the fast path cannot be applied`);
  }
  stockSend = proto["send"] as StockSend;
  proto["send"] = patchedSend;
}

/**
 * Routes a started socket's datagrams for established connections to the
 * synchronous receive; everything else (new connections, handshakes, non-QUIC
 * datagrams) goes to the stock handler. Call after `socket.start()`.
 */
export function useFastReceive(socket: QUICSocket): FastPathCounters {
  installQuicFastPath();
  const s = socket as unknown as SocketInternals;
  const stock = s.handleSocketMessage;
  if (typeof stock !== "function" || s.socket === undefined || s.connectionMap === undefined) {
    throw new Error(`@matrixai/quic: QUICSocket internals changed; the fast receive path cannot be applied`);
  }
  const counters: FastPathCounters = { datagramsIn: 0, datagramsOut: 0 };
  const handler = (data: Buffer, rinfo: RemoteInfo): Promise<void> => {
    let header: { dcid: Uint8Array };
    try {
      header = native.quiche.Header.fromSlice(data, native.quiche.MAX_CONN_ID_LEN) as { dcid: Uint8Array };
    } catch {
      return stock(data, rinfo);
    }
    const conn = s.connectionMap.get(new QUICConnectionId(header.dcid)) as unknown as ConnInternals | undefined;
    if (conn === undefined || !fast(conn) || conn.recvLock.isLocked()) return stock(data, rinfo);
    recvFast(conn, counters, data, rinfo);
    return Promise.resolve();
  };
  s.socket.off("message", stock);
  s[FAST] = counters;
  s.handleSocketMessage = handler;
  s.socket.on("message", handler);
  return counters;
}
