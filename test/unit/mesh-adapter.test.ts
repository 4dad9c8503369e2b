/**
 * The mesh loop's pure mappings (agent/mesh/adapter.ts): snapshot candidates
 * and settings onto the peer manager's shapes, the link table onto
 * observations, endpoints, advertised endpoints and the load measure.
 */
import assert from "node:assert/strict";
import { advertisedEndpoints, boundsOf, candidateOf, loadMeasure, observationsOf, parseEndpoint, type PeerRecord } from "../../agent/mesh/adapter.js";
import type { LinkInfo } from "../../agent/mesh/transport/peer-links.js";
import type { SnapshotMeshPeer } from "../../lib/snapshot/format.js";

const peer = (over: Partial<SnapshotMeshPeer> = {}): SnapshotMeshPeer => ({
  node: "c.b",
  endpoints: ["10.0.0.2:4433"],
  serverName: "b.c.fabric.internal",
  certificateFingerprint: `sha256:${"00".repeat(32)}`,
  nodeClass: "relay",
  roles: ["relay-node"],
  ...over,
});

const link = (node: string, over: Partial<LinkInfo> = {}): LinkInfo => ({
  node,
  direction: "outbound",
  remote: { host: "127.0.0.1", port: 1 },
  since: new Date(1000),
  certificateNotAfter: new Date(10_000_000),
  probes: { rttMs: 2, jitterMs: 0.5, loss: 0.1, sent: 10, answered: 9, lost: 1, lastRttMs: 2 },
  ...over,
});

describe("mesh adapter", () => {
  it("maps a snapshot candidate with the snapshot's cluster; absent reachability counts as reachable, absent relay capability as none", () => {
    assert.deepEqual(candidateOf(peer({ region: "eu", zone: "eu-1" }), "c"), {
      node: "c.b", cluster: "c", nodeClass: "relay", endpoints: ["10.0.0.2:4433"], region: "eu", zone: "eu-1", roles: ["relay-node"], relayCapable: false, directlyReachable: true,
    });
    const c = candidateOf(peer({ relayCapable: true, directlyReachable: false }), "c");
    assert.equal(c.relayCapable, true);
    assert.equal(c.directlyReachable, false);
    assert.equal("region" in c, false);
  });

  it("takes min and max from the snapshot's activePeers and the warm count from the class defaults, clamping min to max", () => {
    assert.deepEqual(boundsOf({ nodeClass: "standard", activePeers: { min: 1, max: 3 }, hysteresisPercent: 25 }), { min: 1, max: 3, warm: 3 });
    assert.deepEqual(boundsOf({ nodeClass: "thin", activePeers: { min: 5, max: 2 }, hysteresisPercent: 25 }), { min: 2, max: 2, warm: 2 });
    assert.deepEqual(boundsOf({ nodeClass: "core", activePeers: { min: -1, max: 20 }, hysteresisPercent: 25 }), { min: 0, max: 20, warm: 4 });
  });

  for (const [input, want] of [
    ["10.0.0.1:4433", { host: "10.0.0.1", port: 4433 }],
    ["[fd00::1]:4433", { host: "fd00::1", port: 4433 }],
    ["10.0.0.1:0", undefined],
    ["10.0.0.1:70000", undefined],
    ["fd00::1:4433", undefined],
    ["10.0.0.1", undefined],
  ] as const) {
    it(`parses endpoint ${input} as ${JSON.stringify(want)}`, () => assert.deepEqual(parseEndpoint(input), want));
  }

  it("reports links as active (failures 0, heard at the later of link start and last answer), dials in flight as connecting, failed dials as failed", () => {
    const records = new Map<string, PeerRecord>([
      ["c.a", { failures: 2, sinceMs: 5, lastHeardMs: 5000 }],
      ["c.d", { failures: 1, diallingSinceMs: 7000, sinceMs: 6000, lastFailureMs: 6000 }],
      ["c.e", { failures: 3, sinceMs: 8000, lastFailureMs: 8000 }],
      ["c.f", { failures: 0, sinceMs: 1 }],
    ]);
    assert.deepEqual(observationsOf([link("c.a"), link("c.b", { probes: { rttMs: undefined, jitterMs: 0, loss: 0, sent: 1, answered: 0, lost: 0, lastRttMs: undefined } })], records), [
      { node: "c.a", state: "active", rttEwmaMs: 2, jitterMs: 0.5, loss: 0.1, lastHeardMs: 5000, failures: 0, sinceMs: 1000 },
      { node: "c.b", state: "active", jitterMs: 0, loss: 0, lastHeardMs: 1000, failures: 0, sinceMs: 1000 },
      { node: "c.d", state: "connecting", failures: 1, lastFailureMs: 6000, sinceMs: 7000 },
      { node: "c.e", state: "failed", failures: 3, lastFailureMs: 8000, sinceMs: 8000 },
    ]);
  });

  it("advertises the flag's endpoints (port 0 = bound port), else loopback with the bound port when the agent API is on loopback, else none", () => {
    assert.deepEqual(advertisedEndpoints(["192.0.2.1:0", "[2001:db8::1]:5000"], "https://cp.example:8443", 4433), [
      { address: "192.0.2.1", port: 4433 },
      { address: "2001:db8::1", port: 5000 },
    ]);
    assert.deepEqual(advertisedEndpoints([], "https://127.0.0.1:8443", 40000), [{ address: "127.0.0.1", port: 40000 }]);
    assert.deepEqual(advertisedEndpoints([], "https://[::1]:8443", 40000), [{ address: "127.0.0.1", port: 40000 }]);
    assert.deepEqual(advertisedEndpoints([], "https://cp.example:8443", 40000), []);
    assert.throws(() => advertisedEndpoints(["nope"], "https://127.0.0.1", 1), /not host:port/);
  });

  it("measures load as loadavg per core clipped to 0..1", () => {
    assert.equal(loadMeasure(2, 4), 0.5);
    assert.equal(loadMeasure(9, 4), 1);
    assert.equal(loadMeasure(-1, 4), 0);
    assert.equal(loadMeasure(1, 0), 0.5);
  });
});
