/**
 * The mesh directory's pure candidate selection (controllers/mesh/plan.ts):
 * bounds per class, spread over failure domains, cluster isolation, no self,
 * relay top-up, determinism and minimal churn. A wrong set either floods
 * nodes with peers (the full mesh this replaces) or authorises a peer the
 * node must not talk to.
 */
import assert from "node:assert/strict";
import { RELAY_CANDIDATES, WARM_CANDIDATES, allCandidateSets, candidatesFor, peerEntry, prepareDirectory, settingsFor, staleSets } from "../../controllers/mesh/plan.js";
import { DEFAULT_PEER_POLICY, peerPolicyOf, type MeshDirectory, type MeshMemberRow } from "../../lib/state/mesh.js";

const REGIONS = ["eu", "us", "ap"];
const ZONES = ["a", "b", "c"];

function member(node: string, over: Partial<MeshMemberRow> = {}): MeshMemberRow {
  return {
    node,
    nodeClass: "standard",
    region: "eu",
    zone: "a",
    roles: ["entry-node"],
    endpoints: [`10.0.0.1:4433`],
    reachable: true,
    relayCapable: false,
    publicKeyFingerprint: `sha256:${node}`,
    ...over,
  };
}

/** n members spread over 3 regions x 3 zones; every 10th a reachable relay. */
function fleet(n: number, prefix = "c1.n", over: (i: number) => Partial<MeshMemberRow> = () => ({})): MeshMemberRow[] {
  return Array.from({ length: n }, (_, i) =>
    member(`${prefix}${String(i).padStart(5, "0")}`, {
      region: REGIONS[i % 3] as string,
      zone: ZONES[Math.floor(i / 3) % 3] as string,
      ...(i % 10 === 0 ? { roles: ["relay-node"], nodeClass: "relay" as const, relayCapable: true } : {}),
      ...over(i),
    }),
  );
}

function dir(members: MeshMemberRow[], cluster = "c1"): MeshDirectory {
  return { cluster, policy: DEFAULT_PEER_POLICY, members };
}

describe("mesh candidate selection (controllers/mesh/plan.ts)", () => {
  const members = fleet(300);
  const d = prepareDirectory(dir(members));
  const sets = allCandidateSets(d);
  const byName = new Map(members.map((m) => [m.node, m]));

  const bounds: { cls: string; pick: (m: MeshMemberRow) => boolean; max: number }[] = [
    { cls: "standard", pick: (m) => m.nodeClass === "standard", max: DEFAULT_PEER_POLICY.standard.max },
    { cls: "relay", pick: (m) => m.nodeClass === "relay", max: DEFAULT_PEER_POLICY.relay.max },
  ];
  for (const b of bounds) {
    it(`gives a ${b.cls} node at most max + warm + relays candidates, and at least max + warm when the cluster has them`, () => {
      for (const m of members.filter(b.pick)) {
        const s = sets.get(m.node) ?? [];
        assert.ok(s.length >= b.max + WARM_CANDIDATES, `${m.node}: ${s.length}`);
        assert.ok(s.length <= b.max + WARM_CANDIDATES + RELAY_CANDIDATES, `${m.node}: ${s.length}`);
      }
    });
  }

  it("follows the cluster's peerPolicy, and a thin node gets thin counts", () => {
    const policy = peerPolicyOf({ peerPolicy: { thin: { min: 1, max: 2 }, standard: { max: 4 } } });
    const ms = fleet(60, "c1.n", (i) => (i === 1 ? { nodeClass: "thin" } : {}));
    const p = prepareDirectory({ cluster: "c1", policy, members: ms });
    const thin = candidatesFor(p, "c1.n00001");
    assert.ok(thin.length <= 2 + WARM_CANDIDATES + RELAY_CANDIDATES && thin.length >= 2 + WARM_CANDIDATES, `thin: ${thin.length}`);
    assert.deepEqual(settingsFor(p, "c1.n00001"), { nodeClass: "thin", activePeers: { min: 1, max: 2 }, hysteresisPercent: 20 });
    assert.equal(candidatesFor(p, "c1.n00002").length <= 4 + WARM_CANDIDATES + RELAY_CANDIDATES, true);
  });

  it("never lists the node itself", () => {
    for (const [node, s] of sets) assert.ok(!s.includes(node), node);
  });

  it("spreads a set over every region and, within the node's own region, over its zones", () => {
    for (const m of members.filter((x) => x.nodeClass === "standard").slice(0, 50)) {
      const s = (sets.get(m.node) ?? []).map((n) => byName.get(n) as MeshMemberRow);
      assert.deepEqual(new Set(s.map((x) => x.region)), new Set(REGIONS), m.node);
      assert.deepEqual(new Set(s.filter((x) => x.region === m.region).map((x) => x.zone)), new Set(ZONES), m.node);
    }
  });

  it("tops every set up to RELAY_CANDIDATES relay-capable, directly reachable relay-role peers", () => {
    for (const [node, s] of sets) {
      const relays = s.filter((n) => {
        const x = byName.get(n) as MeshMemberRow;
        return x.relayCapable && x.reachable && x.roles.includes("relay-node");
      });
      assert.ok(relays.length >= RELAY_CANDIDATES, `${node}: ${relays.length}`);
    }
  });

  it("never offers an unreachable node as a relay, nor a relay-capable node without a relay or core role", () => {
    const ms = [member("c1.a"), member("c1.r1", { relayCapable: true, reachable: false, roles: ["relay-node"] }), member("c1.r2", { relayCapable: true, roles: ["entry-node"] })];
    const p = prepareDirectory(dir(ms));
    const entries = candidatesFor(p, "c1.a").map((n) => peerEntry("c1", p.members.get(n) as MeshMemberRow));
    assert.deepEqual(entries.map((e) => [e.node, e.relayCapable]), [["c1.r1", false], ["c1.r2", false]]);
  });

  it("offers only candidates of the directory's cluster, and a node of another cluster gets nothing from it", () => {
    const other = fleet(50, "c2.n");
    const p = prepareDirectory(dir(members));
    for (const o of other) assert.deepEqual(candidatesFor(p, o.node), []);
    const p2 = prepareDirectory(dir(other, "c2"));
    for (const o of other) for (const n of candidatesFor(p2, o.node)) assert.ok(n.startsWith("c2."), n);
  });

  it("leaves out members without endpoints or without an active certificate, but still gives them a set", () => {
    const ms = fleet(40, "c1.n", (i) => (i === 5 ? { endpoints: [] } : i === 6 ? { publicKeyFingerprint: "" } : {}));
    const p = prepareDirectory(dir(ms));
    const all = allCandidateSets(p);
    for (const s of all.values()) assert.ok(!s.includes("c1.n00005") && !s.includes("c1.n00006"));
    assert.ok((all.get("c1.n00005") ?? []).length > 0);
  });

  it("gives a node that is not a mesh member no peers and no settings", () => {
    assert.deepEqual(candidatesFor(d, "c1.not-a-member"), []);
    assert.equal(settingsFor(d, "c1.not-a-member"), undefined);
  });

  it("is deterministic: the same directory in any order gives the same sets", () => {
    const shuffled = [...members].reverse();
    assert.deepEqual(allCandidateSets(prepareDirectory(dir(shuffled))), sets);
  });

  it("changes only the sets that listed a node when that node leaves", () => {
    const gone = "c1.n00042";
    const listing = [...sets].filter(([, s]) => s.includes(gone)).map(([n]) => n);
    assert.ok(listing.length > 0);
    const after = allCandidateSets(prepareDirectory(dir(members.filter((m) => m.node !== gone))));
    const changed = staleSets(after, sets).filter((n) => n !== gone);
    assert.deepEqual(changed, listing.sort());
  });

  it("enters few sets when a node joins (consistent hashing, not a reshuffle)", () => {
    const joined = member("c1.zz-new", { region: "us", zone: "b" });
    const after = allCandidateSets(prepareDirectory(dir([...members, joined])));
    const changed = staleSets(after, sets).filter((n) => n !== joined.node);
    const listing = [...after].filter(([, s]) => s.includes(joined.node)).length;
    assert.equal(changed.length, listing);
    assert.ok(changed.length < members.length / 5, `${changed.length} of ${members.length} sets changed`);
  });

  it("describes a peer with what the agent needs to reach, authenticate and score it", () => {
    const m = member("c1.p", { region: "eu", zone: "b", roles: ["core-node", "relay-node"], relayCapable: true, endpoints: ["[fd00::1]:4433", "10.1.1.1:4433"] });
    assert.deepEqual(peerEntry("c1", m), {
      node: "c1.p",
      endpoints: ["[fd00::1]:4433", "10.1.1.1:4433"],
      serverName: "c1.p.c1.fabric.internal",
      certificateFingerprint: "sha256:c1.p",
      nodeClass: "core",
      region: "eu",
      zone: "b",
      roles: ["core-node", "relay-node"],
      relayCapable: true,
      directlyReachable: true,
    });
  });

  it("reports stored sets of nodes no longer in the directory as stale", () => {
    assert.deepEqual(staleSets(new Map([["a", ["b"]]]), new Map([["a", ["b"]], ["gone", ["a"]]])), ["gone"]);
    assert.deepEqual(staleSets(new Map([["a", []]]), new Map()), []);
  });
});
