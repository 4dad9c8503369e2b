/**
 * Pure mappings between the agent's inputs and the peer manager's shapes:
 * the verified snapshot's `meshPeers` and `mesh` settings onto
 * {@link MeshCandidate}s, {@link MeshSelf} and {@link ClassBounds}; the
 * transport's link table plus the loop's own dial and failure records onto
 * {@link LinkObservation}s; endpoint strings onto transport endpoints; and
 * the local load measure reported in heartbeats. No I/O, no clock: the mesh
 * loop (mesh-loop.ts) passes `now`.
 */
import type { SnapshotMeshPeer, SnapshotMeshSettings, NodeClass } from "../../lib/snapshot/format.js";
import { DEFAULT_CLASS_BOUNDS } from "./peer-manager.js";
import type { Endpoint, LinkInfo } from "./transport/peer-links.js";
import type { ClassBounds, LinkObservation, MeshCandidate, MeshNodeClass, MeshSelf } from "./types.js";

const CLASSES: Readonly<Record<NodeClass, MeshNodeClass>> = { core: "core", relay: "relay", standard: "standard", thin: "thin" };

/** The snapshot's class name as the peer manager's (the same four words today; unknown ones count as standard). */
export function meshClassOf(c: NodeClass | string): MeshNodeClass {
  return (CLASSES as Record<string, MeshNodeClass | undefined>)[c] ?? "standard";
}

/** One snapshot candidate as the peer manager sees it; every candidate belongs to the snapshot's cluster (the directory is read per cluster). */
export function candidateOf(p: SnapshotMeshPeer, cluster: string): MeshCandidate {
  return {
    node: p.node,
    cluster,
    nodeClass: meshClassOf(p.nodeClass),
    endpoints: p.endpoints,
    ...(p.region !== undefined ? { region: p.region } : {}),
    ...(p.zone !== undefined ? { zone: p.zone } : {}),
    roles: p.roles,
    relayCapable: p.relayCapable === true,
    // Absent means the peer did not say otherwise: the directory lists only nodes that reported endpoints.
    directlyReachable: p.directlyReachable !== false,
  };
}

/** The active-set bounds of the snapshot's `mesh.activePeers`, with the class's default warm count. */
export function boundsOf(m: SnapshotMeshSettings): ClassBounds {
  const max = Math.max(0, Math.floor(m.activePeers.max));
  const min = Math.min(Math.max(0, Math.floor(m.activePeers.min)), max);
  return { min, max, warm: DEFAULT_CLASS_BOUNDS[meshClassOf(m.nodeClass)].warm };
}

/** This node as the peer manager sees it (region and zone are not in its own snapshot: the region term then counts every peer as remote). */
export function selfOf(node: string, cluster: string, m: SnapshotMeshSettings, directlyReachable: boolean): MeshSelf {
  return { node, cluster, nodeClass: meshClassOf(m.nodeClass), directlyReachable };
}

/**
 * Parses `host:port` or `[v6]:port` into a transport endpoint; undefined
 * when it is not one (a bad entry is skipped, never fatal).
 */
export function parseEndpoint(s: string): Endpoint | undefined {
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(s) ?? /^([^:[\]]+):(\d{1,5})$/.exec(s);
  if (m === null) return undefined;
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535 || m[1] === undefined) return undefined;
  return { host: m[1], port };
}

/** What the loop remembers of one peer besides the transport's link table. */
export interface PeerRecord {
  /** A dial in flight since this time. */
  diallingSinceMs?: number;
  /** Consecutive failed dials; reset by a link coming up. */
  failures: number;
  lastFailureMs?: number;
  /** When the state last changed (failed since, for status). */
  sinceMs: number;
  /** When the peer last answered a probe, sent data-stream bytes, or the link came up. */
  lastHeardMs?: number;
  /** When the peer last sent data-stream bytes (the link is carrying traffic). */
  dataHeardMs?: number;
  /** Probe loss last measured while the link carried no data-stream bytes. */
  idleLoss?: number;
}

/**
 * A link that delivered data-stream bytes this recently is busy: its probes
 * queue behind that traffic (and behind a saturated agent), so their
 * timeouts measure our own load, not the path.
 */
export const BUSY_LINK_MS = 5000;

/** Whether a peer's link carried data-stream bytes within {@link BUSY_LINK_MS} of `nowMs`. */
export function isBusy(r: PeerRecord | undefined, nowMs: number): boolean {
  return r?.dataHeardMs !== undefined && nowMs - r.dataHeardMs <= BUSY_LINK_MS;
}

/**
 * The link table as the peer manager reads it: every link the transport
 * holds is `active` (inbound links count too: a pair shares one
 * connection); a dial in flight is `connecting`; a peer whose last dial
 * failed is `failed` with its failure count. A busy link (given `nowMs`)
 * reports the loss measured before it got busy: a bulk transfer must not get
 * its own link dropped for the probes it delays.
 */
export function observationsOf(links: readonly LinkInfo[], records: ReadonlyMap<string, PeerRecord>, nowMs?: number): LinkObservation[] {
  const out: LinkObservation[] = [];
  const up = new Set<string>();
  for (const l of links) {
    up.add(l.node);
    const r = records.get(l.node);
    const since = l.since.getTime();
    out.push({
      node: l.node,
      state: "active",
      ...(l.probes.rttMs !== undefined ? { rttEwmaMs: l.probes.rttMs } : {}),
      jitterMs: l.probes.jitterMs,
      loss: nowMs !== undefined && isBusy(r, nowMs) ? Math.min(l.probes.loss, r?.idleLoss ?? 0) : l.probes.loss,
      lastHeardMs: Math.max(since, r?.lastHeardMs ?? since),
      failures: 0,
      ...(r?.lastFailureMs !== undefined ? { lastFailureMs: r.lastFailureMs } : {}),
      sinceMs: since,
    });
  }
  for (const [node, r] of records) {
    if (up.has(node)) continue;
    if (r.diallingSinceMs !== undefined) {
      out.push({ node, state: "connecting", failures: r.failures, ...(r.lastFailureMs !== undefined ? { lastFailureMs: r.lastFailureMs } : {}), sinceMs: r.diallingSinceMs });
    } else if (r.failures > 0) {
      out.push({ node, state: "failed", failures: r.failures, ...(r.lastFailureMs !== undefined ? { lastFailureMs: r.lastFailureMs } : {}), sinceMs: r.sinceMs });
    }
  }
  return out.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
}

/** Load reported in heartbeats: the 1-minute load average per core, clipped to 0..1 and rounded to 0.01. */
export function loadMeasure(loadavg1: number, cores: number): number {
  if (!Number.isFinite(loadavg1) || !(cores > 0)) return 0.5;
  return Math.round(Math.min(1, Math.max(0, loadavg1 / cores)) * 100) / 100;
}

/**
 * The endpoints advertised in heartbeats: the `--mesh-advertise` list when
 * given (host:port, host an IP literal; port 0 means the bound port), else
 * 127.0.0.1 with the bound port when the control plane's agent API is on a
 * loopback address (one host: tests and demos), else none (the node is then
 * reported not directly reachable, and the agent logs that the flag is
 * needed).
 */
export function advertisedEndpoints(advertise: readonly string[], server: string, boundPort: number): { address: string; port: number }[] {
  if (advertise.length > 0) {
    const out: { address: string; port: number }[] = [];
    for (const a of advertise) {
      const m = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(a) ?? /^([^:[\]]+):(\d{1,5})$/.exec(a);
      if (m === null || m[1] === undefined) throw new Error(`--mesh-advertise ${JSON.stringify(a)} is not host:port`);
      const port = Number(m[2]) === 0 ? boundPort : Number(m[2]);
      out.push({ address: m[1], port });
    }
    return out;
  }
  let host = "";
  try {
    host = new URL(server).hostname.replace(/^\[|\]$/g, "");
  } catch {
    return [];
  }
  const loopback = host === "localhost" || host === "::1" || /^127\./.test(host);
  return loopback ? [{ address: "127.0.0.1", port: boundPort }] : [];
}
