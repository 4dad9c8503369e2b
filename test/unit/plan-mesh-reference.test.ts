/**
 * The candidate selection (controllers/mesh/plan.ts) against a reference:
 * the straightforward string-keyed form of the same walk (rings of names,
 * a set lookup per pick, names sorted as strings), which the indexed
 * implementation must match set for set and inbound list for inbound list
 * over seeded random directories (regions and zones missing or shared,
 * mixed classes, relays, members without endpoints or pins, the inbound cap).
 * Any drift would re-sign every snapshot of a fleet at an upgrade.
 */
import assert from "node:assert/strict";
import { MAX_MESH_INBOUND, RELAY_CANDIDATES, budgetOf, candidatesFor, isCandidate, isRelay, meshSetsOf, prepareDirectory, stableHash } from "../../controllers/mesh/plan.js";
import { DEFAULT_PEER_POLICY, type MeshDirectory, type MeshMemberRow } from "../../lib/state/mesh.js";

// ---- reference (the former implementation, kept verbatim in substance) ----
interface Ring {
  hashes: Float64Array;
  names: string[];
}

interface Region {
  name: string;
  zones: Map<string, Ring>;
}

/** Rings per region and zone, built once per cluster directory. */
interface DomainIndex {
  regions: Map<string, Region>;
}

function ring(members: readonly MeshMemberRow[]): Ring {
  const entries = members.map((m) => ({ h: stableHash(m.node), n: m.node })).sort((a, b) => a.h - b.h || (a.n < b.n ? -1 : a.n > b.n ? 1 : 0));
  return { hashes: Float64Array.from(entries.map((e) => e.h)), names: entries.map((e) => e.n) };
}

/** Groups members into region/zone rings. O(n log n). */
function indexDomains(members: readonly MeshMemberRow[]): DomainIndex {
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
function pickSpread(index: DomainIndex, self: Pick<MeshMemberRow, "node" | "region" | "zone">, count: number, excluded: (name: string) => boolean): string[] {
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

interface RefPrepared {
  directory: MeshDirectory;
  members: Map<string, MeshMemberRow>;
  candidates: DomainIndex;
  relays: DomainIndex;
}

function refPrepare(directory: MeshDirectory): RefPrepared {
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
function refCandidatesFor(d: RefPrepared, node: string): string[] {
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

function allCandidateSets(d: RefPrepared): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const m of d.directory.members) out.set(m.node, refCandidatesFor(d, m.node));
  return out;
}

interface MeshSets {
  sets: Map<string, string[]>;
  inbound: Map<string, string[]>;
}

function meshSetsOf_(d: RefPrepared): MeshSets {
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

// ---- end of reference ----

function randomDirectory(rnd: () => number, n: number): MeshDirectory {
  const regions = ["", "eu", "us", "ap", "sa"].slice(0, 1 + Math.floor(rnd() * 5));
  const classes = ["standard", "relay", "thin", "core"] as const;
  const members: MeshMemberRow[] = Array.from({ length: n }, (_, i) => {
    const relayish = rnd() < 0.15;
    return {
      node: `c.n${Math.floor(rnd() * 1e6)}-${i}`,
      nodeClass: classes[Math.floor(rnd() * 4)] as MeshMemberRow["nodeClass"],
      region: regions[Math.floor(rnd() * regions.length)] as string,
      zone: ["", "z0", "z1", "z2"][Math.floor(rnd() * 4)] as string,
      roles: relayish ? ["relay-node"] : rnd() < 0.1 ? ["core-node"] : ["entry-node"],
      endpoints: rnd() < 0.9 ? ["10.0.0.1:4433"] : [],
      reachable: rnd() < 0.9,
      relayCapable: relayish || rnd() < 0.05,
      publicKeyFingerprint: rnd() < 0.95 ? "sha256:x" : "",
    };
  });
  return { cluster: "c", policy: DEFAULT_PEER_POLICY, members };
}

const sorted = (m: Map<string, string[]>): Array<[string, string[]]> => [...m].sort((x, y) => (x[0] < y[0] ? -1 : 1));

describe("mesh candidate selection: indexed implementation against the reference", () => {
  it("gives the same sets and inbound lists over seeded random directories", function () {
    this.timeout(120_000);
    const seed = Number(process.env.MESH_PLAN_SEED ?? Date.now() % 1_000_000);
    console.log(`      seed ${seed} (MESH_PLAN_SEED=${seed} to repeat)`);
    let s = seed;
    const rnd = (): number => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
    for (let round = 0; round < 40; round++) {
      const dir = randomDirectory(rnd, 1 + Math.floor(rnd() * (round < 30 ? 300 : 3000)));
      const want = referenceSets(dir);
      const got = meshSetsOf(prepareDirectory(dir));
      assert.deepEqual(sorted(got.sets), sorted(want.sets), `sets, seed ${seed} round ${round}`);
      assert.deepEqual(sorted(got.inbound), sorted(want.inbound), `inbound, seed ${seed} round ${round}`);
      const d = prepareDirectory(dir);
      for (const m of dir.members.slice(0, 10)) assert.deepEqual(candidatesFor(d, m.node), want.sets.get(m.node), `${m.node}, seed ${seed}`);
    }
  });

  it("gives the same capped inbound list for a node listed by more than the cap", () => {
    const members: MeshMemberRow[] = Array.from({ length: 600 }, (_, i) => ({ node: `c.t${i}`, nodeClass: "thin", region: "eu", zone: "z0", roles: i === 0 ? ["relay-node"] : ["entry-node"], endpoints: ["10.0.0.1:4433"], reachable: true, relayCapable: i === 0, publicKeyFingerprint: "p" }));
    const dir = { cluster: "c", policy: DEFAULT_PEER_POLICY, members };
    const got = meshSetsOf(prepareDirectory(dir));
    assert.equal(got.inbound.get("c.t0")?.length, MAX_MESH_INBOUND);
    assert.deepEqual(sorted(got.inbound), sorted(referenceSets(dir).inbound));
  });
});

function referenceSets(dir: MeshDirectory): MeshSets {
  return meshSetsOf_(refPrepare(dir));
}
