/**
 * The agent's mesh loop for one membership: the peer manager's decisions
 * applied through the QUIC transport, driven by the verified snapshot.
 *
 *   const mesh = runMeshLoop(sync, { identity, log, port: 4433, advertise: [] });  // in onSync, before boot
 *   heartbeat.mesh = mesh.heartbeatReport();                                       // each heartbeat
 *   await mesh.stop();                                                             // shutdown
 *
 * - Desired state comes only from MembershipSync.subscribe (the verified
 *   checkpoint at boot, stale or not, then each accepted snapshot), like the
 *   workload supervisor: nothing starts before the first verified snapshot,
 *   and the mesh keeps running from the checkpoint while the control plane
 *   is away.
 * - Level-triggered: one reconcile at a time, woken by a new snapshot, a
 *   link going down, or the evaluation period (10 s). Each reconcile reads
 *   the snapshot in force and the transport's link table, runs
 *   evaluatePeers and applies its actions (connect, disconnect; `probe`:
 *   bounded warm probes, warm-probe.ts), then writes mesh-status.json and
 *   hands the link table to the status reporter (kind `mesh`).
 * - Mesh on only when the snapshot has a `mesh` part (the node holds a mesh
 *   role): PeerLinks is started on the UDP port then, and stopped (every
 *   link closed) when a later snapshot drops it.
 * - Authorisation: a peer may hold a link only while it is listed in the
 *   current snapshot's `meshPeers` or `meshInbound` and presents the key
 *   pinned there (checked in the TLS handshake on both sides); every new
 *   snapshot calls reauthorise(), which closes links to nodes no longer
 *   listed (removed, revoked) or whose pin changed.
 * - Identity: PeerLinks presents the membership's certificate; when the
 *   renewal loop stored a new one (serial changed), PeerLinks restarts with it.
 * - Relays and data streams (forward.ts): a relay node advertises its links
 *   on every link change, and refreshes it to each peer with that peer's
 *   probe answer every 5 s or so; every node serves data streams
 *   (targets, relays) from the snapshot in force, and `mesh ping` /
 *   `mesh forward` on the control socket follow the routing engine.
 */
import { cpus, loadavg } from "node:os";
import { performance } from "node:perf_hooks";
import { MESH_STATUS_KIND, type HeartbeatMesh, type StatusReport } from "../../lib/agent-protocol.js";
import type { Logger } from "../../lib/log.js";
import type { SignedSnapshot } from "../../lib/snapshot/format.js";
import { loadIdentity, type StoredIdentity } from "../enroll/identity-store.js";
import type { MembershipSync } from "../sync/snapshot-sync.js";
import { statusSender, type StatusSender } from "../sync/status-sender.js";
import { advertisedEndpoints, boundsOf, isBusy, candidateOf, loadMeasure, observationsOf, parseEndpoint, selfOf, type PeerRecord } from "./adapter.js";
import { serveControlSocket, type ForwardRequest, type HeldForward, type PingResult } from "./control-socket.js";
import { isRelayNode, streamViewOf, type StreamView } from "./forward-policy.js";
import { MESH_PING_METHOD, MeshStreams, routeText } from "./forward.js";
import { writeMeshStatus, type MeshPeerStatus, type MeshStatus } from "./mesh-status.js";
import { reportDue, reportOf, type MeshReportBody, type SentReport } from "./report-cadence.js";
import { emptyPeerMemory, evaluatePeers, type PeerManagerMemory } from "./peer-manager.js";
import { ADVERT_INTERVAL_MS, advertisementFor, RELAY_ADVERT_METHOD, RelayTable } from "./relay-table.js";
import { measureWarm, planWarmProbes, pruneWarmResults, WARM_PROBE_METHOD, warmObservations, type WarmResult } from "./warm-probe.js";
import type { RoutingLink } from "./routing.js";
import { peerGrantsOf, type PeerGrant } from "./transport/peer-identity.js";
import { PeerLinks, type LinkInfo } from "./transport/peer-links.js";

// os.cpus() reads per-CPU times and models from /proc and /sys on every call: count once, not per heartbeat.
let cpuCount: number | undefined;

/** Default UDP port of the mesh. */
export const DEFAULT_MESH_PORT = 4433;
/** A new inbound link counts (peer manager, status) once this old, unless announced as a warm probe. */
const WARM_SETTLE_MS = 2_000;
/** How long a candidate dropped for OverMax is refused while this node stays at its maximum. */
const SHED_REFUSE_MS = 60_000;
/** Default evaluation period. */
export const DEFAULT_MESH_EVALUATE_MS = 10_000;
export { MESH_PING_METHOD } from "./forward.js";

/** Options of runMeshLoop. */
export interface MeshLoopOptions {
  log: Logger;
  /** Initial identity (re-read from the membership directory on every reconcile to follow renewals). */
  identity: StoredIdentity;
  /** UDP port to bind (0: ephemeral). */
  port: number;
  /** Address to bind (default 0.0.0.0). */
  host?: string;
  /** `--mesh-advertise` entries (host:port; port 0 = the bound port). */
  advertise: readonly string[];
  /** Evaluation period (default 10 s). */
  evaluateIntervalMs?: number;
  /** Transport probe period (default the transport's 3 s). */
  probeIntervalMs?: number;
  /** Clock in ms (default Date.now). */
  now?: () => number;
  /** Replaces the HTTPS status send (tests). */
  send?: (r: StatusReport) => Promise<void>;
}

/** A membership's running mesh loop. */
export interface MeshLoop {
  /** What the next heartbeat reports (undefined while the mesh is off). */
  heartbeatReport(): HeartbeatMesh | undefined;
  /** Stops the loop, closes every link, the socket and the control socket. */
  stop(): Promise<void>;
}

interface Running {
  links: PeerLinks;
  streams: MeshStreams;
  relays: RelayTable;
  serial: string;
  endpoints: { address: string; port: number }[];
  control?: { path: string; close: () => Promise<void> };
}

/** See the module comment. */
export function runMeshLoop(sync: MembershipSync, o: MeshLoopOptions): MeshLoop {
  const log = o.log.with({ cluster: sync.status.cluster, node: sync.status.node, part: "mesh" });
  const now = o.now ?? Date.now;
  const cluster = sync.status.cluster;
  const self = sync.status.node;
  const evaluateMs = o.evaluateIntervalMs ?? DEFAULT_MESH_EVALUATE_MS;
  const sender: StatusSender | undefined = o.send === undefined ? statusSender(sync.dir, o.identity, MESH_STATUS_KIND) : undefined;
  const send = o.send ?? sender?.send;

  let snapshot: SignedSnapshot | undefined;
  let authorised = new Set<string>();
  // Who may hold a link, with pins: the candidates and the nodes whose sets list this one.
  let grants = new Map<string, PeerGrant>();
  // This node's maximum active links (its class's bound), once a snapshot gave it a mesh role.
  let capacity: number | undefined;
  let view: StreamView = { self, cluster, peers: new Map(), relay: false, ports: new Set() };
  let running: Running | undefined;
  let reauthorisedSerial = -1;
  let memory: PeerManagerMemory = emptyPeerMemory();
  const records = new Map<string, PeerRecord>();
  let decision: { active: string[]; warm: string[] } = { active: [], warm: [] };
  let evaluations = 0;
  /** Hysteresis swaps applied by this process (a peer replaced by a cheaper candidate). */
  let swaps = 0;
  // Warm probes: results, the ones in flight from here, and links peers opened as warm probes (neither counted nor reported).
  const warmResults = new Map<string, WarmResult>();
  const warmInFlight = new Set<string>();
  const warmInbound = new Set<string>();
  // Candidates this node dropped for OverMax, and when: while still at its maximum it refuses their new links for
  // SHED_REFUSE_MS, so a peer that keeps dialling back (its own fill) meets a refusal and backs off, instead of a
  // connect / OverMax loop every evaluation.
  const shedAt = new Map<string, number>();
  let lastWarmStartMs: number | undefined;
  // A new inbound link may be a warm probe whose announcement is one message behind: it counts once it is older than
  // WARM_SETTLE_MS without one (an evaluation in that gap would count a probe as a peer, and drop one at the maximum).
  const transient = (l: LinkInfo): boolean =>
    warmInFlight.has(l.node) || warmInbound.has(l.node) || (l.direction === "inbound" && now() - l.since.getTime() < WARM_SETTLE_MS);
  let lastEvaluationAt: string | undefined;
  let lastReason: string | undefined;
  let stopped = false;
  let dirty = true;
  let wake: (() => void) | undefined;
  let reportVersion = 0;
  let reported: SentReport | undefined;

  const kick = (): void => {
    dirty = true;
    wake?.();
  };
  const record = (node: string): PeerRecord => {
    let r = records.get(node);
    if (r === undefined) {
      r = { failures: 0, sinceMs: now() };
      records.set(node, r);
    }
    return r;
  };

  /** Links as the routing engine reads them: live from the transport's probes, relay capability from the snapshot. */
  const routingLinks = (links: PeerLinks | undefined): RoutingLink[] =>
    observationsOf(links?.links() ?? [], records, now()).map((l) => ({ ...l, cluster, relayCapable: view.peers.get(l.node)?.relayCapable === true }));

  const startLinks = async (identity: StoredIdentity): Promise<Running> => {
    const relays = new RelayTable(cluster);
    let started: PeerLinks | undefined;
    const streams = new MeshStreams({
      self,
      cluster,
      log,
      links: () => started,
      creds: () => ({ cluster, keyPem: identity.keyPem, certPem: identity.certPem, caPem: identity.caPem }),
      view: () => view,
      routingLinks: () => routingLinks(started),
      relays,
      now,
      heard: (node) => {
        const r = records.get(node);
        if (r === undefined) return;
        r.lastHeardMs = now();
        r.dataHeardMs = r.lastHeardMs;
      },
    });
    const links = await PeerLinks.start({
      cluster,
      node: self,
      keyPem: identity.keyPem,
      certPem: identity.certPem,
      caPem: identity.caPem,
      authorised: (node) => {
        const grant = grants.get(node);
        if (grant === undefined) return false;
        // A node that lists this one but is not among its candidates gets a link only while this node is under its maximum.
        const held = running?.links.links() ?? [];
        if (!authorised.has(node) && capacity !== undefined && !held.some((l) => l.node === node) && held.length >= capacity) return false;
        // A candidate shed for OverMax a moment ago is refused while this node is still at its maximum.
        const shed = shedAt.get(node);
        if (shed !== undefined && now() - shed < SHED_REFUSE_MS && capacity !== undefined && !held.some((l) => l.node === node) && held.length >= capacity) return false;
        return grant;
      },
      host: o.host ?? "0.0.0.0",
      port: o.port,
      ...(o.probeIntervalMs !== undefined ? { probeIntervalMs: o.probeIntervalMs } : {}),
      onRequest: (_from, method) => {
        if (method === MESH_PING_METHOD) return { node: self, at: new Date().toISOString() };
        throw new Error(`unknown method ${method}`);
      },
      onMessage: (from, method, payload) => (method === WARM_PROBE_METHOD ? void warmInbound.add(from) : streams.onMessage(from, method, payload)),
      onStream: (from, stream) => streams.accept(from, stream),
    });
    started = links;
    links.on("up", (info) => {
      const r = record(info.node);
      r.failures = 0;
      r.lastHeardMs = now();
      r.sinceMs = now();
      log.info("mesh link up", { peer: info.node, direction: info.direction, remote: `${info.remote.host}:${info.remote.port}` });
      streams.advertise();
    });
    // A relay refreshes its advertisement to a peer when a probe sample of that link arrives (its
    // pong, or the dialler's ping carrying its figures), once ADVERT_INTERVAL_MS passed: the message
    // leaves with the pong being answered or with the next ping, never in a datagram (and an ACK)
    // of its own. Changes still go to every peer at once on link up/down.
    const advertisedAt = new Map<string, number>();
    links.on("rtt", (e) => {
      const r = record(e.node);
      r.lastHeardMs = now();
      if (!isBusy(r, r.lastHeardMs)) r.idleLoss = e.loss;
      if (view.relay && r.lastHeardMs - (advertisedAt.get(e.node) ?? Number.NEGATIVE_INFINITY) >= ADVERT_INTERVAL_MS) {
        advertisedAt.set(e.node, r.lastHeardMs);
        links.sendWithProbe(e.node, RELAY_ADVERT_METHOD, advertisementFor(links.links().map((l) => l.node), e.node));
      }
    });
    links.on("down", (e) => {
      warmInbound.delete(e.node);
      advertisedAt.delete(e.node);
      log.info("mesh link down", { peer: e.node, reason: e.reason });
      streams.linkDown(e.node);
      streams.advertise();
      kick();
    });
    links.on("refused", (e) => log.info("mesh peer refused", { reason: e.reason, detail: e.message, direction: e.direction }));
    const endpoints = advertisedEndpoints(o.advertise, identity.info.server, links.port);
    if (endpoints.length === 0) log.warn("mesh has no endpoint to advertise: pass --mesh-advertise host:port (the node is reported not directly reachable)", { port: links.port });
    let control: Running["control"];
    try {
      control = await serveControlSocket(sync.dir, { ping, forward });
    } catch (err) {
      log.warn("mesh control socket failed; fabric-agent mesh ping will not reach this agent", { err });
    }
    log.info("mesh listening", { port: links.port, endpoints: endpoints.map((e) => `${e.address}:${e.port}`), socketBuffers: links.socketBuffers });
    return { links, streams, relays, serial: identity.info.serial, endpoints, ...(control !== undefined ? { control } : {}) };
  };

  const stopLinks = async (): Promise<void> => {
    const r = running;
    running = undefined;
    records.clear();
    memory = emptyPeerMemory();
    decision = { active: [], warm: [] };
    warmResults.clear();
    warmInbound.clear();
    shedAt.clear();
    reauthorisedSerial = -1;
    if (r === undefined) return;
    await r.control?.close();
    await r.links.stop();
  };

  /** The peer named on the command line: an exact candidate or link name, or the short name within this cluster. */
  const resolvePeer = (name: string): string => {
    const known = new Set([...authorised, ...(running?.links.links().map((l) => l.node) ?? [])]);
    if (known.has(name)) return name;
    if (known.has(`${cluster}.${name}`)) return `${cluster}.${name}`;
    return name;
  };

  async function ping(name: string): Promise<PingResult> {
    const r = running;
    if (r === undefined) throw new Error("the mesh is off on this node");
    const node = resolvePeer(name);
    const p = await r.streams.ping(node);
    const hop = p.route.kind === "direct" ? node : p.route.relay;
    const info = r.links.links().find((l) => l.node === hop);
    return { node, rttMs: p.rttMs, path: routeText(p.route), remote: info === undefined ? "" : `${info.remote.host}:${info.remote.port}` };
  }

  async function forward(req: ForwardRequest): Promise<HeldForward> {
    const r = running;
    if (r === undefined) throw new Error("the mesh is off on this node");
    const node = resolvePeer(req.node);
    const f = await r.streams.forward(req.listen, node, req.port);
    const host = f.listen.host.includes(":") ? `[${f.listen.host}]` : f.listen.host;
    const route = r.streams.route(node);
    log.info("mesh forward open", { listen: `${host}:${f.listen.port}`, target: `${node}:${req.port}`, path: routeText(route) });
    return {
      result: { node, port: req.port, listen: `${host}:${f.listen.port}`, path: routeText(route) },
      close: async () => {
        await f.close();
        log.info("mesh forward closed", { listen: `${host}:${f.listen.port}`, target: `${node}:${req.port}` });
      },
    };
  }

  const dial = (links: PeerLinks, node: string, endpoints: readonly string[]): void => {
    const r = record(node);
    if (r.diallingSinceMs !== undefined) return;
    r.diallingSinceMs = now();
    const eps = endpoints.map(parseEndpoint).filter((e) => e !== undefined);
    links.connect({ node, endpoints: eps }).then(
      () => {
        r.failures = 0;
        r.lastHeardMs = now();
      },
      (err: unknown) => {
        r.failures += 1;
        r.lastFailureMs = now();
        r.sinceMs = now();
        log.info("mesh dial failed", { peer: node, failures: r.failures, err });
      },
    ).finally(() => {
      delete r.diallingSinceMs;
    });
  };

  const peerRows = (links: readonly LinkInfo[]): MeshPeerStatus[] => {
    const rows: MeshPeerStatus[] = links.map((l) => ({
      peer: l.node,
      state: "up",
      direction: l.direction,
      ...(l.probes.rttMs !== undefined ? { rttMs: Math.round(l.probes.rttMs * 1000) / 1000 } : {}),
      jitterMs: Math.round(l.probes.jitterMs * 1000) / 1000,
      loss: l.probes.loss,
      path: "direct",
      since: l.since.toISOString(),
    }));
    const up = new Set(links.map((l) => l.node));
    for (const [node, r] of records) {
      if (up.has(node)) continue;
      if (r.diallingSinceMs !== undefined) rows.push({ peer: node, state: "connecting", path: "none", since: new Date(r.diallingSinceMs).toISOString() });
      else if (r.failures > 0) rows.push({ peer: node, state: "failed", path: "none", failures: r.failures, since: new Date(r.sinceMs).toISOString() });
    }
    return rows.sort((a, b) => (a.peer < b.peer ? -1 : a.peer > b.peer ? 1 : 0));
  };

  const writeStatus = async (s: MeshStatus): Promise<void> => {
    try {
      await writeMeshStatus(sync.dir, s);
    } catch (err) {
      log.warn("writing mesh status failed", { err });
    }
    if (send === undefined) return;
    const body: MeshReportBody = { enabled: s.enabled, ...(s.reason !== undefined ? { reason: s.reason } : {}), endpoints: s.endpoints, active: s.active, peers: s.peers };
    const nowMs = Date.now();
    const next = reportOf(body);
    if (!reportDue(next, reported, nowMs)) return;
    reportVersion = Math.max(nowMs, reportVersion + 1);
    try {
      await send({ version: reportVersion, body: body as unknown as Record<string, unknown> });
      reported = { ...next, atMs: nowMs };
    } catch (err) {
      log.info("mesh status report failed; sent again after the next evaluation", { err });
    }
  };

  const baseStatus = (): MeshStatus => ({
    formatVersion: 1,
    cluster,
    node: self,
    pid: process.pid,
    enabled: false,
    endpoints: [],
    candidates: [],
    active: [],
    warm: [],
    peers: [],
    evaluations,
    swaps,
    updatedAt: new Date().toISOString(),
  });

  const reconcile = async (): Promise<void> => {
    const snap = snapshot;
    // Nothing before the first verified snapshot (no status file either: "not yet" is not "off").
    if (snap === undefined) return;
    const m = snap.payload.mesh;
    authorised = new Set(snap.payload.meshPeers.map((p) => p.node));
    grants = peerGrantsOf(snap.payload);
    view = streamViewOf(snap.payload, self, cluster);
    if (m === undefined) {
      if (running !== undefined) log.info("mesh off: the snapshot in force gives this node no mesh role", { serial: snap.header.serial });
      await stopLinks();
      await writeStatus({ ...baseStatus(), reason: "no mesh role in the snapshot in force", snapshotSerial: snap.header.serial });
      return;
    }
    const identity = await loadIdentity(sync.dir).catch(() => o.identity);
    if (running !== undefined && running.serial !== identity.info.serial) {
      log.info("mesh restarting with the renewed certificate", { serial: identity.info.serial });
      await stopLinks();
    }
    if (running === undefined) {
      try {
        running = await startLinks(identity);
        lastReason = undefined;
      } catch (err) {
        const reason = `binding udp ${o.host ?? "0.0.0.0"}:${o.port} failed: ${(err as Error).message}`;
        if (reason !== lastReason) log.warn("mesh could not start; retrying at the next evaluation", { err, port: o.port });
        lastReason = reason;
        await writeStatus({ ...baseStatus(), reason, snapshotSerial: snap.header.serial });
        return;
      }
    }
    const { links } = running;
    if (snap.header.serial !== reauthorisedSerial) {
      const dropped = await links.reauthorise();
      reauthorisedSerial = snap.header.serial;
      if (dropped.length > 0) log.info("mesh links closed: peers no longer authorised by the snapshot", { serial: snap.header.serial, peers: dropped });
    }
    running.relays.retain((relay) => view.peers.get(relay)?.relayCapable === true);
    const candidates = snap.payload.meshPeers.map((p) => candidateOf(p, cluster));
    // Forget dial records of nodes that left the candidate set (their links were closed above).
    for (const node of [...records.keys()]) if (!authorised.has(node) && records.get(node)?.diallingSinceMs === undefined) records.delete(node);
    const classBounds = boundsOf(m);
    capacity = classBounds.max;
    // Links opened by nodes whose sets list this one (meshInbound) are theirs to manage: the peer manager judges its own
    // candidates' links, within what those inbound links leave of the class's bounds, so the total never exceeds the maximum
    // (new inbound links are refused at the maximum, above).
    const held = links.links().filter((l) => !transient(l));
    const inboundOnly = held.filter((l) => !authorised.has(l.node)).length;
    const max = Math.max(0, classBounds.max - inboundOnly);
    const bounds = { ...classBounds, max, min: Math.min(max, Math.max(0, classBounds.min - inboundOnly)) };
    const t = now();
    pruneWarmResults(warmResults, t);
    for (const [node, at] of shedAt) if (t - at >= SHED_REFUSE_MS) shedAt.delete(node);
    for (const node of warmResults.keys()) if (!authorised.has(node)) warmResults.delete(node);
    const observed = observationsOf(held.filter((l) => authorised.has(l.node)), records, t);
    const linked = new Set([...observed.map((l) => l.node), ...links.links().map((l) => l.node)]);
    observed.push(...warmObservations(warmResults, linked, t));
    const d = evaluatePeers({ self: selfOf(self, cluster, m, running.endpoints.length > 0), bounds, candidates, links: observed, now: t }, memory);
    memory = d.memory;
    decision = { active: d.active, warm: d.warm };
    evaluations += 1;
    lastEvaluationAt = new Date().toISOString();
    const wanted: string[] = [];
    for (const a of d.actions) {
      switch (a.kind) {
        case "connect":
          log.info("mesh connecting", { peer: a.node, reason: a.reason, ...(a.replaces !== undefined ? { replaces: a.replaces } : {}) });
          if (a.reason === "BetterCandidate") swaps += 1;
          // A warm probe's link closes when it ends: the next evaluation dials.
          if (!warmInFlight.has(a.node)) dial(links, a.node, a.endpoints);
          break;
        case "disconnect":
          // A warm result no longer wanted: forgotten (there is no link).
          if (a.reason === "NoLongerWarm") {
            warmResults.delete(a.node);
            break;
          }
          log.info("mesh disconnecting", { peer: a.node, reason: a.reason });
          if (a.reason === "OverMax") shedAt.set(a.node, now());
          await links.close(a.node);
          break;
        case "quarantine":
          log.info("mesh peer quarantined", { peer: a.node, until: new Date(a.untilMs).toISOString() });
          break;
        case "probe":
          wanted.push(a.node);
          break;
      }
    }
    for (const node of planWarmProbes({ wanted, linked, inFlight: warmInFlight, results: warmResults, lastStartMs: lastWarmStartMs, now: t })) {
      const eps = (candidates.find((c) => c.node === node)?.endpoints ?? []).map(parseEndpoint).filter((e) => e !== undefined);
      warmInFlight.add(node);
      lastWarmStartMs = t;
      measureWarm(links, { node, endpoints: eps }, MESH_PING_METHOD, now).then(
        (r) => {
          warmResults.set(node, r);
          log.info("mesh warm probe", { peer: node, rttMs: Math.round(r.rttMs * 1000) / 1000, loss: r.loss });
        },
        (err: unknown) => log.info("mesh warm probe failed", { peer: node, err }),
      ).finally(() => warmInFlight.delete(node));
    }
    const current = links.links();
    await writeStatus({
      ...baseStatus(),
      enabled: true,
      port: links.port,
      endpoints: running.endpoints.map((e) => (e.address.includes(":") ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`)),
      ...(running.control !== undefined ? { controlSocket: running.control.path } : {}),
      snapshotSerial: snap.header.serial,
      nodeClass: m.nodeClass,
      // The class's bounds (the peer manager worked within what inbound-only links left of them).
      bounds: classBounds,
      candidates: [...authorised].sort(),
      active: decision.active,
      warm: decision.warm,
      peers: peerRows(current.filter((l) => !transient(l))),
      warmProbes: [...warmResults.values()].map((r) => ({ peer: r.node, rttMs: Math.round(r.rttMs * 1000) / 1000, loss: r.loss, at: new Date(r.measuredAtMs).toISOString() })),
      costs: Object.fromEntries(Object.entries(d.costs).map(([n, c]) => [n, Math.round(c.total * 1000) / 1000])),
      evaluations,
      ...(lastEvaluationAt !== undefined ? { lastEvaluationAt } : {}),
      counters: { ...links.stats },
      relays: running.relays.current(now()).map((r) => ({ relay: r.relay, reaches: [...r.reaches] })),
      streams: { ...running.streams.counters },
    });
  };

  const loop = (async () => {
    while (!stopped) {
      if (dirty) {
        dirty = false;
        try {
          await reconcile();
        } catch (err) {
          log.warn("mesh reconcile failed; retrying at the next evaluation", { err });
        }
        continue;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          dirty = true;
          resolve();
        }, evaluateMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
  })();

  sync.subscribe((s) => {
    snapshot = s;
    kick();
  });

  return {
    heartbeatReport() {
      const r = running;
      if (r === undefined) return undefined;
      const relayCapable = snapshot !== undefined && isRelayNode(snapshot.payload);
      cpuCount ??= cpus().length;
      return { endpoints: r.endpoints, reachable: r.endpoints.length > 0, relayCapable, load: loadMeasure(loadavg()[0] ?? 0, cpuCount) };
    },
    async stop() {
      stopped = true;
      wake?.();
      await loop;
      await stopLinks();
      sender?.close();
    },
  };
}
