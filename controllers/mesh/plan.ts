/**
 * Pure candidate selection for the mesh peer directory (docs/mesh.md).
 *
 * Every node with a mesh role receives a bounded candidate set: its class's
 * active maximum (FabricCluster spec.peerPolicy) plus {@link WARM_CANDIDATES}
 * warm candidates, topped up to {@link RELAY_CANDIDATES} relay-capable
 * entries. Candidates are the same cluster's Active mesh members that
 * reported endpoints and hold an active certificate; never the node itself,
 * never another cluster (the directory is per cluster).
 *
 * Spread and stability: candidates are grouped by failure domain (region,
 * then zone); each domain is a ring of its candidates ordered by a stable
 * hash of their names. A node walks the regions round-robin (its own region
 * first, the others in an order hashed from its name), inside a region the
 * zones round-robin (its own zone first), and in each zone takes the next
 * candidate clockwise from a point hashed from (node, zone). This is
 * consistent hashing: O(log n) per pick, O(N*k log n) for a cluster, and a
 * node leaving changes only the sets that listed it (each takes the next
 * candidate on that ring), while a node joining enters only the sets whose
 * walk reaches it first.
 */
import type { NodeClass, SnapshotMeshInbound, SnapshotMeshPeer, SnapshotMeshSettings } from "../../lib/snapshot/format.js";
import { meshBoundsOf, meshClassOf, type MeshDirectory, type MeshMemberRow, type MeshPeerPolicy } from "../../lib/state/mesh.js";

/** Warm candidates beyond the active maximum (what the agent swaps to without asking). */
export const WARM_CANDIDATES = 3;
/** Relay-capable entries every set is topped up to (fewer when the cluster has fewer). */
export const RELAY_CANDIDATES = 3;

/** cyrb53: a fast, well-mixed 53-bit string hash (stable across processes and versions). */
export function stableHash(s: string): number {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < s.length; i++) {
    const ch = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/** The class a member's peer counts follow: a core-node role makes it "core" (relay counts). */
export const classOf: (m: Pick<MeshMemberRow, "nodeClass" | "roles">) => NodeClass = meshClassOf;

/** Active-set bounds of a class. */
export const boundsOf: (policy: MeshPeerPolicy, cls: NodeClass) => { min: number; max: number } = meshBoundsOf;

/** How many candidates a member receives at most (before relay top-up). */
export function budgetOf(policy: MeshPeerPolicy, m: Pick<MeshMemberRow, "nodeClass" | "roles">): number {
  return boundsOf(policy, classOf(m)).max + WARM_CANDIDATES;
}

/** A member that may be offered to others: endpoints reported and an active certificate. */
export function isCandidate(m: MeshMemberRow): boolean {
  return m.endpoints.length > 0 && m.publicKeyFingerprint !== "";
}

/** May forward for others: reported relay capability, directly reachable, and a relay or core role. */
export function isRelay(m: MeshMemberRow): boolean {
  return m.relayCapable && m.reachable && (m.roles.includes("relay-node") || m.roles.includes("core-node"));
}

interface Ring {
  hashes: Float64Array;
  names: string[];
}

interface Region {
  name: string;
  zones: Map<string, Ring>;
}

/** Rings per region and zone, built once per cluster directory. */
export interface DomainIndex {
  regions: Map<string, Region>;
}

function ring(members: readonly MeshMemberRow[]): Ring {
  const entries = members.map((m) => ({ h: stableHash(m.node), n: m.node })).sort((a, b) => a.h - b.h || (a.n < b.n ? -1 : a.n > b.n ? 1 : 0));
  return { hashes: Float64Array.from(entries.map((e) => e.h)), names: entries.map((e) => e.n) };
}

/** Groups members into region/zone rings. O(n log n). */
export function indexDomains(members: readonly MeshMemberRow[]): DomainIndex {
  const byRegion = new Map<string, Map<string, MeshMemberRow[]>>();
  for (const m of members) {
    let zones = byRegion.get(m.region);
    if (zones === undefined) byRegion.set(m.region, (zones = new Map()));
    let list = zones.get(m.zone);
    if (list === undefined) zones.set(m.zone, (list = []));
    list.push(m);
  }
  const regions = new Map<string, Region>();
  for (const [name, zones] of byRegion) regions.set(name, { name, zones: new Map([...zones].map(([z, list]) => [z, ring(list)])) });
  return { regions };
}

function lowerBound(a: Float64Array, x: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((a[mid] as number) < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** A walk over one zone's ring from the point hashed from (node, zone). */
class Cursor {
  private pos: number;
  private left: number;
  constructor(private readonly r: Ring, start: number) {
    this.pos = lowerBound(r.hashes, start) % Math.max(1, r.names.length);
    this.left = r.names.length;
  }
  /** The next name not excluded, or undefined when the ring is exhausted. */
  next(excluded: (name: string) => boolean): string | undefined {
    while (this.left > 0) {
      const name = this.r.names[this.pos] as string;
      this.pos = (this.pos + 1) % this.r.names.length;
      this.left--;
      if (!excluded(name)) return name;
    }
    return undefined;
  }
}

function byHash(self: string, names: Iterable<string>, first: string): string[] {
  const rest = [...names].filter((n) => n !== first).map((n) => ({ n, h: stableHash(`${self}\u0000${n}`) }));
  rest.sort((a, b) => a.h - b.h || (a.n < b.n ? -1 : 1));
  return rest.map((x) => x.n);
}

/**
 * Picks up to `count` names from `index` for `self`, spread round-robin over
 * regions (own first) and their zones (own first). Deterministic.
 */
export function pickSpread(index: DomainIndex, self: Pick<MeshMemberRow, "node" | "region" | "zone">, count: number, excluded: (name: string) => boolean): string[] {
  const out: string[] = [];
  if (count <= 0) return out;
  const regionOrder = [...(index.regions.has(self.region) ? [self.region] : []), ...byHash(self.node, index.regions.keys(), self.region)];
  // Per region: its zones in order, each with a cursor.
  const walks = regionOrder.map((rn) => {
    const region = index.regions.get(rn) as Region;
    const own = rn === self.region && region.zones.has(self.zone) ? [self.zone] : [];
    const zones = [...own, ...byHash(self.node, region.zones.keys(), rn === self.region ? self.zone : "\u0000none")];
    return { next: 0, zones: zones.map((z) => new Cursor(region.zones.get(z) as Ring, stableHash(`${self.node}\u0000${rn}\u0000${z}`))) };
  });
  const taken = (n: string): boolean => n === self.node || excluded(n) || out.includes(n);
  let live = walks.filter((w) => w.zones.length > 0);
  while (out.length < count && live.length > 0) {
    for (const w of live) {
      if (out.length >= count) break;
      while (w.zones.length > 0) {
        const i = w.next % w.zones.length;
        const got = (w.zones[i] as Cursor).next(taken);
        if (got !== undefined) {
          out.push(got);
          w.next = i + 1;
          break;
        }
        w.zones.splice(i, 1);
      }
    }
    live = live.filter((w) => w.zones.length > 0);
  }
  return out;
}

/** A cluster's directory prepared for selection (O(n log n), once per build). */
export interface PreparedDirectory {
  directory: MeshDirectory;
  members: Map<string, MeshMemberRow>;
  candidates: DomainIndex;
  relays: DomainIndex;
}

/** Builds the rings of a directory. */
export function prepareDirectory(directory: MeshDirectory): PreparedDirectory {
  const candidates = directory.members.filter(isCandidate);
  return {
    directory,
    members: new Map(directory.members.map((m) => [m.node, m])),
    candidates: indexDomains(candidates),
    relays: indexDomains(candidates.filter(isRelay)),
  };
}

/**
 * The candidate names of one node, sorted: empty when it is not a mesh
 * member of this directory. Bounded by budgetOf + RELAY_CANDIDATES.
 */
export function candidatesFor(d: PreparedDirectory, node: string): string[] {
  const self = d.members.get(node);
  if (self === undefined) return [];
  const picked = pickSpread(d.candidates, self, budgetOf(d.directory.policy, self), () => false);
  const set = new Set(picked);
  const relaysHeld = picked.filter((n) => isRelay(d.members.get(n) as MeshMemberRow)).length;
  if (relaysHeld < RELAY_CANDIDATES) {
    for (const n of pickSpread(d.relays, self, RELAY_CANDIDATES - relaysHeld, (x) => set.has(x))) set.add(n);
  }
  return [...set].sort();
}

/** The snapshot entry of a candidate. */
export function peerEntry(cluster: string, m: MeshMemberRow): SnapshotMeshPeer {
  const p: SnapshotMeshPeer = {
    node: m.node,
    endpoints: [...m.endpoints],
    serverName: `${m.node}.${cluster}.fabric.internal`,
    certificateFingerprint: m.publicKeyFingerprint,
    nodeClass: classOf(m),
    roles: [...m.roles],
    relayCapable: isRelay(m),
    directlyReachable: m.reachable,
  };
  if (m.region !== "") p.region = m.region;
  if (m.zone !== "") p.zone = m.zone;
  return p;
}

/** The node's own mesh settings; undefined when it is not a mesh member. */
export function settingsFor(d: PreparedDirectory, node: string): SnapshotMeshSettings | undefined {
  const self = d.members.get(node);
  if (self === undefined) return undefined;
  const cls = classOf(self);
  const b = boundsOf(d.directory.policy, cls);
  return { nodeClass: cls, activePeers: { min: b.min, max: b.max }, hysteresisPercent: d.directory.policy.hysteresisPercent };
}

/** Candidate sets of every member (the directory sweep and the benchmark). */
export function allCandidateSets(d: PreparedDirectory): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const m of d.directory.members) out.set(m.node, candidatesFor(d, m.node));
  return out;
}

/**
 * At most this many inbound entries per node. Consistent hashing spreads
 * in-degrees evenly (at 10,000 and 100,000 nodes the largest is far below
 * it, docs/benchmarks.md); a node listed by more keeps the listers nearest
 * on a rendezvous hash, and the others' dials are refused like any
 * unauthorised peer's.
 */
export const MAX_MESH_INBOUND = 256;

/** Every member's candidate set and, per node, the members listing it that it does not list itself. */
export interface MeshSets {
  sets: Map<string, string[]>;
  inbound: Map<string, string[]>;
}

/** Computes {@link MeshSets} for a directory: O(N*k log n), the same work as computing every set. */
export function meshSetsOf(d: PreparedDirectory): MeshSets {
  const sets = allCandidateSets(d);
  const listers = new Map<string, string[]>();
  for (const [node, set] of sets) {
    for (const c of set) {
      let l = listers.get(c);
      if (l === undefined) listers.set(c, (l = []));
      l.push(node);
    }
  }
  const inbound = new Map<string, string[]>();
  for (const [node, l] of listers) {
    const own = new Set(sets.get(node) ?? []);
    let extra = l.filter((x) => !own.has(x));
    if (extra.length > MAX_MESH_INBOUND) {
      extra = extra
        .map((x) => [stableHash(`${node}\u0000${x}`), x] as const)
        .sort((a, b) => a[0] - b[0])
        .slice(0, MAX_MESH_INBOUND)
        .map(([, x]) => x);
    }
    if (extra.length > 0) inbound.set(node, extra.sort());
  }
  return { sets, inbound };
}

/** The snapshot entry of a node listing this one. */
export function inboundEntry(m: MeshMemberRow): SnapshotMeshInbound {
  return { node: m.node, certificateFingerprint: m.publicKeyFingerprint };
}

/**
 * Nodes whose inbound entries change when sets go from `before` to `after`:
 * every node added to or dropped from some set (it gains or loses a lister).
 */
export function inboundChanges(before: ReadonlyMap<string, readonly string[]>, after: ReadonlyMap<string, readonly string[]>): Set<string> {
  const out = new Set<string>();
  for (const node of new Set([...before.keys(), ...after.keys()])) {
    const a = new Set(before.get(node) ?? []);
    const b = new Set(after.get(node) ?? []);
    for (const x of a) if (!b.has(x)) out.add(x);
    for (const x of b) if (!a.has(x)) out.add(x);
  }
  return out;
}

/** Nodes whose stored set differs from the wanted one (members and stale rows alike). */
export function staleSets(wanted: ReadonlyMap<string, readonly string[]>, stored: ReadonlyMap<string, readonly string[]>): string[] {
  const out: string[] = [];
  for (const [node, set] of wanted) {
    const s = stored.get(node);
    if ((s === undefined && set.length > 0) || (s !== undefined && s.join("\u0000") !== set.join("\u0000"))) out.push(node);
  }
  for (const node of stored.keys()) if (!wanted.has(node)) out.push(node);
  return out.sort();
}
