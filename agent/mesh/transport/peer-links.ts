/**
 * Mesh links between agents: one long-lived QUIC connection per peer, with
 * mutual TLS on cluster-issued node certificates, a small framed RPC
 * (request/response with ids and one-way messages on one bidirectional
 * stream) and keepalive probes that measure RTT, jitter and loss.
 *
 * One UDP socket per agent carries the server and every outbound connection
 * (one port to report in heartbeats, one NAT binding). The peer manager
 * drives this class: `connect`, `close`, `reauthorise` after each verified
 * snapshot, and it listens to `up`, `down`, `rtt` and `refused`.
 *
 * One connection per pair: when both sides dial at once, the connection
 * dialled by the node whose name sorts first is kept and the other closed,
 * so both sides choose the same one without talking about it.
 *
 * Probes on a link: the side that dialled probes every period; its pings
 * carry its last RTT sample and measured loss, and the other side answers
 * and takes those figures as its own, so an idle link costs one exchange
 * (ping, pong, the ACK of the pong) per period. The answering side's timer
 * is a watchdog: when no ping came for 1.5 periods it probes itself. A ping
 * without figures (the dialler's first, or a peer of an older version) is
 * answered with this side's own probe beside the pong.
 */
import { EventEmitter } from "node:events";
import { X509Certificate } from "node:crypto";
import { performance } from "node:perf_hooks";
import Logger, { LogLevel } from "@matrixai/logger";
import { QUICClient, QUICServer, QUICSocket, events as quicEvents, native, type QUICConnection, type QUICStream } from "@matrixai/quic";
import { DEFAULT_FRAME_LIMITS, encodeFrame, FrameDecoder, FrameError, type Frame, type FrameLimits } from "./frames.js";
import { nodeServerName, PeerRefused, revalidate, verifyPeerCertificate, type Authoriser, type PeerIdentity, type PeerRefusal } from "./peer-identity.js";
import { PROBE_INTERVAL_MS, ProbeStats, type ProbeSnapshot } from "./probe-stats.js";
import { clientCrypto, MESH_SOCKET_BUFFER, meshQuicConfig, serverCrypto, tuneSocketBuffers } from "./quic-config.js";
import { useFastReceive, writeDirect, type FastPathCounters } from "./quic-fast-path.js";

/** A queued outbox this large is written at once rather than at the end of the microtask. */
const FLUSH_BYTES = 256 * 1024;

/** Application close codes on a mesh connection. */
export const CloseCode = { Normal: 0, ProtocolError: 1, NotAuthorised: 2, Duplicate: 3, Expired: 4 } as const;

/** Where a peer listens. */
export interface Endpoint {
  host: string;
  port: number;
}

/** A peer to dial, as the peer directory lists it. */
export interface PeerAddress {
  node: string;
  endpoints: Endpoint[];
}

/** Answers a request from a peer; a throw becomes an error response (its message is sent). */
export type RequestHandler = (from: string, method: string, payload: unknown) => unknown;
/** Receives a one-way message from a peer. */
export type MessageHandler = (from: string, method: string, payload: unknown) => void;
/** Receives a stream the peer opened beside the link's control stream (the handler owns it). */
export type StreamHandler = (from: string, stream: QUICStream) => void;

/** What {@link PeerLinks.start} needs. */
export interface PeerLinksOptions {
  cluster: string;
  /** This node's FabricNode name. */
  node: string;
  /** The node's private key and certificate (PEM), as agent/enroll/identity-store.ts keeps them. */
  keyPem: string;
  certPem: string;
  /** The cluster CA (PEM). */
  caPem: string;
  /** Whether a node may hold a link (the peer manager answers from the verified snapshot). */
  authorised: Authoriser;
  /** Address to bind; default 0.0.0.0 with an ephemeral port. */
  host?: string;
  port?: number;
  onRequest?: RequestHandler;
  onMessage?: MessageHandler;
  /** Extra streams opened by peers (data streams, agent/mesh/forward.ts); without it they are refused. */
  onStream?: StreamHandler;
  /** Keepalive probe period; default {@link PROBE_INTERVAL_MS}. */
  probeIntervalMs?: number;
  /** A probe unanswered this long is lost; default the probe period. */
  probeTimeoutMs?: number;
  /** Default request timeout; default 10 s. */
  requestTimeoutMs?: number;
  /** Handshake timeout per endpoint; default 5 s. */
  connectTimeoutMs?: number;
  /** QUIC idle timeout; default 10 s. */
  idleTimeoutMs?: number;
  frameLimits?: FrameLimits;
  /** UDP socket buffers; default 4 MiB. */
  socketBufferBytes?: number;
  /** The patched library hot path (quic-fast-path.ts); default true, false only to measure the stock library. */
  fastPath?: boolean;
  now?: () => Date;
}

/** The state of one link, as `links()` reports it. */
export interface LinkInfo {
  node: string;
  direction: "inbound" | "outbound";
  remote: Endpoint;
  since: Date;
  certificateNotAfter: Date;
  probes: ProbeSnapshot;
}

/** Events of {@link PeerLinks}. */
export interface PeerLinkEvents {
  up: [LinkInfo];
  down: [{ node: string; reason: string }];
  rtt: [{ node: string; sampleMs: number; rttMs: number; jitterMs: number; loss: number }];
  refused: [{ reason: PeerRefusal; message: string; direction: "inbound" | "outbound" }];
  protocolError: [{ node: string; code: string; message: string }];
}

/** Counters for status and metrics. */
export interface PeerLinkCounters {
  protocolErrors: number;
  refused: number;
  requestsServed: number;
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

class Link {
  readonly stats = new ProbeStats();
  readonly pending = new Map<number, Pending>();
  readonly probes = new Map<number, number>();
  readonly since: Date;
  nextId = 1;
  closed = false;
  /** Whether `up` was emitted (so `down` is owed). */
  announced = false;
  stream: QUICStream | undefined;
  writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
  /** Encoded frames waiting for the end of the current microtask (see PeerLinks.write). */
  outbox: Uint8Array[] = [];
  outboxBytes = 0;
  /** One-way messages waiting for the link's next probe frame (see PeerLinks.sendWithProbe), by method. */
  readonly riders = new Map<string, Frame>();
  /** Writer writes not yet finished: while any is, frames go through the writer too (order). */
  writesPending = 0;
  timer: NodeJS.Timeout | undefined;
  /** When this side last sent a probe (performance.now()). */
  lastProbeAt = Number.NEGATIVE_INFINITY;
  /** When the peer's last ping arrived (performance.now()); from the link's start until the first. */
  lastPingAt = performance.now();
  /** Settles when the peer first answers on the stream (it has accepted this side's certificate), or the link closes. */
  readonly accepted: Promise<void>;
  markAccepted: () => void = () => undefined;
  markRefused: (e: Error) => void = () => undefined;

  constructor(
    readonly id: PeerIdentity,
    readonly conn: QUICConnection,
    readonly direction: "inbound" | "outbound",
    readonly client: QUICClient | undefined,
    now: Date,
  ) {
    this.since = now;
    this.accepted = new Promise<void>((resolve, reject) => {
      this.markAccepted = resolve;
      this.markRefused = reject;
    });
    // Inbound links and links nobody waits on must not leave an unhandled rejection.
    this.accepted.catch(() => undefined);
  }

  /** The node that dialled this connection. */
  dialler(self: string): string {
    return this.direction === "outbound" ? self : this.id.node;
  }

  info(): LinkInfo {
    return {
      node: this.id.node,
      direction: this.direction,
      remote: { host: this.conn.remoteHost, port: this.conn.remotePort },
      since: this.since,
      certificateNotAfter: this.id.notAfter,
      probes: this.stats.snapshot(),
    };
  }
}

/** The QUIC connection's cumulative packet counters (quiche's `stats()`: sent, declared lost), when the library exposes them. */
function packetCounters(conn: QUICConnection): { sent: number; lost: number } | undefined {
  try {
    const s = (conn as unknown as { conn?: { stats?: () => { sent: number; lost: number } } }).conn?.stats?.();
    return s === undefined ? undefined : { sent: s.sent, lost: s.lost };
  } catch {
    return undefined; // closed underneath
  }
}

/** Mesh links of one agent. See the module comment. */
export class PeerLinks {
  private readonly emitter = new EventEmitter();
  private readonly byNode = new Map<string, Link>();
  private readonly dialling = new Map<string, Promise<LinkInfo>>();
  private readonly ca: X509Certificate;
  private readonly limits: FrameLimits;
  private readonly now: () => Date;
  private readonly counters: PeerLinkCounters = { protocolErrors: 0, refused: 0, requestsServed: 0 };
  private readonly logger = new Logger("mesh-quic", LogLevel.SILENT);
  private stopped = false;

  private constructor(
    private readonly opts: PeerLinksOptions,
    private readonly socket: QUICSocket,
    private readonly server: QUICServer,
    /** The UDP buffer sizes the kernel granted. */
    readonly socketBuffers: { recv: number; send: number },
    /** Datagrams carried by the patched hot path (undefined when it is off). */
    readonly fastPath: Readonly<FastPathCounters> | undefined,
  ) {
    this.ca = new X509Certificate(opts.caPem);
    this.limits = opts.frameLimits ?? DEFAULT_FRAME_LIMITS;
    this.now = opts.now ?? (() => new Date());
    this.emitter.setMaxListeners(100);
  }

  /** Binds the UDP socket, starts the server and returns the links object. */
  static async start(opts: PeerLinksOptions): Promise<PeerLinks> {
    const logger = new Logger("mesh-quic", LogLevel.SILENT);
    const socket = new QUICSocket({ logger });
    await socket.start({ host: opts.host ?? "0.0.0.0", port: opts.port ?? 0 });
    let buffers: { recv: number; send: number };
    let fastPath: FastPathCounters | undefined;
    try {
      buffers = tuneSocketBuffers(socket, opts.socketBufferBytes ?? MESH_SOCKET_BUFFER);
      if (opts.fastPath !== false) fastPath = useFastReceive(socket);
    } catch (err) {
      await socket.stop({ force: true });
      throw err;
    }
    const ca = new X509Certificate(opts.caPem);
    // `self` is assigned before the server can accept: the callback only runs during a handshake.
    let self: PeerLinks | undefined;
    const server = new QUICServer({
      crypto: serverCrypto(),
      socket,
      logger,
      config: {
        ...meshQuicConfig(opts.idleTimeoutMs ?? 10_000, opts.probeIntervalMs ?? PROBE_INTERVAL_MS),
        key: opts.keyPem,
        cert: opts.certPem,
        ca: opts.caPem,
        verifyPeer: true,
        verifyCallback: async (certs) => (self === undefined ? native.CryptoError.InternalError : self.verifyCallback(certs[0], ca, "inbound")),
      },
    });
    await server.start();
    self = new PeerLinks(opts, socket, server, buffers, fastPath);
    server.addEventListener(quicEvents.EventQUICServerConnection.name, (evt) => {
      const conn = (evt as quicEvents.EventQUICServerConnection).detail;
      self?.accepted(conn);
    });
    return self;
  }

  /** The bound UDP port. */
  get port(): number {
    return this.socket.port;
  }

  /** Counters since start. */
  get stats(): Readonly<PeerLinkCounters> {
    return { ...this.counters };
  }

  /** Subscribes to an event. */
  on<K extends keyof PeerLinkEvents>(event: K, listener: (...args: PeerLinkEvents[K]) => void): this {
    this.emitter.on(event, listener as (...a: unknown[]) => void);
    return this;
  }

  /** Unsubscribes. */
  off<K extends keyof PeerLinkEvents>(event: K, listener: (...args: PeerLinkEvents[K]) => void): this {
    this.emitter.off(event, listener as (...a: unknown[]) => void);
    return this;
  }

  private emit<K extends keyof PeerLinkEvents>(event: K, ...args: PeerLinkEvents[K]): void {
    this.emitter.emit(event, ...args);
  }

  private refusalCode(reason: PeerRefusal): number {
    const c = native.CryptoError;
    switch (reason) {
      case "Expired":
        return c.CertificateExpired;
      case "NotIssuedByClusterCa":
        return c.UnknownCA;
      case "NotAuthorised":
      case "PinMismatch":
      case "OtherCluster":
      case "WrongNode":
        return c.AccessDenied;
      default:
        return c.BadCertificate;
    }
  }

  private verifyCallback(leaf: Uint8Array | undefined, ca: X509Certificate, direction: "inbound" | "outbound", expectedNode?: string): number | undefined {
    try {
      verifyPeerCertificate(leaf, ca, this.opts.cluster, this.opts.authorised, this.now(), expectedNode);
      return undefined;
    } catch (err) {
      if (!(err instanceof PeerRefused)) throw err;
      this.counters.refused += 1;
      this.emit("refused", { reason: err.reason, message: err.message, direction });
      return this.refusalCode(err.reason);
    }
  }

  /** Links that are up. */
  links(): LinkInfo[] {
    return [...this.byNode.values()].map((l) => l.info()).sort((a, b) => a.node.localeCompare(b.node));
  }

  /**
   * Ensures a link to `peer`: returns the existing one, or dials the
   * endpoints in order until one completes the handshake. Rejects with the
   * last failure (wrapped) when none does.
   */
  async connect(peer: PeerAddress): Promise<LinkInfo> {
    if (this.stopped) throw new Error("mesh links are stopped");
    const existing = this.byNode.get(peer.node);
    if (existing !== undefined) return existing.info();
    const inflight = this.dialling.get(peer.node);
    if (inflight !== undefined) return inflight;
    const p = this.dial(peer).finally(() => this.dialling.delete(peer.node));
    this.dialling.set(peer.node, p);
    return p;
  }

  private async dial(peer: PeerAddress): Promise<LinkInfo> {
    if (!this.opts.authorised(peer.node)) throw new PeerRefused("NotAuthorised", `node ${peer.node} is not authorised`);
    let last: unknown = new Error("peer has no endpoints");
    for (const ep of peer.endpoints) {
      let client: QUICClient;
      try {
        client = await QUICClient.createQUICClient(
          {
            host: ep.host,
            port: ep.port,
            serverName: nodeServerName(this.opts.cluster, peer.node),
            socket: this.socket,
            crypto: clientCrypto,
            logger: this.logger,
            config: {
              ...meshQuicConfig(this.opts.idleTimeoutMs ?? 10_000, this.opts.probeIntervalMs ?? PROBE_INTERVAL_MS),
              key: this.opts.keyPem,
              cert: this.opts.certPem,
              ca: this.opts.caPem,
              verifyPeer: true,
              verifyCallback: async (certs) => this.verifyCallback(certs[0], this.ca, "outbound", peer.node),
            },
          },
          { timer: this.opts.connectTimeoutMs ?? 5000 },
        );
      } catch (err) {
        last = err;
        continue;
      }
      const conn = client.connection;
      const id = this.identityOf(conn, peer.node);
      if (id === undefined) {
        await client.destroy({ isApp: true, errorCode: CloseCode.NotAuthorised, force: true }).catch(() => undefined);
        last = new PeerRefused("NotAuthorised", `node ${peer.node} failed verification after the handshake`);
        continue;
      }
      // Swallow the client's error events: a close is reported through `down`.
      client.addEventListener(quicEvents.EventQUICClientError.name, () => undefined);
      const link = new Link(id, conn, "outbound", client, this.now());
      if (!this.adopt(link, false)) {
        const kept = this.byNode.get(peer.node);
        if (kept !== undefined) return kept.info();
        throw new Error(`connecting to node ${peer.node}: duplicate connection lost the tie-break`);
      }
      conn.addEventListener(quicEvents.EventQUICConnectionStream.name, (evt) => this.extraStream(link, (evt as quicEvents.EventQUICConnectionStream).detail));
      const stream = conn.newStream("bidi");
      this.attachStream(link, stream);
      // The peer sees the stream only once bytes flow: probe at once. In QUIC the
      // client finishes its handshake before the server has judged the client's
      // certificate, so the link counts as up only when the peer first answers.
      this.probe(link);
      const timer = setTimeout(() => void this.closeLink(link, CloseCode.Normal, "AcceptTimeout"), this.opts.connectTimeoutMs ?? 5000);
      try {
        await link.accepted;
      } catch (err) {
        last = err;
        continue;
      } finally {
        clearTimeout(timer);
      }
      link.announced = true;
      this.emit("up", link.info());
      return link.info();
    }
    throw new Error(`connecting to node ${peer.node}`, { cause: last });
  }

  /** Re-reads the peer's certificate after the handshake (the server side learns the node name here). */
  private identityOf(conn: QUICConnection, expectedNode?: string): PeerIdentity | undefined {
    try {
      return verifyPeerCertificate(conn.getRemoteCertsChain()[0], this.ca, this.opts.cluster, this.opts.authorised, this.now(), expectedNode);
    } catch (err) {
      if (err instanceof PeerRefused) return undefined;
      throw err;
    }
  }

  private accepted(conn: QUICConnection): void {
    const id = this.identityOf(conn);
    if (id === undefined || this.stopped) {
      void conn.stop({ isApp: true, errorCode: CloseCode.NotAuthorised, force: true }).catch(() => undefined);
      return;
    }
    const link = new Link(id, conn, "inbound", undefined, this.now());
    if (!this.adopt(link)) return;
    conn.addEventListener(quicEvents.EventQUICConnectionStream.name, (evt) => {
      const stream = (evt as quicEvents.EventQUICConnectionStream).detail;
      if (link.stream === undefined && !link.closed) this.attachStream(link, stream);
      else this.extraStream(link, stream);
    });
  }

  /** A stream the peer opened besides the control stream: to the stream handler, or refused. */
  private extraStream(link: Link, stream: QUICStream): void {
    const handler = this.opts.onStream;
    if (handler === undefined || link.closed) {
      void stream.destroy({ force: true }).catch(() => undefined);
      return;
    }
    handler(link.id.node, stream);
  }

  /** Opens a new bidirectional stream on the link to `node` (the peer sees it with its first bytes); throws when there is no link. */
  openStream(node: string): QUICStream {
    const link = this.byNode.get(node);
    if (link === undefined || link.closed) throw new Error(`no link to node ${node}`);
    return link.conn.newStream("bidi");
  }

  /** Registers a fresh link, resolving a duplicate by the tie-break; false when `link` was closed instead. */
  private adopt(link: Link, emitUp = true): boolean {
    const node = link.id.node;
    const old = this.byNode.get(node);
    if (old !== undefined) {
      const preferred = [this.opts.node, node].sort()[0];
      if (old.dialler(this.opts.node) === preferred) {
        void this.closeLink(link, CloseCode.Duplicate, "Duplicate", false);
        return false;
      }
      void this.closeLink(old, CloseCode.Duplicate, "Duplicate");
    }
    this.byNode.set(node, link);
    link.conn.addEventListener(quicEvents.EventQUICConnectionStopped.name, () => void this.closeLink(link, CloseCode.Normal, "ConnectionClosed"), { once: true });
    this.scheduleProbes(link);
    if (emitUp) {
      link.announced = true;
      this.emit("up", link.info());
    }
    return true;
  }

  /** (Re)starts the link's probe period from now. */
  private scheduleProbes(link: Link): void {
    if (link.timer !== undefined) clearInterval(link.timer);
    link.timer = setInterval(() => this.probeTick(link), this.probeInterval);
    link.timer.unref();
  }

  private get probeInterval(): number {
    return this.opts.probeIntervalMs ?? PROBE_INTERVAL_MS;
  }

  /** The probe timer: the dialling side probes; the other only when the dialler's pings stopped coming (1.5 periods). */
  private probeTick(link: Link): void {
    if (link.direction === "inbound" && performance.now() - link.lastPingAt < 1.5 * this.probeInterval) return;
    this.probe(link);
  }

  private attachStream(link: Link, stream: QUICStream): void {
    link.stream = stream;
    link.writer = stream.writable.getWriter();
    void this.readLoop(link, stream);
  }

  private async readLoop(link: Link, stream: QUICStream): Promise<void> {
    const decoder = new FrameDecoder(this.limits);
    const reader = stream.readable.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const frame of decoder.push(value)) this.onFrame(link, frame);
      }
      await this.closeLink(link, CloseCode.Normal, "StreamEnded");
    } catch (err) {
      if (err instanceof FrameError) {
        this.counters.protocolErrors += 1;
        this.emit("protocolError", { node: link.id.node, code: err.code, message: err.message });
        await this.closeLink(link, CloseCode.ProtocolError, `ProtocolError:${err.code}`);
      } else {
        await this.closeLink(link, CloseCode.Normal, "StreamFailed");
      }
    }
  }

  /**
   * Queues a frame; frames written in the same microtask go to the stream as
   * one write at its end (Nagle-like, without a timer: no frame waits longer
   * than the current synchronous turn). Each stream write costs the library
   * a send pass over the connection, so coalescing is the cheapest gain
   * (docs/benchmarks.md, "Mesh transport"). Order on the stream is kept.
   */
  private write(link: Link, frame: Frame): void {
    if (link.closed || link.writer === undefined) return;
    const bytes = encodeFrame(frame);
    link.outbox.push(bytes);
    link.outboxBytes += bytes.length;
    if (link.outbox.length === 1) queueMicrotask(() => this.flush(link));
    else if (link.outboxBytes >= FLUSH_BYTES) this.flush(link);
    if ((frame.t === "ping" || frame.t === "pong") && link.riders.size > 0) {
      const riders = [...link.riders.values()];
      link.riders.clear();
      for (const r of riders) this.write(link, r);
    }
  }

  private flush(link: Link): void {
    const chunks = link.outbox;
    if (chunks.length === 0) return;
    const size = link.outboxBytes;
    link.outbox = [];
    link.outboxBytes = 0;
    if (link.closed || link.writer === undefined) return;
    const out = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
    // Straight into quiche when it has room and nothing is queued ahead (the common case of a probe or a small message).
    if (link.writesPending === 0 && link.stream !== undefined && this.fastPath !== undefined && writeDirect(link.stream, out)) return;
    link.writesPending += 1;
    link.writer.write(out).then(
      () => void (link.writesPending -= 1),
      () => {
        link.writesPending -= 1;
        void this.closeLink(link, CloseCode.Normal, "WriteFailed");
      },
    );
  }

  private onFrame(link: Link, frame: Frame): void {
    switch (frame.t) {
      case "ping": {
        const t = performance.now();
        link.lastPingAt = t;
        this.write(link, { t: "pong", id: frame.id });
        if (frame.r !== undefined && frame.l !== undefined) {
          // The peer's figures are this side's sample: no probe of its own (see the module comment).
          const packets = packetCounters(link.conn);
          if (packets !== undefined) link.stats.packetCounters(packets.sent, packets.lost);
          const rttMs = link.stats.peerSample(frame.r, frame.l);
          const s = link.stats.snapshot();
          this.emit("rtt", { node: link.id.node, sampleMs: frame.r, rttMs, jitterMs: s.jitterMs, loss: s.loss });
        } else if (t - link.lastProbeAt >= this.probeInterval / 2) {
          // No figures: this side's own probe rides with the pong (once per half period), and a
          // dialler's period restarts so both probes keep sharing one exchange.
          this.probe(link);
          if (link.direction === "outbound") this.scheduleProbes(link);
        }
        return;
      }
      case "pong": {
        const sentAt = link.probes.get(frame.id);
        link.markAccepted();
        if (sentAt === undefined) return; // late: already counted lost
        link.probes.delete(frame.id);
        const sample = performance.now() - sentAt;
        const rttMs = link.stats.answer(sample);
        const s = link.stats.snapshot();
        this.emit("rtt", { node: link.id.node, sampleMs: sample, rttMs, jitterMs: s.jitterMs, loss: s.loss });
        return;
      }
      case "req":
        void this.serve(link, frame.id, frame.m, frame.p);
        return;
      case "res": {
        const p = link.pending.get(frame.id);
        if (p === undefined) return;
        link.pending.delete(frame.id);
        clearTimeout(p.timer);
        if (frame.ok) p.resolve(frame.p);
        else p.reject(new Error(`peer ${link.id.node} answered an error: ${frame.e}`));
        return;
      }
      case "msg":
        try {
          this.opts.onMessage?.(link.id.node, frame.m, frame.p);
        } catch {
          // A faulty handler must not take the link down; the handler owns its errors.
        }
        return;
    }
  }

  private async serve(link: Link, id: number, method: string, payload: unknown): Promise<void> {
    const handler = this.opts.onRequest;
    try {
      if (handler === undefined) throw new Error(`no handler for ${method}`);
      const result = await handler(link.id.node, method, payload);
      this.counters.requestsServed += 1;
      this.write(link, { t: "res", id, ok: true, p: result ?? null });
    } catch (err) {
      this.write(link, { t: "res", id, ok: false, e: err instanceof Error ? err.message : "handler failed" });
    }
  }

  private probe(link: Link): void {
    if (link.closed) return;
    const timeout = this.opts.probeTimeoutMs ?? this.probeInterval;
    const t = performance.now();
    for (const [pid, sentAt] of link.probes) {
      if (t - sentAt >= timeout) {
        link.probes.delete(pid);
        link.stats.timeout();
      }
    }
    const packets = packetCounters(link.conn);
    if (packets !== undefined) link.stats.packetCounters(packets.sent, packets.lost);
    const id = link.nextId++;
    link.lastProbeAt = t;
    link.probes.set(id, t);
    link.stats.sentProbe();
    this.write(link, { t: "ping", id, ...link.stats.carried() });
  }

  /** Sends a request and waits for its response (the payload must be JSON). */
  request(node: string, method: string, payload: unknown, timeoutMs = this.opts.requestTimeoutMs ?? 10_000): Promise<unknown> {
    const link = this.byNode.get(node);
    if (link === undefined || link.closed) return Promise.reject(new Error(`no link to node ${node}`));
    const id = link.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        link.pending.delete(id);
        reject(new Error(`request ${method} to node ${node} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      link.pending.set(id, { resolve, reject, timer });
      this.write(link, { t: "req", id, m: method, p: payload });
    });
  }

  /** Sends a one-way message (and drops one of the same method waiting for a probe: this one is newer); false when there is no link. */
  send(node: string, method: string, payload: unknown): boolean {
    const link = this.byNode.get(node);
    if (link === undefined || link.closed) return false;
    link.riders.delete(method);
    this.write(link, { t: "msg", m: method, p: payload });
    return true;
  }

  /**
   * Sends a one-way message in the same datagram as a probe frame: at once
   * when a frame is already being written in this turn (a pong just
   * answered), else with the link's next ping or pong (within a probe
   * period). A later message of the same method replaces one still waiting.
   * For periodic refreshes that need no datagram (and ACK) of their own;
   * false when there is no link.
   */
  sendWithProbe(node: string, method: string, payload: unknown): boolean {
    const link = this.byNode.get(node);
    if (link === undefined || link.closed) return false;
    const frame: Frame = { t: "msg", m: method, p: payload };
    if (link.outbox.length > 0) this.write(link, frame);
    else link.riders.set(method, frame);
    return true;
  }

  /** Closes the link to a node, if any. */
  async close(node: string): Promise<void> {
    const link = this.byNode.get(node);
    if (link !== undefined) await this.closeLink(link, CloseCode.Normal, "Closed");
  }

  /**
   * Re-checks every link against the authoriser and the certificate's
   * expiry (call after each verified snapshot); closes those that fail and
   * returns their node names.
   */
  async reauthorise(): Promise<string[]> {
    const dropped: string[] = [];
    const now = this.now().getTime();
    for (const link of [...this.byNode.values()]) {
      const refusal = revalidate(link.id, this.opts.authorised);
      if (refusal !== undefined) {
        dropped.push(link.id.node);
        await this.closeLink(link, CloseCode.NotAuthorised, refusal);
      } else if (link.id.notAfter.getTime() < now) {
        dropped.push(link.id.node);
        await this.closeLink(link, CloseCode.Expired, "Expired");
      }
    }
    return dropped;
  }

  private async closeLink(link: Link, code: number, reason: string, registered = true): Promise<void> {
    if (link.closed) return;
    link.closed = true;
    link.markRefused(new Error(`link to node ${link.id.node} closed before the peer answered: ${reason}`, { cause: link.conn.getConnectionError() }));
    if (link.timer !== undefined) clearInterval(link.timer);
    for (const p of link.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new Error(`link to node ${link.id.node} closed: ${reason}`));
    }
    link.pending.clear();
    if (registered && this.byNode.get(link.id.node) === link) {
      this.byNode.delete(link.id.node);
      if (link.announced) this.emit("down", { node: link.id.node, reason });
    }
    try {
      if (link.client !== undefined) await link.client.destroy({ isApp: true, errorCode: code, force: true });
      else await link.conn.stop({ isApp: true, errorCode: code, force: true });
    } catch {
      // Already closed by the peer or the idle timer: nothing left to release.
    }
  }

  /** Closes every link, the server and the socket. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await Promise.allSettled([...this.dialling.values()]);
    await Promise.all([...this.byNode.values()].map((l) => this.closeLink(l, CloseCode.Normal, "Stopped")));
    await this.server.stop({ isApp: true, errorCode: CloseCode.Normal, force: true });
    await this.socket.stop({ force: true });
  }
}
