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
 *   callback, no event, no promise;
 * - finds the streams a datagram made readable or writable by asking quiche
 *   about each stream the connection knows (`streamReadable`,
 *   `streamCapacity`: under a microsecond each) instead of the stock
 *   `conn.readable()` / `conn.writable()` iterators, which cost 30-80 µs per
 *   call through the native binding (measured; one call per datagram was the
 *   largest single cost of a small RPC). A stream the peer opened, or
 *   anything readable that no known stream explains, goes to the stock scan;
 * - lets the mesh write a small chunk straight into quiche
 *   ({@link writeDirect}) when the stream has room for all of it and no
 *   earlier write is queued on it, instead of a WHATWG stream write (a
 *   promise, a queue entry, the library's async sink, an event);
 * - asks for a send pass straight from a stream that read or wrote, instead
 *   of dispatching the stream's `EventQUICStreamSend` through two event
 *   listeners to the same `send()` (nothing else listens to that event);
 * - finds the connection of a short-header datagram by comparing its
 *   destination id with the last connection's, before parsing the header and
 *   building a hex key for the connection map;
 * - re-arms the connection's timer only when quiche's next deadline moved
 *   earlier than the armed one (a timer that fires early is harmless: quiche
 *   acts only on expired deadlines and the library re-arms it).
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
import { QUICConnection, QUICConnectionId, QUICSocket, QUICStream, errors as quicErrors, events as quicEvents, native } from "@matrixai/quic";

/** The only @matrixai/quic version this patch was written against and measured with. */
export const PATCHED_QUIC_VERSION = "2.0.9";

/** Datagrams that took the fast path on one socket, and how their streams were found (status and tests). */
export interface FastPathCounters {
  datagramsIn: number;
  datagramsOut: number;
  /** Stream scans answered by asking quiche about each known stream. */
  streamScans: number;
  /** Chunks the mesh wrote straight into quiche ({@link writeDirect}). */
  directWrites: number;
  /** Stream scans handed to the stock iterators (a new peer stream, or more streams than {@link MAX_SCANNED_STREAMS}). */
  stockScans: number;
}

/** Above this many open streams the stock iterators are cheaper than asking about each stream. */
export const MAX_SCANNED_STREAMS = 16;

/** Peer-opened stream ids checked ahead of the next expected one (streams opened out of order). */
const NEW_STREAM_LOOKAHEAD = 4;

/** How the native binding words a STOP_SENDING from the peer (the library's own test, utils.isStreamStopped). */
const STREAM_STOPPED = /StreamStopped\(\d{1,16}\)/;

/** Marks a QUICSocket whose connections take the fast path, and holds its counters. */
const FAST = Symbol("meshQuicFastPath");

type SendResult = [number, { to: { host: string; port: number } }] | null;

/** The quiche connection handle, as far as the patch uses it. */
interface NativeConn {
  recv(data: Uint8Array, info: { to: { host: string; port: number }; from: { host: string; port: number } }): number;
  send(buf: Uint8Array): SendResult;
  timeout(): number | null;
  isReadable(): boolean;
  streamReadable(id: number): boolean;
  streamCapacity(id: number): number;
  streamSend(id: number, data: Uint8Array, fin: boolean): number | null;
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
  type: "client" | "server";
  streamMap: Map<number, StreamInternals>;
  /** Highest contiguous peer-opened bidirectional stream id seen (client-opened ids are 0 mod 4, server-opened 1 mod 4). */
  streamIdUsedClientBidi: number;
  streamIdUsedServerBidi: number;
  streamIdUsedSet: Set<number>;
  connTimeoutTimer?: { status: string | null; scheduled?: Date };
  processStreams(): void;
  setConnTimeoutTimer(): void;
  dispatchEvent(evt: Event): boolean;
  /** Set by this patch: a send pass is queued for the end of the turn. */
  fastSendQueued?: boolean;
  /** Set by this patch: datagrams were received and their streams are not yet looked at. */
  fastStreamsQueued?: boolean;
}

/** The QUICStream methods the stock scan calls for a stream quiche lists as readable or writable. */
interface StreamInternals {
  read(): void;
  write(): void;
  connection: ConnInternals;
}

type StockDispatch = (this: StreamInternals, evt: Event) => boolean;
let stockStreamDispatch: StockDispatch | undefined;

/** Replaces QUICStream.dispatchEvent: a send request of a stream on a fast connection queues the pass directly. */
function patchedStreamDispatch(this: StreamInternals, evt: Event): boolean {
  if (evt instanceof quicEvents.EventQUICStreamSend && this.connection !== undefined && fast(this.connection)) {
    void patchedSend.call(this.connection);
    return true;
  }
  return stockStreamDispatch!.call(this, evt);
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
  if (timerNeedsReset(c)) c.setConnTimeoutTimer();
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
  if (!c.fastStreamsQueued) {
    c.fastStreamsQueued = true;
    setImmediate(streamsPass, c, counters);
  }
}

/**
 * After the datagrams of one event-loop turn: hands what they carried to the
 * streams once, then queues the send pass (ACKs, and whatever the
 * application writes in answer, which rides in the same datagram: the pass
 * runs in the next turn, after the reads' promise callbacks).
 */
function streamsPass(c: ConnInternals, counters: FastPathCounters): void {
  c.fastStreamsQueued = false;
  if (fast(c)) {
    processStreams(c, counters);
  } else if (c[running]) {
    // Closing since the datagrams arrived: the stock scan knows what a stopping connection does.
    try {
      c.processStreams();
    } catch {
      // The stream reported its error through its own events.
    }
  }
  void patchedSend.call(c);
}

/**
 * Whether the connection's timer must be re-armed after a send pass: there
 * is none, it ran, or quiche's next deadline is earlier than the armed one.
 * A later deadline keeps the armed timer (it fires early, quiche does
 * nothing yet, the library arms the next one), which saves a timer reset
 * (~7 µs) on nearly every pass.
 */
function timerNeedsReset(c: ConnInternals): boolean {
  const t = c.connTimeoutTimer;
  if (t === undefined || t.status !== null || t.scheduled === undefined) return true;
  const timeout = c.conn.timeout();
  if (timeout === null) return true;
  return Date.now() + timeout + 1 < t.scheduled.getTime();
}

/** Whether `id` is a peer-opened bidirectional stream id not yet seen. */
function unseenPeerStream(c: ConnInternals, id: number): boolean {
  return !c.streamIdUsedSet.has(id);
}

/**
 * The stock `processStreams` without its iterators: each known stream that
 * quiche reports readable is read, each with send capacity (or stopped by
 * the peer) is told it may write, as the stock scan does for the streams its
 * iterators list. A readable stream the connection does not know yet (the
 * next ids the peer may open, or readable data no known stream accounts for)
 * and a connection with many streams go to the stock scan instead, which
 * creates the new stream; nothing is processed twice.
 */
function processStreams(c: ConnInternals, counters: FastPathCounters): void {
  const conn = c.conn;
  const map = c.streamMap;
  let stock = map.size > MAX_SCANNED_STREAMS;
  if (!stock) {
    const last = c.type === "server" ? c.streamIdUsedClientBidi : c.streamIdUsedServerBidi;
    for (let i = 1; i <= NEW_STREAM_LOOKAHEAD && !stock; i++) {
      const id = last + 4 * i;
      stock = unseenPeerStream(c, id) && conn.streamReadable(id);
    }
  }
  let anyReadable = false;
  if (!stock) {
    for (const id of map.keys()) {
      if (conn.streamReadable(id)) {
        anyReadable = true;
        break;
      }
    }
    // Something is readable that no known stream explains: a stream opened out of order.
    stock = !anyReadable && conn.isReadable();
  }
  if (stock) {
    counters.stockScans += 1;
    c.processStreams();
    return;
  }
  counters.streamScans += 1;
  for (const [id, stream] of map) {
    if (anyReadable && conn.streamReadable(id)) {
      stream.read();
      if (!map.has(id)) continue; // the read finished and destroyed it
    }
    let capacity: number;
    try {
      capacity = conn.streamCapacity(id);
    } catch (e) {
      // Stopped by the peer: the stream's own write() reports it, as the stock
      // scan does; any other refusal means quiche no longer holds the stream.
      if (e instanceof Error && STREAM_STOPPED.test(e.message)) stream.write();
      continue;
    }
    if (capacity > 0) stream.write();
  }
}

/** A QUICStream as {@link writeDirect} reads it. */
interface DirectStreamInternals {
  streamId: number;
  connection?: ConnInternals;
}

/**
 * Writes `chunk` straight into quiche's stream buffer when the stream's
 * connection is on the fast path and quiche can take all of it now, and
 * queues the connection's send pass; false (nothing written) otherwise, and
 * the caller writes through the stream's writer instead. The caller must not
 * use it while an earlier writer write on the stream is unfinished (order),
 * nor after closing the stream's writable side.
 */
export function writeDirect(stream: QUICStream, chunk: Uint8Array): boolean {
  const st = stream as unknown as DirectStreamInternals;
  const c = st.connection;
  if (c === undefined || chunk.byteLength === 0 || !fast(c)) return false;
  try {
    if (c.conn.streamCapacity(st.streamId) < chunk.byteLength) return false;
    // With the capacity checked, quiche takes the whole chunk.
    if (c.conn.streamSend(st.streamId, chunk, false) !== chunk.byteLength) return false;
  } catch {
    // Stopped or reset by the peer: the writer reports it on its next write.
    return false;
  }
  (c.socket as unknown as SocketInternals)[FAST]!.directWrites += 1;
  void patchedSend.call(c);
  return true;
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
  const streamProto = QUICStream.prototype as unknown as Record<string, unknown>;
  if (typeof streamProto["dispatchEvent"] !== "function" || typeof quicEvents.EventQUICStreamSend !== "function") {
    throw new Error(`@matrixai/quic ${version}: QUICStream.dispatchEvent or EventQUICStreamSend is missing; the fast path cannot be applied`);
  }
  stockSend = proto["send"] as StockSend;
  proto["send"] = patchedSend;
  stockStreamDispatch = streamProto["dispatchEvent"] as StockDispatch;
  streamProto["dispatchEvent"] = patchedStreamDispatch;
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
  const counters: FastPathCounters = { datagramsIn: 0, datagramsOut: 0, directWrites: 0, streamScans: 0, stockScans: 0 };
  const idLen = native.quiche.MAX_CONN_ID_LEN;
  // The connection the last short-header datagram went to, and its destination id.
  let lastConn: ConnInternals | undefined;
  let lastId: Buffer | undefined;
  const lookup = (data: Buffer): ConnInternals | undefined => {
    const short = data.length > idLen && (data[0]! & 0x80) === 0;
    if (short && lastId !== undefined && data.compare(lastId, 0, idLen, 1, 1 + idLen) === 0) return lastConn;
    let header: { dcid: Uint8Array };
    try {
      header = native.quiche.Header.fromSlice(data, idLen) as { dcid: Uint8Array };
    } catch {
      return undefined;
    }
    const conn = s.connectionMap.get(new QUICConnectionId(header.dcid)) as unknown as ConnInternals | undefined;
    if (short && conn !== undefined && header.dcid.length === idLen) {
      lastConn = conn;
      lastId = Buffer.from(header.dcid);
    }
    return conn;
  };
  const handler = (data: Buffer, rinfo: RemoteInfo): Promise<void> => {
    const conn = lookup(data);
    if (conn === undefined || !fast(conn) || conn.recvLock.isLocked()) {
      if (conn === lastConn) lastConn = lastId = undefined;
      return stock(data, rinfo);
    }
    recvFast(conn, counters, data, rinfo);
    return Promise.resolve();
  };
  s.socket.off("message", stock);
  s[FAST] = counters;
  s.handleSocketMessage = handler;
  s.socket.on("message", handler);
  return counters;
}
