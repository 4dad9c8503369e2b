import assert from "node:assert/strict";
import { chooseRoute, mayForward, type RelayAdvertisement, type RouteDecision, type RouteInput, type RoutingLink } from "../../agent/mesh/routing.js";
import { TRUST_WINDOW_MS } from "../../agent/mesh/peer-manager.js";

const NOW = 50_000_000;
const self = { node: "a", cluster: "eu-1" };

function link(node: string, over: Partial<RoutingLink> = {}): RoutingLink {
  return { node, cluster: "eu-1", relayCapable: false, state: "active", rttEwmaMs: 20, jitterMs: 1, loss: 0, lastHeardMs: NOW, failures: 0, sinceMs: NOW - 60_000, ...over };
}
function relay(node: string, over: Partial<RoutingLink> = {}): RoutingLink {
  return link(node, { relayCapable: true, ...over });
}
function ad(relayName: string, reaches: string[], cluster = "eu-1"): RelayAdvertisement {
  return { relay: relayName, cluster, reaches };
}

describe("mesh routing", () => {
  const cases: Array<{ name: string; input: Partial<RouteInput>; want: RouteDecision }> = [
    {
      name: "a live direct link is used",
      input: { links: [link("b"), relay("r1")], relays: [ad("r1", ["b"])] },
      want: { ok: true, route: { kind: "direct", destination: "b" } },
    },
    {
      name: "without a direct link, one hop through a relay that reaches the destination",
      input: { links: [relay("r1"), relay("r2")], relays: [ad("r1", ["c"]), ad("r2", ["b"])] },
      want: { ok: true, route: { kind: "relay", destination: "b", relay: "r2" } },
    },
    {
      name: "of two relays, the one with the cheaper link",
      input: { links: [relay("r1", { rttEwmaMs: 80 }), relay("r2", { rttEwmaMs: 10 })], relays: [ad("r1", ["b"]), ad("r2", ["b"])] },
      want: { ok: true, route: { kind: "relay", destination: "b", relay: "r2" } },
    },
    {
      name: "equal relays are broken by name",
      input: { links: [relay("r2"), relay("r1")], relays: [ad("r2", ["b"]), ad("r1", ["b"])] },
      want: { ok: true, route: { kind: "relay", destination: "b", relay: "r1" } },
    },
    {
      name: "a direct link silent past the trust window is not used",
      input: { links: [link("b", { lastHeardMs: NOW - TRUST_WINDOW_MS - 500 }), relay("r1")], relays: [ad("r1", ["b"])] },
      want: { ok: true, route: { kind: "relay", destination: "b", relay: "r1" } },
    },
    {
      name: "a peer that advertises reachability but is not relay-capable is not a relay",
      input: { links: [link("r1")], relays: [ad("r1", ["b"])] },
      want: { ok: false, reason: "NoPath" },
    },
    {
      name: "a relay without a live link from this node is not used",
      input: { links: [relay("r1", { state: "warm" })], relays: [ad("r1", ["b"])] },
      want: { ok: false, reason: "NoPath" },
    },
    {
      name: "no route to another cluster's node, even with a direct link",
      input: { destination: { node: "b", cluster: "us-1" }, links: [link("b", { cluster: "us-1" })], relays: [] },
      want: { ok: false, reason: "CrossCluster" },
    },
    {
      name: "a link or relay of another cluster is never used",
      input: { links: [link("b", { cluster: "us-1" }), relay("r1", { cluster: "us-1" })], relays: [ad("r1", ["b"], "us-1")] },
      want: { ok: false, reason: "NoPath" },
    },
    {
      name: "a relay advertised in another cluster is ignored even when the link claims this one",
      input: { links: [relay("r1")], relays: [ad("r1", ["b"], "us-1")] },
      want: { ok: false, reason: "NoPath" },
    },
    {
      name: "no route to itself",
      input: { destination: self, links: [], relays: [] },
      want: { ok: false, reason: "SelfDestination" },
    },
    {
      name: "a relayed route in use stays while it lives, though another relay got cheaper",
      input: { links: [relay("r1", { rttEwmaMs: 60 }), relay("r2", { rttEwmaMs: 10 })], relays: [ad("r1", ["b"]), ad("r2", ["b"])], current: { kind: "relay", destination: "b", relay: "r1" } },
      want: { ok: true, route: { kind: "relay", destination: "b", relay: "r1" } },
    },
    {
      name: "a direct path replaces a relayed route in use",
      input: { links: [link("b"), relay("r1")], relays: [ad("r1", ["b"])], current: { kind: "relay", destination: "b", relay: "r1" } },
      want: { ok: true, route: { kind: "direct", destination: "b" } },
    },
    {
      name: "fails over when the relay in use dies",
      input: { links: [relay("r1", { lastHeardMs: NOW - 10_000 }), relay("r2")], relays: [ad("r1", ["b"]), ad("r2", ["b"])], current: { kind: "relay", destination: "b", relay: "r1" } },
      want: { ok: true, route: { kind: "relay", destination: "b", relay: "r2" } },
    },
    {
      name: "fails over when the relay in use no longer reaches the destination",
      input: { links: [relay("r1"), relay("r2")], relays: [ad("r1", []), ad("r2", ["b"])], current: { kind: "relay", destination: "b", relay: "r1" } },
      want: { ok: true, route: { kind: "relay", destination: "b", relay: "r2" } },
    },
    {
      name: "falls back to a relay when the direct path dies",
      input: { links: [link("b", { state: "failed" }), relay("r1")], relays: [ad("r1", ["b"])], current: { kind: "direct", destination: "b" } },
      want: { ok: true, route: { kind: "relay", destination: "b", relay: "r1" } },
    },
    {
      name: "never two relay hops: a relay reaching only another relay is no path",
      input: { links: [relay("r1")], relays: [ad("r1", ["r2"]), ad("r2", ["b"])] },
      want: { ok: false, reason: "NoPath" },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const input: RouteInput = { self, destination: { node: "b", cluster: "eu-1" }, links: [], relays: [], now: NOW, ...c.input };
      assert.deepEqual(chooseRoute(input), c.want);
    });
  }

  it("the same inputs in any order give the same route", () => {
    const links = ["r1", "r2", "r3", "r4"].map((n) => relay(n, { rttEwmaMs: 30 }));
    const relays = ["r1", "r2", "r3", "r4"].map((n) => ad(n, ["b"]));
    const a = chooseRoute({ self, destination: { node: "b", cluster: "eu-1" }, links, relays, now: NOW });
    const b = chooseRoute({ self, destination: { node: "b", cluster: "eu-1" }, links: [...links].reverse(), relays: [...relays].reverse(), now: NOW });
    assert.deepEqual(a, b);
  });

  describe("mayForward (the relay's side)", () => {
    const snapshot = {
      relay: { node: "r1", cluster: "eu-1" },
      peers: [
        { node: "a", cluster: "eu-1" },
        { node: "b", cluster: "eu-1" },
        { node: "x", cluster: "us-1" },
      ],
    };
    const table: Array<[string, string, ReturnType<typeof mayForward>]> = [
      ["a", "b", { allowed: true }],
      ["b", "a", { allowed: true }],
      ["a", "gone", { allowed: false, reason: "NotInSnapshot" }],
      ["gone", "b", { allowed: false, reason: "NotInSnapshot" }],
      ["a", "x", { allowed: false, reason: "CrossCluster" }],
      ["x", "a", { allowed: false, reason: "CrossCluster" }],
      ["a", "a", { allowed: false, reason: "SameNode" }],
      ["a", "r1", { allowed: false, reason: "ToRelay" }],
    ];
    for (const [from, to, want] of table) {
      it(`${from} -> ${to}: ${want.allowed ? "allowed" : want.reason}`, () => assert.deepEqual(mayForward(from, to, snapshot), want));
    }
  });
});
