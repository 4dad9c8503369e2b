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
  return hashAfter(EMPTY_PREFIX, s);
}

/** cyrb53's state after a prefix: hashing the rest continues from it ({@link hashAfter}). */
interface HashPrefix {
  h1: number;
  h2: number;
}

/** cyrb53's initial state (the prefix ""). */
const EMPTY_PREFIX: HashPrefix = { h1: 0xdeadbeef, h2: 0x41c6ce57 };

function prefixOf(s: string): HashPrefix {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < s.length; i++) {
    const ch = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  return { h1, h2 };
}

/** stableHash(prefix + s) from the prefix's state: the same value, without hashing the prefix again. */
function hashAfter(p: HashPrefix, s: string): number {
  let h1 = p.h1;
  let h2 = p.h2;
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

/** One zone's candidates, ordered by the stable hash of their names: member indices and their hashes. */
interface Ring {
  hashes: Float64Array;
  ids: Int32Array;
}

interface Region {
  name: string;
  zones: Map<string, Ring>;
}

/** Rings per region and zone, built once per cluster directory. */
export interface DomainIndex {
  regions: Map<string, Region>;
}

function ring(list: readonly MeshMemberRow[], ids: readonly number[], nameHash: Float64Array): Ring {
  const sorted = [...ids].sort((a, b) => {
    const d = (nameHash[a] as number) - (nameHash[b] as number);
    if (d !== 0) return d;
    const x = (list[a] as MeshMemberRow).node;
    const y = (list[b] as MeshMemberRow).node;
    return x < y ? -1 : x > y ? 1 : 0;
  });
  return { hashes: Float64Array.from(sorted, (i) => nameHash[i] as number), ids: Int32Array.from(sorted) };
}

/** Groups the members at `ids` into region/zone rings. O(n log n). */
function indexDomains(list: readonly MeshMemberRow[], ids: readonly number[], nameHash: Float64Array): DomainIndex {
  const byRegion = new Map<string, Map<string, number[]>>();
  for (const i of ids) {
    const m = list[i] as MeshMemberRow;
    let zones = byRegion.get(m.region);
    if (zones === undefined) byRegion.set(m.region, (zones = new Map()));
    let l = zones.get(m.zone);
    if (l === undefined) zones.set(m.zone, (l = []));
    l.push(i);
  }
  const regions = new Map<string, Region>();
  for (const [name, zones] of byRegion) regions.set(name, { name, zones: new Map([...zones].map(([z, l]) => [z, ring(list, l, nameHash)])) });
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

/** A walk over one zone's ring from the point hashed from (node, region, zone). */
class Cursor {
  private pos: number;
  private left: number;
  constructor(private readonly r: Ring, start: number) {
    this.pos = lowerBound(r.hashes, start) % Math.max(1, r.ids.length);
    this.left = r.ids.length;
  }
  /** The next member not stamped with `mark`, or -1 when the ring is exhausted. */
  next(stamp: Int32Array, mark: number): number {
    const ids = this.r.ids;
    while (this.left > 0) {
      const id = ids[this.pos] as number;
      this.pos = this.pos + 1 === ids.length ? 0 : this.pos + 1;
      this.left--;
      if (stamp[id] !== mark) return id;
    }
    return -1;
  }
}

/** `names` other than `first`, ordered by the stable hash of (self, name), then by name; `self` is the prefix of `${node}\0`. */
function byHash(self: HashPrefix, names: Iterable<string>, first: string): string[] {
  const rest: Array<{ n: string; h: number }> = [];
  for (const n of names) if (n !== first) rest.push({ n, h: hashAfter(self, n) });
  rest.sort((a, b) => a.h - b.h || (a.n < b.n ? -1 : 1));
  return rest.map((x) => x.n);
}

interface Walk {
  next: number;
  zones: Cursor[];
}

/**
 * Picks up to `count` members from `index` for `self` into `out`, spread
 * round-robin over regions (own first) and their zones (own first), skipping
 * members stamped with `mark` and stamping those it takes. Deterministic.
 */
function pickSpread(index: DomainIndex, self: Pick<MeshMemberRow, "node" | "region" | "zone">, count: number, stamp: Int32Array, mark: number, out: number[]): void {
  if (count <= 0) return;
  const want = out.length + count;
  const pre = prefixOf(`${self.node}\u0000`);
  const regionOrder = byHash(pre, index.regions.keys(), self.region);
  if (index.regions.has(self.region)) regionOrder.unshift(self.region);
  // Per region: its zones in order, each with a cursor.
  let live: Walk[] = [];
  for (const rn of regionOrder) {
    const region = index.regions.get(rn) as Region;
    const zones = byHash(pre, region.zones.keys(), rn === self.region ? self.zone : "\u0000none");
    if (rn === self.region && region.zones.has(self.zone)) zones.unshift(self.zone);
    if (zones.length > 0) live.push({ next: 0, zones: zones.map((z) => new Cursor(region.zones.get(z) as Ring, hashAfter(pre, `${rn}\u0000${z}`))) });
  }
  while (out.length < want && live.length > 0) {
    for (const w of live) {
      if (out.length >= want) break;
      while (w.zones.length > 0) {
        const i = w.next % w.zones.length;
        const got = (w.zones[i] as Cursor).next(stamp, mark);
        if (got >= 0) {
          out.push(got);
          stamp[got] = mark;
          w.next = i + 1;
          break;
        }
        w.zones.splice(i, 1);
      }
    }
    live = live.filter((w) => w.zones.length > 0);
  }
}

/** A cluster's directory prepared for selection (O(n log n), once per build). */
export interface PreparedDirectory {
  directory: MeshDirectory;
  members: Map<string, MeshMemberRow>;
  /** Member index of each name (into directory.members). */
  ids: Map<string, number>;
  /** Position of each member's name in code-unit order (sorting indices by it sorts the names). */
  rank: Int32Array;
  /** 1 where the member at that index is relay-capable ({@link isRelay}). */
  relay: Uint8Array;
  candidates: DomainIndex;
  relays: DomainIndex;
  /** Scratch marks of the selection (one mark per selected set; never cleared, the mark moves on). */
  scratch: { stamp: Int32Array; mark: number };
}

/** Builds the rings of a directory. */
export function prepareDirectory(directory: MeshDirectory): PreparedDirectory {
  const list = directory.members;
  const nameHash = Float64Array.from(list, (m) => stableHash(m.node));
  const relay = Uint8Array.from(list, (m) => (isRelay(m) ? 1 : 0));
  const candidates: number[] = [];
  for (let i = 0; i < list.length; i++) if (isCandidate(list[i] as MeshMemberRow)) candidates.push(i);
  const ids = new Map<string, number>();
  for (let i = 0; i < list.length; i++) ids.set((list[i] as MeshMemberRow).node, i);
  const rank = new Int32Array(list.length);
  const order = list.map((m, i) => ({ n: m.node, i })).sort((a, b) => (a.n < b.n ? -1 : a.n > b.n ? 1 : 0));
  order.forEach((x, r) => (rank[x.i] = r));
  return {
    directory,
    members: new Map(list.map((m) => [m.node, m])),
    ids,
    rank,
    relay,
    candidates: indexDomains(list, candidates, nameHash),
    relays: indexDomains(
      list,
      candidates.filter((i) => relay[i] === 1),
      nameHash,
    ),
    scratch: { stamp: new Int32Array(list.length), mark: 0 },
  };
}

/** The member indices of one node's candidate set (unsorted); empty when it is not a member. */
function candidateIds(d: PreparedDirectory, node: string): number[] {
  const at = d.ids.get(node);
  if (at === undefined) return [];
  const self = d.directory.members[at] as MeshMemberRow;
  const s = d.scratch;
  const mark = ++s.mark;
  s.stamp[at] = mark;
  const out: number[] = [];
  pickSpread(d.candidates, self, budgetOf(d.directory.policy, self), s.stamp, mark, out);
  let relaysHeld = 0;
  for (const i of out) relaysHeld += d.relay[i] as number;
  if (relaysHeld < RELAY_CANDIDATES) pickSpread(d.relays, self, RELAY_CANDIDATES - relaysHeld, s.stamp, mark, out);
  return out;
}

/** The names at `ids`, sorted (by rank: the same order as sorting the names). */
function namesOf(d: PreparedDirectory, ids: number[]): string[] {
  const rank = d.rank;
  ids.sort((a, b) => (rank[a] as number) - (rank[b] as number));
  return ids.map((i) => (d.directory.members[i] as MeshMemberRow).node);
}

/**
 * The candidate names of one node, sorted: empty when it is not a mesh
 * member of this directory. Bounded by budgetOf + RELAY_CANDIDATES.
 */
export function candidatesFor(d: PreparedDirectory, node: string): string[] {
  return namesOf(d, candidateIds(d, node));
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

/**
 * Computes {@link MeshSets} for a directory: O(N*k log n), the same work as
 * computing every set. Works on member indices (the listers of a node in a
 * flat array, its own set checked by a scan of ~k entries) and turns them
 * into sorted names once at the end.
 */
export function meshSetsOf(d: PreparedDirectory): MeshSets {
  const list = d.directory.members;
  const n = list.length;
  const setIds: number[][] = new Array(n);
  const count = new Int32Array(n + 1);
  for (let i = 0; i < n; i++) {
    const ids = candidateIds(d, (list[i] as MeshMemberRow).node);
    setIds[i] = ids;
    for (const c of ids) count[c + 1]++;
  }
  // Listers of each member, in member order: start[c] .. start[c + 1] in `listers`.
  const start = new Int32Array(n + 1);
  for (let i = 0; i < n; i++) start[i + 1] = (start[i] as number) + (count[i + 1] as number);
  const fill = start.slice(0, n);
  const listers = new Int32Array(start[n] as number);
  for (let i = 0; i < n; i++) for (const c of setIds[i] as number[]) listers[fill[c]++] = i;
  const sets = new Map<string, string[]>();
  const inbound = new Map<string, string[]>();
  for (let c = 0; c < n; c++) {
    const node = (list[c] as MeshMemberRow).node;
    sets.set(node, namesOf(d, setIds[c] as number[]));
    const own = setIds[c] as number[];
    let extra: number[] = [];
    for (let j = start[c] as number; j < (start[c + 1] as number); j++) {
      const x = listers[j] as number;
      if (!own.includes(x)) extra.push(x);
    }
    if (extra.length === 0) continue;
    if (extra.length > MAX_MESH_INBOUND) {
      extra = extra
        .map((x) => [stableHash(`${node}\u0000${(list[x] as MeshMemberRow).node}`), x] as const)
        .sort((a, b) => a[0] - b[0])
        .slice(0, MAX_MESH_INBOUND)
        .map(([, x]) => x);
    }
    inbound.set(node, namesOf(d, extra));
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
