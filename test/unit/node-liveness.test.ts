/**
 * The FabricNode controller's heartbeat decisions (controllers/fabricnode/
 * liveness.ts, plan.ts): Ready and health from heartbeat age, and when the
 * status (lastHeartbeatTime included) is rewritten.
 */
import assert from "node:assert/strict";
import type { FabricNodeStatus } from "../../lib/api/types.generated.js";
import type { HeartbeatRow } from "../../lib/state/heartbeats.js";
import type { IdentityRow, NodeRow } from "../../lib/state/index.js";
import { visibleKey } from "../../controllers/fabricnode/heartbeat-monitor.js";
import { publishBucket, type LivenessSettings } from "../../controllers/fabricnode/liveness.js";
import { desiredNodeStatus } from "../../controllers/fabricnode/plan.js";

const settings: LivenessSettings = { gracePeriodMs: 40_000, publishIntervalMs: 300_000, startupGracePeriodMs: 300_000 };
const t0 = new Date("2030-01-01T00:00:00Z");
const at = (ms: number) => new Date(t0.getTime() + ms);
const row: NodeRow = { name: "c.n", cluster: "c", nodeName: "n", hostFingerprint: "sha256:x", membership: "Active", joinRequest: null, capabilities: ["enrolled"], facts: {}, nodeGroup: null };
const identity: IdentityRow = { serial: "ab", node: "c.n", cluster: "c", publicKeyFingerprint: "sha256:y", notBefore: at(-1000), notAfter: at(86_400_000), status: "active", issuedAt: at(-1000) };
const heartbeat = (receivedMs: number, over: Partial<HeartbeatRow> = {}): HeartbeatRow => ({
  node: "c.n", cluster: "c", receivedAt: at(receivedMs), seq: receivedMs, agentVersion: "0.1.0", capabilities: ["can_route_mesh"], facts: { os: "linux" },
  health: "Healthy", healthMessage: "", snapshotSerial: 3, snapshotHash: "a".repeat(64), snapshotAppliedAt: at(0), ...over,
});
const plan = (current: FabricNodeStatus | undefined, hb: HeartbeatRow | undefined, nowMs: number) => desiredNodeStatus(current, 1, row, identity, "Active", at(nowMs), { heartbeat: hb, settings });
const readyOf = (s: FabricNodeStatus) => s.conditions?.find((c) => c.type === "Ready");

describe("FabricNode liveness from heartbeats", () => {
  it("a node that never sent a heartbeat is judged by its identity alone within the startup grace period", () => {
    const s = plan(undefined, undefined, 0);
    assert.equal(readyOf(s)?.status, "True");
    assert.equal(s.health, undefined);
    assert.deepEqual(s.capabilities, ["enrolled"]);
  });

  it("a fresh heartbeat publishes capabilities, facts, version, health and the held snapshot", () => {
    const s = plan(undefined, heartbeat(0), 1000);
    assert.equal(readyOf(s)?.status, "True");
    assert.equal(s.health, "Healthy");
    assert.deepEqual(s.capabilities, ["can_route_mesh"]);
    assert.equal(s.agentVersion, "0.1.0");
    assert.equal(s.snapshot?.serial, 3);
    assert.equal(s.lastHeartbeatTime, "2030-01-01T00:00:00Z");
  });

  it("a heartbeat older than the grace period makes Ready Unknown (NodeStatusUnknown) and health Unknown", () => {
    const s = plan(undefined, heartbeat(0), 40_001);
    assert.equal(readyOf(s)?.status, "Unknown");
    assert.equal(readyOf(s)?.reason, "NodeStatusUnknown");
    assert.equal(s.health, "Unknown");
  });

  it("a heartbeat that changes nothing visible leaves the status as it was, lastHeartbeatTime included", () => {
    const first = plan(undefined, heartbeat(0), 100);
    const again = plan(first, heartbeat(10_000), 10_100);
    assert.deepEqual(again, first);
  });

  it("lastHeartbeatTime moves with any other change, and alone once its publication bucket changes", () => {
    const first = plan(undefined, heartbeat(0), 100);
    const degraded = plan(first, heartbeat(10_000, { health: "Degraded" }), 10_100);
    assert.equal(degraded.lastHeartbeatTime, "2030-01-01T00:00:10Z");
    // Find the first heartbeat time in a later bucket: at most one interval away.
    let ms = 10_000;
    while (publishBucket("c.n", at(ms), settings.publishIntervalMs) === publishBucket("c.n", at(0), settings.publishIntervalMs)) ms += 10_000;
    assert.ok(ms <= settings.publishIntervalMs + 10_000);
    const before = plan(first, heartbeat(ms - 10_000), ms - 9_900);
    assert.equal(before.lastHeartbeatTime, first.lastHeartbeatTime);
    const moved = plan(first, heartbeat(ms), ms + 100);
    assert.notEqual(moved.lastHeartbeatTime, first.lastHeartbeatTime);
  });

  it("the monitor's key changes with content and liveness, not with each heartbeat", () => {
    const r = { node: "c.n", receivedAt: at(0), seq: 1, health: "Healthy" as const, agentVersion: "0.1.0", snapshotSerial: 3, visible: "d1" };
    const k = visibleKey(r, at(1000), settings);
    assert.equal(visibleKey({ ...r, seq: 2 }, at(2000), settings), k);
    assert.notEqual(visibleKey({ ...r, visible: "d2" }, at(1000), settings), k);
    assert.notEqual(visibleKey({ ...r, snapshotSerial: 4 }, at(1000), settings), k);
    assert.notEqual(visibleKey(r, at(40_001), settings), k);
  });
});
