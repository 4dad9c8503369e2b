/**
 * The FabricNode controller's status decision (controllers/fabricnode/
 * plan.ts): Ready from the enrollment record and identity first, then
 * heartbeats; the identity block; capabilities and facts. Heartbeat
 * publication timing is covered in node-liveness.test.ts; here the table is
 * the order of the Ready checks and what each one publishes. The reconciler
 * records a change of `health` in the audit log before writing the status.
 */
import assert from "node:assert/strict";
import type { FabricNodeStatus } from "../../lib/api/types.generated.js";
import type { HeartbeatRow } from "../../lib/state/heartbeats.js";
import type { IdentityRow, NodeRow } from "../../lib/state/index.js";
import { LivenessReasons, type LivenessSettings } from "../../controllers/fabricnode/liveness.js";
import { NodeReasons, desiredNodeStatus } from "../../controllers/fabricnode/plan.js";
import type { Condition } from "../../controllers/runtime/conditions.js";
import { PlanClock, T0, at, conditionOf, deterministic, frozen, heartbeatRow, identityRow, nodeRow, publishedCondition } from "../support/plan-fixtures.js";

const settings: LivenessSettings = frozen({ gracePeriodMs: 40_000, publishIntervalMs: 300_000, startupGracePeriodMs: 300_000 });
const DAY = 86_400_000;
type Membership = NodeRow["membership"];

describe("FabricNode plan", () => {
  describe("desiredNodeStatus: Ready", () => {
    const ready = (status: Condition["status"], reason: string, message: string) => ({ type: "Ready", status, reason, message, observedGeneration: 4 });
    const cases: Array<{
      name: string;
      row: NodeRow | undefined;
      identity: IdentityRow | undefined;
      spec?: Membership;
      heartbeat?: HeartbeatRow;
      nowMs?: number;
      want: ReturnType<typeof ready>;
    }> = [
      {
        name: "a FabricNode without an enrollment record is NoIdentity (nodes join only through a JoinRequest)",
        row: undefined,
        identity: undefined,
        want: ready("False", NodeReasons.NoIdentity, "no enrollment record: nodes join only through an approved JoinRequest"),
      },
      {
        name: "a FabricNode without a record is NoIdentity even with an identity and heartbeats at hand",
        row: undefined,
        identity: identityRow(),
        heartbeat: heartbeatRow(0),
        want: ready("False", "NoIdentity", "no enrollment record: nodes join only through an approved JoinRequest"),
      },
      {
        name: "a node revoked through its spec is Revoked",
        row: nodeRow({ membership: "Revoked" }),
        identity: undefined,
        spec: "Revoked",
        want: ready("False", NodeReasons.Revoked, "identity revoked; the agent API refuses this node's certificates"),
      },
      {
        name: "a revoked node set back to Active is RevokedIsFinal",
        row: nodeRow({ membership: "Revoked" }),
        identity: identityRow(),
        spec: "Active",
        want: ready("False", NodeReasons.RevokedIsFinal, "revocation is final; enroll the host again for a new identity"),
      },
      {
        name: "a revoked node set to Disabled is RevokedIsFinal",
        row: nodeRow({ membership: "Revoked" }),
        identity: undefined,
        spec: "Disabled",
        want: ready("False", "RevokedIsFinal", "revocation is final; enroll the host again for a new identity"),
      },
      {
        name: "a revoked node with fresh heartbeats is still Revoked (heartbeats are ignored)",
        row: nodeRow({ membership: "Revoked" }),
        identity: undefined,
        spec: "Revoked",
        heartbeat: heartbeatRow(0),
        want: ready("False", "Revoked", "identity revoked; the agent API refuses this node's certificates"),
      },
      {
        name: "an enrolled node without an active certificate is NoIdentity",
        row: nodeRow(),
        identity: undefined,
        want: ready("False", "NoIdentity", "no active certificate"),
      },
      {
        name: "a certificate at exactly its notAfter is CertificateExpired",
        row: nodeRow(),
        identity: identityRow({ notAfter: T0 }),
        want: ready("False", NodeReasons.CertificateExpired, "certificate expired at 2030-01-01T00:00:00.000Z without renewal"),
      },
      {
        name: "a certificate one millisecond before its notAfter is still valid",
        row: nodeRow(),
        identity: identityRow({ notAfter: at(1) }),
        want: ready("True", "Active", "active; certificate valid until 2030-01-01T00:00:00.001Z"),
      },
      {
        name: "an expired certificate is reported before a Disabled membership",
        row: nodeRow({ membership: "Disabled" }),
        identity: identityRow({ notAfter: at(-1) }),
        spec: "Disabled",
        want: ready("False", "CertificateExpired", "certificate expired at 2029-12-31T23:59:59.999Z without renewal"),
      },
      {
        name: "a Disabled node with a valid certificate is Disabled",
        row: nodeRow({ membership: "Disabled" }),
        identity: identityRow(),
        spec: "Disabled",
        want: ready("False", NodeReasons.Disabled, "membership disabled: identity kept, no work assigned"),
      },
      {
        name: "a Disabled node whose heartbeats stopped is Disabled, not Unknown",
        row: nodeRow({ membership: "Disabled" }),
        identity: identityRow(),
        spec: "Disabled",
        heartbeat: heartbeatRow(-DAY / 2),
        want: ready("False", "Disabled", "membership disabled: identity kept, no work assigned"),
      },
      {
        name: "an Active node that never sent a heartbeat is judged by its identity alone",
        row: nodeRow(),
        identity: identityRow(),
        want: ready("True", NodeReasons.Active, "active; certificate valid until 2030-01-02T00:00:00.000Z"),
      },
      {
        name: "an Active node whose last heartbeat is exactly the grace period old is Active",
        row: nodeRow(),
        identity: identityRow(),
        heartbeat: heartbeatRow(-40_000),
        want: ready("True", "Active", "active; certificate valid until 2030-01-02T00:00:00.000Z"),
      },
      {
        name: "an Active node silent one millisecond past the grace period is Unknown (NodeStatusUnknown)",
        row: nodeRow(),
        identity: identityRow(),
        heartbeat: heartbeatRow(-40_001),
        want: ready("Unknown", LivenessReasons.NodeStatusUnknown, "no heartbeat for more than 40s (last at 2029-12-31T23:59:19Z)"),
      },
      {
        name: "an Active node whose agent reports Degraded is still Ready (health says Degraded)",
        row: nodeRow(),
        identity: identityRow(),
        heartbeat: heartbeatRow(0, { health: "Degraded" }),
        want: ready("True", "Active", "active; certificate valid until 2030-01-02T00:00:00.000Z"),
      },
      {
        name: "a node whose certificate expired and whose heartbeats stopped is CertificateExpired, not Unknown",
        row: nodeRow(),
        identity: identityRow({ notAfter: at(-1000) }),
        heartbeat: heartbeatRow(-DAY),
        want: ready("False", "CertificateExpired", "certificate expired at 2029-12-31T23:59:59.000Z without renewal"),
      },
    ];
    for (const c of cases) {
      it(c.name, () => {
        const s = deterministic(
          desiredNodeStatus,
          undefined,
          4,
          frozen(c.row),
          frozen(c.identity),
          c.spec ?? "Active",
          at(c.nowMs ?? 0),
          frozen({ heartbeat: c.heartbeat, settings }),
        );
        assert.deepEqual(conditionOf(s, "Ready"), publishedCondition(c.want, T0));
      });
    }
  });

  describe("desiredNodeStatus: identity, capabilities and facts", () => {
    it("an Active node publishes its identity (second precision) and the record's capabilities and facts", () => {
      const s = deterministic(desiredNodeStatus, undefined, 4, frozen(nodeRow()), frozen(identityRow({ notBefore: new Date("2029-12-31T23:00:00.750Z") })), "Active", T0, undefined);
      assert.deepEqual(s, {
        observedGeneration: 4,
        identity: { certificateSerial: "0a1b2c", notBefore: "2029-12-31T23:00:00Z", notAfter: "2030-01-02T00:00:00Z", publicKeyFingerprint: `sha256:${"d".repeat(64)}` },
        capabilities: ["can_route_mesh"],
        facts: { os: "linux" },
        conditions: [publishedCondition({ type: "Ready", status: "True", reason: "Active", message: "active; certificate valid until 2030-01-02T00:00:00.000Z", observedGeneration: 4 }, T0)],
      });
    });

    it("an expired certificate is still published as the node's identity", () => {
      const s = desiredNodeStatus(undefined, 4, nodeRow(), identityRow({ notAfter: at(-1000) }), "Active", T0);
      assert.equal(s.identity?.notAfter, "2029-12-31T23:59:59Z");
    });

    const cases: Array<{ name: string; row: NodeRow | undefined; identity: IdentityRow | undefined; spec: Membership }> = [
      { name: "a revoked node loses its published identity", row: nodeRow({ membership: "Revoked" }), identity: identityRow(), spec: "Revoked" },
      { name: "a node without an active certificate loses its published identity", row: nodeRow(), identity: undefined, spec: "Active" },
      { name: "a FabricNode without a record loses its published identity", row: undefined, identity: undefined, spec: "Active" },
    ];
    for (const c of cases) {
      it(c.name, () => {
        const current: FabricNodeStatus = frozen({ identity: { certificateSerial: "ff", notAfter: "2030-01-02T00:00:00Z" } });
        const s = deterministic(desiredNodeStatus, current, 4, frozen(c.row), frozen(c.identity), c.spec, T0, undefined);
        assert.equal("identity" in s, false);
      });
    }

    it("a FabricNode without a record keeps capabilities and facts it had (nothing to replace them with)", () => {
      const current: FabricNodeStatus = frozen({ capabilities: ["x"], facts: { os: "bsd" } });
      const s = desiredNodeStatus(current, 4, undefined, undefined, "Active", T0);
      assert.deepEqual(s.capabilities, ["x"]);
      assert.deepEqual(s.facts, { os: "bsd" });
    });

    it("the record's capabilities and facts replace published ones when there is no heartbeat", () => {
      const current: FabricNodeStatus = frozen({ capabilities: ["x"], facts: { os: "bsd" } });
      const s = desiredNodeStatus(current, 4, nodeRow(), identityRow(), "Active", T0);
      assert.deepEqual(s.capabilities, ["can_route_mesh"]);
      assert.deepEqual(s.facts, { os: "linux" });
    });

    it("a live heartbeat's capabilities, facts, version and health win over the record's", () => {
      const s = desiredNodeStatus(undefined, 4, nodeRow(), identityRow(), "Active", T0, { heartbeat: heartbeatRow(-1000), settings });
      assert.deepEqual(s.capabilities, ["can_route_mesh", "can_accept_node_ingress"]);
      assert.deepEqual(s.facts, { os: "linux", hostname: "web-1" });
      assert.equal(s.agentVersion, "0.1.0");
      assert.equal(s.health, "Healthy");
      assert.equal(s.lastHeartbeatTime, "2029-12-31T23:59:59Z");
    });

    it("a silent node's health is Unknown", () => {
      const s = desiredNodeStatus(undefined, 4, nodeRow(), identityRow(), "Active", T0, { heartbeat: heartbeatRow(-60_000), settings });
      assert.equal(s.health, "Unknown");
    });

    it("a revoked node publishes no heartbeat fields, whatever the heartbeat table holds", () => {
      const s = desiredNodeStatus(undefined, 4, nodeRow({ membership: "Revoked" }), undefined, "Revoked", T0, { heartbeat: heartbeatRow(0), settings });
      assert.equal(s.health, undefined);
      assert.equal(s.lastHeartbeatTime, undefined);
      assert.equal(s.agentVersion, undefined);
    });

    it("without liveness settings a heartbeat is not consulted", () => {
      const s = desiredNodeStatus(undefined, 4, nodeRow(), identityRow(), "Active", T0, undefined);
      assert.equal(s.health, undefined);
    });

    it("fields owned by other controllers (assignedRoles, workloads) and other conditions are carried over", () => {
      const other = { type: "WorkloadsReady", status: "True" as const, reason: "AllReady", message: "", lastTransitionTime: "2029-01-01T00:00:00Z" };
      const current: FabricNodeStatus = frozen({ assignedRoles: ["entry-node"], workloads: [{ name: "web", state: "Running" }], conditions: [other] });
      const s = desiredNodeStatus(current, 4, nodeRow(), identityRow(), "Active", T0);
      assert.deepEqual(s.assignedRoles, ["entry-node"]);
      assert.deepEqual(s.workloads, [{ name: "web", state: "Running" }]);
      assert.deepEqual(s.conditions?.[0], other);
    });

    it("Ready keeps lastTransitionTime while its status holds, and moves when heartbeats stop", async () => {
      const clock = new PlanClock();
      const hb = frozen(heartbeatRow(0));
      const first = desiredNodeStatus(undefined, 4, nodeRow(), identityRow(), "Active", clock.date(), { heartbeat: hb, settings });
      await clock.advance(30_000);
      const still = desiredNodeStatus(frozen(first), 4, nodeRow(), identityRow(), "Active", clock.date(), { heartbeat: hb, settings });
      assert.deepEqual(still, first);
      await clock.advance(30_000);
      const silent = desiredNodeStatus(frozen(still), 4, nodeRow(), identityRow(), "Active", clock.date(), { heartbeat: hb, settings });
      assert.equal(conditionOf(silent, "Ready").status, "Unknown");
      assert.equal(conditionOf(silent, "Ready").lastTransitionTime, "2030-01-01T00:01:00Z");
    });

    it("a revoked node drops the health it last published (its heartbeats are refused from now on)", () => {
      const current = frozen({ health: "Healthy" as const, lastHeartbeatTime: "2029-12-31T23:59:00Z" });
      const s = desiredNodeStatus(current, 4, nodeRow({ membership: "Revoked" }), undefined, "Revoked", T0, { heartbeat: heartbeatRow(-1000), settings });
      assert.equal(s.health, undefined);
      assert.equal(conditionOf(s, "Ready").reason, NodeReasons.Revoked);
    });

    describe("a node that never heartbeated", () => {
      // identityRow() was issued at T0 - 60 s; the startup grace is 300 s, so it runs out at T0 + 240 s.
      const readyAt = (nowMs: number, extra: { heartbeatsTracked?: boolean; startupGracePeriodMs?: number } = {}) =>
        conditionOf(
          deterministic(desiredNodeStatus, undefined, 4, frozen(nodeRow()), frozen(identityRow()), "Active", at(nowMs), frozen({
            heartbeat: undefined,
            settings: { ...settings, ...(extra.startupGracePeriodMs === undefined ? {} : { startupGracePeriodMs: extra.startupGracePeriodMs }) },
            ...(extra.heartbeatsTracked === undefined ? {} : { heartbeatsTracked: extra.heartbeatsTracked }),
          })),
          "Ready",
        );
      it("is Ready on its identity alone within the startup grace period", () => {
        assert.equal(readyAt(240_000).status, "True");
        assert.equal(readyAt(240_000).reason, NodeReasons.Active);
      });
      it("goes Ready=Unknown NodeStatusNeverUpdated once the startup grace period after its certificate's issue has passed", () => {
        const c = readyAt(240_001);
        assert.equal(c.status, "Unknown");
        assert.equal(c.reason, LivenessReasons.NodeStatusNeverUpdated);
        assert.equal(c.message, "the agent has sent no heartbeat since the certificate was issued at 2029-12-31T23:59:00Z (startup grace 300s)");
      });
      it("stays Ready when heartbeats are not tracked (no heartbeat store) or the startup grace is disabled (0)", () => {
        assert.equal(readyAt(DAY / 2, { heartbeatsTracked: false }).status, "True");
        assert.equal(readyAt(DAY / 2, { startupGracePeriodMs: 0 }).status, "True");
      });
      it("a disabled node stays Disabled, not Unknown", () => {
        const s = desiredNodeStatus(undefined, 4, nodeRow({ membership: "Disabled" }), identityRow(), "Disabled", at(DAY / 2), { heartbeat: undefined, settings });
        assert.equal(conditionOf(s, "Ready").reason, NodeReasons.Disabled);
      });
    });

    it("the grace period in the Unknown message is rounded to whole seconds", () => {
      const s = desiredNodeStatus(undefined, 4, nodeRow(), identityRow(), "Active", T0, { heartbeat: heartbeatRow(-90_000), settings: { gracePeriodMs: 42_600, publishIntervalMs: 300_000, startupGracePeriodMs: 300_000 } });
      assert.match(conditionOf(s, "Ready").message, /^no heartbeat for more than 43s /);
    });
  });

  it("every reason constant is produced by a case above", () => {
    assert.deepEqual(Object.values(NodeReasons).sort(), ["Active", "CertificateExpired", "Disabled", "NoIdentity", "Revoked", "RevokedIsFinal"]);
    assert.deepEqual(Object.values(LivenessReasons), ["NodeStatusUnknown", "NodeStatusNeverUpdated"]);
  });
});
