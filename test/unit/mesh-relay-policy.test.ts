/**
 * The pure decisions behind relays and forwarding: stream headers, the
 * declared mesh ports a ServiceWorkload carries into its node's snapshot,
 * who accepts which stream, and the relay advertisement table.
 */
import assert from "node:assert/strict";
import { decideStream, declaredMeshPorts, parseStreamOpen, streamViewOf, type StreamOpen, type StreamOrigin, type StreamView } from "../../agent/mesh/forward-policy.js";
import { parseForwardRequest } from "../../agent/mesh/control-socket.js";
import { ADVERT_TTL_MS, advertisementFor, MAX_REACHES, parseAdvertisement, RelayTable } from "../../agent/mesh/relay-table.js";
import { snapshotWorkloadOf } from "../../controllers/serviceworkload/plan.js";
import type { SnapshotMeshPeer, SnapshotWorkload } from "../../lib/snapshot/format.js";
import { seeded } from "../support/random.js";

function peer(node: string, relayCapable = false): SnapshotMeshPeer {
  return { node, endpoints: ["10.0.0.1:4433"], serverName: `${node}.c1.fabric.internal`, certificateFingerprint: "sha256:00", nodeClass: "standard", roles: [], ...(relayCapable ? { relayCapable } : {}) };
}

function view(over: Partial<StreamView> = {}): StreamView {
  return { self: "b", cluster: "c1", peers: new Map([["a", { relayCapable: false }], ["c", { relayCapable: false }], ["r", { relayCapable: true }]]), relay: false, ports: new Set([8080]), ...over };
}

describe("mesh relay and forwarding decisions", () => {
  describe("parseStreamOpen", () => {
    const good: Array<[unknown, StreamOpen]> = [
      [{ kind: "tcp", port: 80 }, { kind: "tcp", port: 80 }],
      [{ kind: "tcp", port: 65535, check: true }, { kind: "tcp", port: 65535, check: true }],
      [{ kind: "ping" }, { kind: "ping" }],
      [{ kind: "relay", target: "b" }, { kind: "relay", target: "b" }],
      [{ kind: "relayed", source: "a" }, { kind: "relayed", source: "a" }],
    ];
    for (const [v, want] of good) it(`accepts ${JSON.stringify(v)}`, () => assert.deepEqual(parseStreamOpen(v), want));
    const bad: unknown[] = [
      null, [], "tcp", 7, {}, { kind: "udp", port: 53 }, { kind: "tcp" }, { kind: "tcp", port: 0 }, { kind: "tcp", port: 65536 }, { kind: "tcp", port: 80.5 },
      { kind: "tcp", port: "80" }, { kind: "tcp", port: 80, check: "yes" }, { kind: "tcp", port: 80, host: "10.0.0.9" }, { kind: "ping", x: 1 },
      { kind: "relay" }, { kind: "relay", target: "" }, { kind: "relay", target: "x".repeat(254) }, { kind: "relay", target: ["b"] }, { kind: "relayed", source: 1 },
    ];
    for (const v of bad) it(`refuses ${JSON.stringify(v)}`, () => assert.equal(parseStreamOpen(v), undefined));

    it("never throws on random JSON (seeded)", () => {
      const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
      console.log(`      parseStreamOpen fuzz seed ${seed}`);
      const rnd = seeded(seed);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
      const value = (depth: number): unknown => {
        const k = Math.floor(rnd() * (depth > 3 ? 4 : 7));
        if (k === 0) return pick([0, -1, 1, 80, 65536, 1e308, NaN, 0.5]);
        if (k === 1) return pick(["", "tcp", "ping", "relay", "relayed", "b", "x".repeat(300)]);
        if (k === 2) return pick([true, false, null]);
        if (k === 3) return undefined;
        if (k === 4) return Array.from({ length: Math.floor(rnd() * 4) }, () => value(depth + 1));
        const o: Record<string, unknown> = {};
        for (let i = 0; i < Math.floor(rnd() * 4); i++) o[pick(["kind", "port", "check", "target", "source", "extra"])] = value(depth + 1);
        return o;
      };
      for (let i = 0; i < 5000; i++) {
        const v = value(0);
        const p = parseStreamOpen(v);
        if (p !== undefined) assert.deepEqual(parseStreamOpen(JSON.parse(JSON.stringify(p))), p, `seed ${seed}: ${JSON.stringify(v)}`);
        const ad = parseAdvertisement(v);
        if (ad !== undefined) assert.ok(ad.reaches.length <= MAX_REACHES && ad.reaches.every((n) => typeof n === "string"));
      }
    });
  });

  describe("declared mesh ports", () => {
    it("travel from the ServiceWorkload spec into the snapshot workload and back out as the node's ports", () => {
      const w = snapshotWorkloadOf("echo", 2, { cluster: "c1", role: "edge", command: ["/bin/echo-server"], meshPorts: [{ name: "echo", port: 7000 }, { name: "admin", port: 7001, protocol: "TCP" }] });
      assert.deepEqual(w["meshPorts"], [{ name: "echo", port: 7000, protocol: "tcp" }, { name: "admin", port: 7001, protocol: "tcp" }]);
      const plain = snapshotWorkloadOf("plain", 1, { cluster: "c1", role: "edge", command: ["/bin/true"] });
      assert.equal("meshPorts" in plain, false);
      assert.deepEqual(declaredMeshPorts({ workloads: [w, plain] }).map((p) => `${p.workload}/${p.name}:${p.port}`), ["echo/echo:7000", "echo/admin:7001"]);
    });

    it("skips entries of the wrong shape (never trusts what it cannot read)", () => {
      const base = snapshotWorkloadOf("w", 1, { cluster: "c1", role: "edge", command: ["/x"] });
      const odd = { ...base, meshPorts: [{ name: "a", port: 0, protocol: "tcp" }, { name: "b", port: 70000, protocol: "tcp" }, { name: "c", port: 81, protocol: "udp" }, { port: 82, protocol: "tcp" }, null, "83", { name: "d", port: 84, protocol: "tcp" }] } as unknown as SnapshotWorkload;
      const notList = { ...base, meshPorts: { port: 85 } } as unknown as SnapshotWorkload;
      assert.deepEqual(declaredMeshPorts({ workloads: [odd, notList] }).map((p) => p.port), [84]);
    });

    it("make a stream view with the relay role and the snapshot's relay-capable peers", () => {
      const w = snapshotWorkloadOf("echo", 1, { cluster: "c1", role: "edge", command: ["/x"], meshPorts: [{ name: "echo", port: 7000 }] });
      const v = streamViewOf({ meshPeers: [peer("a"), peer("r", true)], roles: [{ role: "relay-node", assignment: "x" }], workloads: [w] }, "b", "c1");
      assert.deepEqual([...v.peers], [["a", { relayCapable: false }], ["r", { relayCapable: true }]]);
      assert.equal(v.relay, true);
      assert.deepEqual([...v.ports], [7000]);
      assert.equal(streamViewOf({ meshPeers: [], roles: [{ role: "entry-node", assignment: "x" }], workloads: [] }, "b", "c1").relay, false);
    });
  });

  describe("decideStream", () => {
    const link = (from: string): StreamOrigin => ({ via: "link", from });
    const relayed = (source: string): StreamOrigin => ({ via: "relayed", source });
    const live = (n: string): boolean => n === "c" || n === "a";
    const cases: Array<{ name: string; open: StreamOpen; origin: StreamOrigin; view?: Partial<StreamView>; want: string }> = [
      { name: "a declared port from a snapshot peer", open: { kind: "tcp", port: 8080 }, origin: link("a"), want: "ok" },
      { name: "an undeclared port", open: { kind: "tcp", port: 22 }, origin: link("a"), want: "PortNotDeclared" },
      { name: "a declared port inside a relayed stream", open: { kind: "tcp", port: 8080 }, origin: relayed("a"), want: "ok" },
      { name: "a node outside the snapshot (removed, revoked, other cluster)", open: { kind: "tcp", port: 8080 }, origin: link("z"), want: "NotInSnapshot" },
      { name: "a relayed source outside the snapshot", open: { kind: "ping" }, origin: relayed("z"), want: "NotInSnapshot" },
      { name: "relay request to a non-relay", open: { kind: "relay", target: "c" }, origin: link("a"), want: "NotARelay" },
      { name: "relay request on a relay with a live link to the target", open: { kind: "relay", target: "c" }, origin: link("a"), view: { relay: true }, want: "ok" },
      { name: "relay request to a target outside the relay's snapshot", open: { kind: "relay", target: "z" }, origin: link("a"), view: { relay: true }, want: "NotInSnapshot" },
      { name: "relay request to the relay itself", open: { kind: "relay", target: "b" }, origin: link("a"), view: { relay: true }, want: "ToRelay" },
      { name: "relay request back to the source", open: { kind: "relay", target: "a" }, origin: link("a"), view: { relay: true }, want: "SameNode" },
      { name: "relay request without a live link to the target", open: { kind: "relay", target: "r" }, origin: link("a"), view: { relay: true }, want: "TargetUnreachable" },
      { name: "a second relay hop inside a relayed stream", open: { kind: "relay", target: "c" }, origin: relayed("a"), view: { relay: true }, want: "NoRelayChain" },
      { name: "relayed from a relay-capable peer", open: { kind: "relayed", source: "a" }, origin: link("r"), want: "ok" },
      { name: "relayed from a peer not listed relay-capable", open: { kind: "relayed", source: "a" }, origin: link("c"), want: "NotARelay" },
      { name: "relayed for a source outside the snapshot", open: { kind: "relayed", source: "z" }, origin: link("r"), want: "NotInSnapshot" },
      { name: "relayed claiming this node as source", open: { kind: "relayed", source: "b" }, origin: link("r"), want: "SameNode" },
      { name: "relayed inside a relayed stream", open: { kind: "relayed", source: "a" }, origin: relayed("c"), want: "NoRelayChain" },
    ];
    for (const c of cases) {
      it(c.name, () => {
        const d = decideStream(c.open, c.origin, view(c.view), live);
        assert.equal(d.ok ? "ok" : d.reason, c.want, d.ok ? "" : d.message);
      });
    }
  });

  describe("forward requests on the control socket", () => {
    it("accepts a node, a port and an IP literal to listen on", () => {
      assert.deepEqual(parseForwardRequest({ op: "forward", node: "b", port: 7000, listen: { host: "127.0.0.1", port: 0 } }), { node: "b", port: 7000, listen: { host: "127.0.0.1", port: 0 } });
      assert.deepEqual(parseForwardRequest({ op: "forward", node: "b", port: 1, listen: { host: "::1", port: 65535 } }).listen, { host: "::1", port: 65535 });
    });
    const bad: Array<Record<string, unknown>> = [
      {},
      { node: "b", port: 7000 },
      { node: "", port: 7000, listen: { host: "127.0.0.1", port: 0 } },
      { node: "x".repeat(254), port: 7000, listen: { host: "127.0.0.1", port: 0 } },
      { node: ["b"], port: 7000, listen: { host: "127.0.0.1", port: 0 } },
      { node: "b", port: 0, listen: { host: "127.0.0.1", port: 0 } },
      { node: "b", port: "7000", listen: { host: "127.0.0.1", port: 0 } },
      { node: "b", port: 7000, listen: { host: "localhost", port: 0 } },
      { node: "b", port: 7000, listen: { host: "127.0.0.1", port: -1 } },
      { node: "b", port: 7000, listen: { host: "127.0.0.1", port: 1.5 } },
      { node: "b", port: 7000, listen: null },
      { node: "b", port: 7000, listen: "127.0.0.1:0" },
    ];
    for (const req of bad) it(`refuses ${JSON.stringify(req).slice(0, 90)}`, () => assert.throws(() => parseForwardRequest(req), /expected|listen must be/));
  });

  describe("relay advertisements", () => {
    it("advertise live links without the recipient, sorted and bounded", () => {
      assert.deepEqual(advertisementFor(["c", "a", "b", "a"], "b"), { reaches: ["a", "c"] });
      assert.equal(advertisementFor(Array.from({ length: 400 }, (_, i) => `n${i}`), "x").reaches.length, MAX_REACHES);
    });

    it("are kept only from relays, expire after the TTL, and go with the relay", () => {
      const t = new RelayTable("c1");
      assert.equal(t.accept("a", { reaches: ["b"] }, false, 0), false);
      assert.equal(t.accept("r1", { reaches: ["b", "b", "c"] }, true, 0), true);
      assert.equal(t.accept("r2", { reaches: ["b"] }, true, 10), true);
      assert.deepEqual(t.current(ADVERT_TTL_MS), [{ relay: "r1", cluster: "c1", reaches: ["b", "c"] }, { relay: "r2", cluster: "c1", reaches: ["b"] }]);
      assert.deepEqual(t.current(ADVERT_TTL_MS + 5).map((a) => a.relay), ["r2"]);
      t.drop("r2");
      assert.deepEqual(t.current(0).map((a) => a.relay), ["r1"]);
      t.accept("r2", { reaches: ["b"] }, true, 0);
      t.retain((r) => r === "r2");
      assert.deepEqual(t.current(0).map((a) => a.relay), ["r2"]);
    });

    it("refuses malformed and oversized payloads without changing what it holds", () => {
      const t = new RelayTable("c1");
      t.accept("r", { reaches: ["b"] }, true, 0);
      for (const p of [null, [], { reaches: "b" }, { reaches: [1] }, { reaches: [""] }, { reaches: ["x".repeat(254)] }, { reaches: Array.from({ length: MAX_REACHES + 1 }, (_, i) => `n${i}`) }]) {
        assert.equal(t.accept("r", p, true, 1), false, JSON.stringify(p).slice(0, 80));
      }
      assert.deepEqual(t.current(1), [{ relay: "r", cluster: "c1", reaches: ["b"] }]);
    });
  });
});
