/**
 * Symmetric authorisation in the mesh directory (controllers/mesh/plan.ts):
 * each member's inbound entries are exactly the members whose set lists it
 * and that its own set does not, bounded, with their pins; and the nodes
 * whose inbound entries a set change touches are the ones entering or
 * leaving some set.
 */
import assert from "node:assert/strict";
import { MAX_MESH_INBOUND, inboundChanges, inboundEntry, meshSetsOf, prepareDirectory } from "../../controllers/mesh/plan.js";
import { directoryDigest, setsDigest } from "../../controllers/mesh/sweep.js";
import { DEFAULT_PEER_POLICY, type MeshMemberRow } from "../../lib/state/mesh.js";

const REGIONS = ["eu", "us", "ap"];

function fleet(n: number): MeshMemberRow[] {
  return Array.from({ length: n }, (_, i) => ({
    node: `c1.n${String(i).padStart(5, "0")}`,
    nodeClass: i % 10 === 0 ? ("relay" as const) : ("standard" as const),
    region: REGIONS[i % 3] as string,
    zone: `z${Math.floor(i / 3) % 3}`,
    roles: i % 10 === 0 ? ["relay-node"] : ["entry-node"],
    endpoints: [`10.0.${Math.floor(i / 250)}.${i % 250}:4433`],
    reachable: true,
    relayCapable: i % 10 === 0,
    publicKeyFingerprint: `sha256:${i.toString(16).padStart(64, "0")}`,
  }));
}

describe("mesh directory: inbound entries (symmetric authorisation)", () => {
  const members = fleet(2000);
  const d = prepareDirectory({ cluster: "c1", policy: DEFAULT_PEER_POLICY, members });
  const { sets, inbound } = meshSetsOf(d);

  it("lists, for every member, exactly the members whose set names it and that it does not name", () => {
    const want = new Map<string, Set<string>>();
    for (const [node, set] of sets) for (const c of set) (want.get(c) ?? want.set(c, new Set()).get(c))?.add(node);
    let withInbound = 0;
    for (const m of members) {
      const own = new Set(sets.get(m.node));
      const expected = [...(want.get(m.node) ?? [])].filter((x) => !own.has(x)).sort();
      assert.deepEqual(inbound.get(m.node) ?? [], expected, m.node);
      if (expected.length > 0) withInbound++;
      assert.ok(!(inbound.get(m.node) ?? []).includes(m.node), "never itself");
    }
    assert.ok(withInbound > members.length / 2, `one-sided listings are common (${withInbound} of ${members.length})`);
    // Every one-sided listing is covered: A lists B => B's set or B's inbound names A.
    for (const [a, set] of sets) for (const b of set) assert.ok((sets.get(b) ?? []).includes(a) || (inbound.get(b) ?? []).includes(a), `${a} -> ${b}`);
  });

  it("is bounded, below the cap at this size, and carries the lister's pin", () => {
    const largest = Math.max(...[...inbound.values()].map((l) => l.length));
    // Relays carry the most (every set tops up to 3 of them); measured max 159 at 10,000 and 209 at 100,000 nodes.
    assert.ok(largest < MAX_MESH_INBOUND, `largest inbound ${largest}`);
    const m = members[7] as MeshMemberRow;
    assert.deepEqual(inboundEntry(m), { node: m.node, certificateFingerprint: m.publicKeyFingerprint });
  });

  it("caps a node listed by more than MAX_MESH_INBOUND members, keeping a stable choice", () => {
    // 400 thin members in one zone and one relay: every thin member tops up with that relay.
    const many: MeshMemberRow[] = Array.from({ length: 400 }, (_, i) => ({ ...(fleet(1)[0] as MeshMemberRow), node: `c1.t${String(i).padStart(4, "0")}`, nodeClass: "thin", roles: ["entry-node"], relayCapable: false, region: "eu", zone: "z0" }));
    const relay: MeshMemberRow = { ...(fleet(1)[0] as MeshMemberRow), node: "c1.relay", region: "us", zone: "z9" };
    const dd = prepareDirectory({ cluster: "c1", policy: DEFAULT_PEER_POLICY, members: [...many, relay] });
    const a = meshSetsOf(dd).inbound.get("c1.relay") ?? [];
    assert.equal(a.length, MAX_MESH_INBOUND);
    assert.deepEqual(meshSetsOf(dd).inbound.get("c1.relay"), a, "deterministic");
  });

  it("keys kept sets by what decides them: a renewal or an endpoint change keeps them, a region move does not", () => {
    const base = { cluster: "c1", policy: DEFAULT_PEER_POLICY, members: fleet(50) };
    const change = (f: (m: MeshMemberRow) => MeshMemberRow): typeof base => ({ ...base, members: base.members.map((m, i) => (i === 7 ? f(m) : m)) });
    const renewed = change((m) => ({ ...m, publicKeyFingerprint: "sha256:renewed" }));
    const moved = change((m) => ({ ...m, endpoints: ["10.9.9.9:4433"] }));
    const region = change((m) => ({ ...m, region: "xx" }));
    const noEndpoints = change((m) => ({ ...m, endpoints: [] }));
    assert.equal(setsDigest(renewed), setsDigest(base));
    assert.equal(setsDigest(moved), setsDigest(base));
    assert.notEqual(setsDigest(region), setsDigest(base));
    assert.notEqual(setsDigest(noEndpoints), setsDigest(base), "no longer a candidate");
    assert.notEqual(directoryDigest(renewed), directoryDigest(base), "the entries (and the sweep's re-marks) still see the pin");
    assert.deepEqual(meshSetsOf(prepareDirectory(renewed)).sets, meshSetsOf(prepareDirectory(base)).sets);
  });

  it("names the nodes whose inbound entries a set change touches", () => {
    const before = new Map([["a", ["b", "c"]], ["d", ["a"]]]);
    const after = new Map([["a", ["b", "e"]], ["f", ["b"]]]);
    assert.deepEqual([...inboundChanges(before, after)].sort(), ["a", "b", "c", "e"]);
    assert.deepEqual([...inboundChanges(before, before)], []);
  });
});
