/**
 * Mesh data streams of one agent: it opens streams to other nodes along the
 * path the routing engine picks (direct, or one relay hop), serves the
 * streams peers open to it (as target or as relay), and forwards local TCP
 * ports to (node, port).
 *
 * A data stream is a QUIC stream beside a link's control stream. Its first
 * frame is a header (forward-policy.ts), answered by `{ok}` or
 * `{ok:false, error:"<Reason>: <detail>"}` before a byte of payload flows:
 *
 *   direct:   source --[tcp|ping]--> target
 *   relayed:  source --[relay target]--> relay --[relayed source]--> target,
 *             then TLS between source and target through the relay's
 *             splice, then the inner [tcp|ping] header inside TLS.
 *
 * The relay checks both ends against its own verified snapshot (routing.ts
 * mayForward) and holds a live link to the target; it never opens a second
 * relay hop. The target accepts a `tcp` stream only for a port a
 * ServiceWorkload placed on it declares (its own snapshot), from a node of
 * its snapshot, and connects 127.0.0.1:port.
 */
import net from "node:net";
import { performance } from "node:perf_hooks";
import type { Duplex } from "node:stream";
import type { QUICStream } from "@matrixai/quic";
import type { Logger } from "../../lib/log.js";
import { decideStream, parseStreamOpen, type StreamOpen, type StreamOrigin, type StreamView } from "./forward-policy.js";
import { closeWith, encodeHeader, HeaderError, readAnswer, readHeader, splice, streamDuplex, tlsFromSource, tlsToTarget, type TlsCreds } from "./forward-streams.js";
import { chooseRoute, type Route, type RoutingLink } from "./routing.js";
import { advertisementFor, RELAY_ADVERT_METHOD, type RelayTable } from "./relay-table.js";
import type { PeerLinks } from "./transport/peer-links.js";

/** What the stream service reads from its agent on each use (the snapshot in force, the links). */
export interface MeshStreamsDeps {
  self: string;
  cluster: string;
  log: Logger;
  /** The running transport, if any. */
  links: () => PeerLinks | undefined;
  /** Credentials for the end-to-end TLS of relayed streams. */
  creds: () => TlsCreds;
  /** The node's verified snapshot, reduced (forward-policy.ts). */
  view: () => StreamView;
  /** Links as the routing engine reads them (live = active and heard within the trust window). */
  routingLinks: () => RoutingLink[];
  relays: RelayTable;
  now: () => number;
  /** Host TCP connections go to (default 127.0.0.1). */
  targetHost?: string;
  /** Told when bytes arrive from a linked peer on a data stream (a bulk transfer proves the link alive while probes queue behind it). */
  heard?: (node: string) => void;
}

/** A path opened to a node: a duplex carrying the payload, the route taken, and how long the (inner) header took to be answered. */
export interface OpenedPath {
  stream: Duplex;
  route: Route;
  answerMs: number;
}

/** A relay path failed before the target answered (tried again through another relay). */
class RelayPathFailed extends Error {
  override readonly name = "RelayPathFailed";
}

/** Counters for status. */
export interface StreamCounters {
  accepted: number;
  refused: number;
  relayed: number;
  /** Bytes spliced as a relay, both ways, counted as they pass. */
  relayedBytes: number;
}

/** A running TCP forward. */
export interface TcpForward {
  listen: { host: string; port: number };
  node: string;
  port: number;
  close(): Promise<void>;
}

/** RPC method answered by every mesh agent (a direct ping). */
export const MESH_PING_METHOD = "mesh.ping";

/** How a route is shown: `direct` or `relay via R`. */
export function routeText(r: Route): string {
  return r.kind === "direct" ? "direct" : `relay via ${r.relay}`;
}

/** See the module comment. */
export class MeshStreams {
  private readonly routes = new Map<string, Route>();
  readonly counters: StreamCounters = { accepted: 0, refused: 0, relayed: 0, relayedBytes: 0 };

  constructor(private readonly d: MeshStreamsDeps) {}

  private authorised = (node: string): boolean => this.d.view().peers.has(node);

  /** A data stream on the link to `peer` as a duplex; its bytes count as hearing from the peer. */
  private duplex(quic: QUICStream, peer: string): Duplex {
    return streamDuplex(quic, () => this.d.heard?.(peer));
  }

  /** The route to `node` now (sticky per destination); throws with the reason when there is none. */
  route(node: string, exclude: ReadonlyMap<string, string> = new Map()): Route {
    const current = this.routes.get(node);
    const decision = chooseRoute({
      self: { node: this.d.self, cluster: this.d.cluster },
      destination: { node, cluster: this.d.cluster },
      links: this.d.routingLinks(),
      relays: this.d.relays.current(this.d.now()).filter((r) => !exclude.has(r.relay)),
      ...(current !== undefined ? { current } : {}),
      now: this.d.now(),
    });
    if (!decision.ok) {
      this.routes.delete(node);
      const tried = [...exclude.values()];
      const why = tried.length > 0 ? ` (${tried.join("; ")})` : decision.reason === "NoPath" ? " (no live direct link and no relay advertising it)" : "";
      throw new Error(`no path to node ${node}: ${decision.reason}${why}`);
    }
    this.routes.set(node, decision.route);
    return decision.route;
  }

  /**
   * Opens a data stream to `node` carrying `open` along the chosen route.
   * A relay that fails or refuses (it may have lost the target, or the
   * target refused it) is left out and the next relay tried, once each;
   * the error then lists every relay's answer. A refusal inside the
   * end-to-end TLS (the target's own answer) is final.
   */
  async open(node: string, open: StreamOpen): Promise<OpenedPath> {
    const links = this.d.links();
    if (links === undefined) throw new Error("the mesh is off on this node");
    if (!this.authorised(node)) throw new Error(`node ${node} is not a mesh candidate in this node's verified snapshot (unknown, removed, or of another cluster)`);
    const tried = new Map<string, string>();
    for (;;) {
      const route = this.route(node, tried);
      if (route.kind === "direct") {
        const stream = this.duplex(links.openStream(node), node);
        try {
          const t0 = performance.now();
          stream.write(encodeHeader(open));
          await readAnswer(stream, `node ${node}`);
          return { stream, route, answerMs: performance.now() - t0 };
        } catch (err) {
          stream.destroy();
          throw err;
        }
      }
      try {
        return { ...(await this.openRelayed(links, route.relay, node, open)), route };
      } catch (err) {
        if (!(err instanceof RelayPathFailed)) throw err;
        this.d.log.info("mesh relay path failed; trying another", { target: node, relay: route.relay, err });
        this.routes.delete(node);
        tried.set(route.relay, (err as Error).message);
      }
    }
  }

  private async openRelayed(links: PeerLinks, relay: string, node: string, open: StreamOpen): Promise<{ stream: Duplex; answerMs: number }> {
    let quic: QUICStream;
    try {
      quic = links.openStream(relay);
    } catch (err) {
      throw new RelayPathFailed((err as Error).message, { cause: err });
    }
    const outer = this.duplex(quic, relay);
    try {
      outer.write(encodeHeader({ kind: "relay", target: node }));
      await readAnswer(outer, `relay ${relay} (to node ${node})`);
    } catch (err) {
      outer.destroy();
      throw new RelayPathFailed((err as Error).message, { cause: err });
    }
    try {
      const inner = await tlsToTarget(outer, this.d.creds(), node, this.authorised);
      closeWith(inner, outer);
      try {
        const t0 = performance.now();
        inner.write(encodeHeader(open));
        await readAnswer(inner, `node ${node} (via relay ${relay})`);
        return { stream: inner, answerMs: performance.now() - t0 };
      } catch (err) {
        inner.destroy();
        throw err;
      }
    } catch (err) {
      outer.destroy();
      throw err;
    }
  }

  /** Pings `node` along the routing engine's path: direct, one RPC on the link; relayed, one header round trip inside the end-to-end TLS. */
  async ping(node: string): Promise<{ rttMs: number; route: Route }> {
    const links = this.d.links();
    if (links === undefined) throw new Error("the mesh is off on this node");
    if (!this.authorised(node)) throw new Error(`node ${node} is not a mesh candidate in this node's verified snapshot (unknown, removed, or of another cluster)`);
    if (this.route(node).kind === "direct") {
      const t0 = performance.now();
      await links.request(node, MESH_PING_METHOD, {}, 5000);
      return { rttMs: performance.now() - t0, route: { kind: "direct", destination: node } };
    }
    const opened = await this.open(node, { kind: "ping" });
    opened.stream.destroy();
    return { rttMs: opened.answerMs, route: opened.route };
  }

  /**
   * Listens on `listen` and forwards each TCP connection to (node, port)
   * through the mesh. The target is asked first (`check`), so a refusal
   * (undeclared port, unknown node, no path) fails here with its reason.
   */
  async forward(listen: { host: string; port: number }, node: string, port: number): Promise<TcpForward> {
    const probe = await this.open(node, { kind: "tcp", port, check: true });
    probe.stream.destroy();
    const sockets = new Set<net.Socket>();
    const server = net.createServer({ allowHalfOpen: true }, (sock) => {
      sockets.add(sock);
      sock.once("close", () => sockets.delete(sock));
      sock.on("error", () => undefined);
      sock.pause();
      this.open(node, { kind: "tcp", port }).then(
        ({ stream, route }) => {
          this.d.log.info("mesh forward connection", { target: `${node}:${port}`, path: routeText(route) });
          splice(sock, stream);
          sock.resume();
        },
        (err: unknown) => {
          this.d.log.info("mesh forward connection refused", { target: `${node}:${port}`, err });
          sock.destroy();
        },
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(listen.port, listen.host, () => resolve());
    });
    const addr = server.address() as net.AddressInfo;
    return {
      listen: { host: addr.address, port: addr.port },
      node,
      port,
      close: () =>
        new Promise<void>((resolve) => {
          for (const s of sockets) s.destroy();
          server.close(() => resolve());
        }),
    };
  }

  /** Handles a one-way message from a peer (PeerLinks onMessage): relay advertisements. */
  onMessage(from: string, method: string, payload: unknown): void {
    if (method !== RELAY_ADVERT_METHOD) return;
    const kept = this.d.relays.accept(from, payload, this.d.view().peers.get(from)?.relayCapable === true, this.d.now());
    if (!kept) this.d.log.info("mesh relay advertisement ignored (sender not a relay in the snapshot, or malformed)", { peer: from });
  }

  /** A relay tells each linked peer which nodes it holds links to; a no-op on other nodes. */
  advertise(): void {
    const links = this.d.links();
    if (links === undefined || !this.d.view().relay) return;
    const up = links.links().map((l) => l.node);
    for (const node of up) links.send(node, RELAY_ADVERT_METHOD, advertisementFor(up, node));
  }

  /** Forgets what depended on a link that went down (the relay's advertisement, routes through it). */
  linkDown(node: string): void {
    this.d.relays.drop(node);
    for (const [dest, r] of this.routes) if (dest === node || (r.kind === "relay" && r.relay === node)) this.routes.delete(dest);
  }

  /** Serves a stream a peer opened to this node (PeerLinks onStream). */
  accept(from: string, quic: QUICStream): void {
    const stream = this.duplex(quic, from);
    void this.serve(stream, { via: "link", from }).catch((err: unknown) => {
      this.d.log.info("mesh stream failed", { peer: from, err });
      stream.destroy();
    });
  }

  private answer(d: Duplex, ok: boolean, error?: string): void {
    d.write(encodeHeader(ok ? { ok: true } : { ok: false, error }));
  }

  private async serve(stream: Duplex, origin: StreamOrigin): Promise<void> {
    let raw: unknown;
    try {
      raw = await readHeader(stream);
    } catch (err) {
      if (!(err instanceof HeaderError)) throw err;
      this.counters.refused += 1;
      this.answer(stream, false, `BadHeader: ${err.message}`);
      stream.end();
      return;
    }
    const open = parseStreamOpen(raw);
    if (open === undefined) {
      this.counters.refused += 1;
      this.answer(stream, false, "BadHeader: not a stream header (tcp, ping, relay, relayed)");
      stream.end();
      return;
    }
    const links = this.d.links();
    const decision = decideStream(open, origin, this.d.view(), (node) => this.d.routingLinks().some((l) => l.node === node && l.state === "active"));
    if (!decision.ok) {
      this.counters.refused += 1;
      const from = origin.via === "link" ? origin.from : origin.source;
      this.d.log.info("mesh stream refused", { peer: from, kind: open.kind, reason: decision.reason });
      this.answer(stream, false, `${decision.reason}: ${decision.message}`);
      stream.end();
      return;
    }
    this.counters.accepted += 1;
    switch (open.kind) {
      case "ping":
        this.answer(stream, true);
        stream.end();
        return;
      case "tcp":
        return this.serveTcp(stream, open.port, open.check === true);
      case "relay":
        if (links === undefined) throw new Error("the mesh is off on this node");
        return this.serveRelay(links, stream, (origin as { from: string }).from, open.target);
      case "relayed": {
        this.answer(stream, true);
        const inner = await tlsFromSource(stream, this.d.creds(), open.source, this.authorised);
        closeWith(inner, stream);
        return this.serve(inner, { via: "relayed", source: open.source });
      }
    }
  }

  private async serveTcp(stream: Duplex, port: number, check: boolean): Promise<void> {
    if (check) {
      this.answer(stream, true);
      stream.end();
      return;
    }
    const host = this.d.targetHost ?? "127.0.0.1";
    const sock = net.connect({ host, port, allowHalfOpen: true });
    const connected = await new Promise<Error | undefined>((resolve) => {
      sock.once("connect", () => resolve(undefined));
      sock.once("error", (err) => resolve(err));
    });
    if (connected !== undefined) {
      this.answer(stream, false, `ConnectFailed: connecting ${host}:${port} on node ${this.d.self}: ${connected.message}`);
      stream.end();
      return;
    }
    sock.on("error", () => undefined);
    this.answer(stream, true);
    splice(stream, sock);
  }

  private async serveRelay(links: PeerLinks, from: Duplex, source: string, target: string): Promise<void> {
    const to = this.duplex(links.openStream(target), target);
    try {
      to.write(encodeHeader({ kind: "relayed", source }));
      await readAnswer(to, `node ${target}`);
    } catch (err) {
      this.counters.refused += 1;
      this.answer(from, false, `TargetUnreachable: ${(err as Error).message}`);
      from.end();
      to.destroy();
      return;
    }
    this.counters.relayed += 1;
    this.answer(from, true);
    splice(from, to, (n) => {
      this.counters.relayedBytes += n;
    });
  }
}
