/**
 * The JoinRequest controller's pure decisions
 * (controllers/joinrequest/plan.ts): what to do with a request (the
 * reconciler denies, or issues a certificate and creates FabricNode
 * fabricNodeName(cluster, nodeName) on approve), and the status it
 * publishes (CapabilitiesSufficient before anyone decides, Ready, Approved).
 */
import assert from "node:assert/strict";
import type { JoinRequestStatus } from "../../lib/api/types.generated.js";
import type { RequestRow } from "../../lib/state/index.js";
import { RequestReasons, changedDecision, desiredRequestStatus, fabricNodeName, planRequest, type RequestAction } from "../../controllers/joinrequest/plan.js";
import { PlanClock, T0, at, conditionOf, deterministic, frozen, publishedCondition, requestRow } from "../support/plan-fixtures.js";

const row = (over: Partial<RequestRow> = {}): RequestRow => frozen(requestRow(over));
const PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const approvedRow = (over: Partial<RequestRow> = {}) =>
  row({ state: "Approved", approvedHow: "Manual", reason: "approved by an operator", fabricNode: "east.web-1", certificatePem: PEM, decidedAt: at(-30_000), ...over });

describe("JoinRequest plan", () => {
  describe("planRequest", () => {
    const cases: Array<{ name: string; row: RequestRow; decision?: string; reason?: string; want: RequestAction }> = [
      { name: "a pending request without a decision waits for an operator", row: row(), want: { kind: "wait" } },
      { name: "an operator's approval approves manually with the default reason", row: row(), decision: "Approved", want: { kind: "approve", how: "Manual", reason: "approved by an operator" } },
      { name: "an operator's approval carries the operator's reason", row: row(), decision: "Approved", reason: "rack 4 rollout", want: { kind: "approve", how: "Manual", reason: "rack 4 rollout" } },
      { name: "an operator's denial denies with the default reason", row: row(), decision: "Denied", want: { kind: "deny", reason: "denied by an operator" } },
      { name: "an operator's denial carries the operator's reason", row: row(), decision: "Denied", reason: "unknown host", want: { kind: "deny", reason: "unknown host" } },
      { name: "an operator's denial wins over an auto-approve token", row: row({ autoApprove: true }), decision: "Denied", want: { kind: "deny", reason: "denied by an operator" } },
      { name: "an operator may approve roles the capabilities do not support (flagged, not blocked)", row: row({ capabilities: [] }), decision: "Approved", want: { kind: "approve", how: "Manual", reason: "approved by an operator" } },
      { name: "an auto-approve token approves a request whose roles are all supported", row: row({ autoApprove: true }), want: { kind: "approve", how: "Auto", reason: "auto-approved by join token tok-1" } },
      { name: "an auto-approve token approves a request for no roles", row: row({ autoApprove: true, requestedRoles: [], capabilities: [] }), want: { kind: "approve", how: "Auto", reason: "auto-approved by join token tok-1" } },
      { name: "an auto-approve token approves a role that needs no capability", row: row({ autoApprove: true, requestedRoles: ["observer"], capabilities: [] }), want: { kind: "approve", how: "Auto", reason: "auto-approved by join token tok-1" } },
      { name: "an auto-approve token never approves a role the capabilities cannot support", row: row({ autoApprove: true, requestedRoles: ["entry-node", "vpn-exit"], capabilities: ["can_accept_client_ingress", "can_run_vpn_exit"] }), want: { kind: "wait" } },
      { name: "an unknown decision value is no decision", row: row(), decision: "Maybe", want: { kind: "wait" } },
      { name: "an approved request is decided: a later spec.decision changes nothing", row: approvedRow(), decision: "Denied", want: { kind: "decided" } },
      { name: "a denied request is decided: it is never auto-approved later", row: row({ state: "Denied", autoApprove: true }), want: { kind: "decided" } },
    ];
    for (const c of cases) {
      it(c.name, () => {
        assert.deepEqual(deterministic(planRequest, c.row, c.decision, c.reason), c.want);
      });
    }
  });

  describe("desiredRequestStatus", () => {
    const sufficient = (generation = 1) => ({
      type: "CapabilitiesSufficient",
      status: "True" as const,
      reason: RequestReasons.CapabilitiesSufficient,
      message: "the reported capabilities support every requested role",
      observedGeneration: generation,
    });
    const awaiting = { type: "Ready", status: "False" as const, reason: RequestReasons.Pending, message: "waiting for an operator to set spec.decision", observedGeneration: 1 };

    const cases: Array<{ name: string; row: RequestRow; extra?: Parameters<typeof desiredRequestStatus>[3]; want: JoinRequestStatus }> = [
      {
        name: "a pending request with sufficient capabilities awaits a decision (AwaitingDecision)",
        row: row(),
        want: { observedGeneration: 1, hostname: "web-1", conditions: [publishedCondition(sufficient(), T0), publishedCondition(awaiting, T0)] },
      },
      {
        name: "a pending request flags unsupported roles (RolesUnsupported), naming the missing capabilities, before anyone decides",
        row: row({ requestedRoles: ["vpn-exit", "entry-node", "relay-node"], capabilities: ["can_run_vpn_exit", "can_route_mesh"] }),
        want: {
          observedGeneration: 1,
          unsupportedRoles: ["entry-node", "relay-node", "vpn-exit"],
          hostname: "web-1",
          conditions: [
            publishedCondition(
              {
                type: "CapabilitiesSufficient",
                status: "False",
                reason: RequestReasons.RolesUnsupported,
                message: "vpn-exit needs can_egress_internet; entry-node needs can_accept_client_ingress; relay-node needs can_accept_node_ingress",
                observedGeneration: 1,
              },
              T0,
            ),
            publishedCondition(awaiting, T0),
          ],
        },
      },
      {
        name: "a pending request whose node name is taken says NodeExists",
        row: row(),
        extra: { nodeExists: "east.web-1" },
        want: {
          observedGeneration: 1,
          hostname: "web-1",
          conditions: [
            publishedCondition(sufficient(), T0),
            publishedCondition({ type: "Ready", status: "False", reason: RequestReasons.NodeExists, message: "node east.web-1 already exists in the cluster; delete it or enroll under another name", observedGeneration: 1 }, T0),
          ],
        },
      },
      {
        name: "a manually approved request publishes the certificate, its serial and expiry, the node and Ready True (CertificateIssued)",
        row: approvedRow(),
        extra: { certificateSerial: "0a1b2c", certificateNotAfter: new Date("2030-01-02T00:00:00.500Z") },
        want: {
          observedGeneration: 1,
          hostname: "web-1",
          certificate: PEM,
          certificateSerial: "0a1b2c",
          certificateNotAfter: "2030-01-02T00:00:00Z",
          nodeRef: { name: "east.web-1" },
          decisionTime: "2029-12-31T23:59:30Z",
          conditions: [
            publishedCondition(sufficient(), T0),
            publishedCondition({ type: "Ready", status: "True", reason: RequestReasons.CertificateIssued, message: "certificate issued; node east.web-1 created", observedGeneration: 1 }, T0),
            publishedCondition({ type: "Approved", status: "True", reason: RequestReasons.Approved, message: "approved by an operator", observedGeneration: 1 }, T0),
          ],
        },
      },
      {
        name: "an auto-approved request has Approved True with reason AutoApproved",
        row: approvedRow({ approvedHow: "Auto", reason: "auto-approved by join token tok-1" }),
        want: {
          observedGeneration: 1,
          hostname: "web-1",
          certificate: PEM,
          nodeRef: { name: "east.web-1" },
          decisionTime: "2029-12-31T23:59:30Z",
          conditions: [
            publishedCondition(sufficient(), T0),
            publishedCondition({ type: "Ready", status: "True", reason: "CertificateIssued", message: "certificate issued; node east.web-1 created", observedGeneration: 1 }, T0),
            publishedCondition({ type: "Approved", status: "True", reason: RequestReasons.AutoApproved, message: "auto-approved by join token tok-1", observedGeneration: 1 }, T0),
          ],
        },
      },
      {
        name: "an operator's approval whose reason starts with auto-approved is still Approved, not AutoApproved",
        row: approvedRow({ approvedHow: "Manual", reason: "auto-approved in spirit: known host" }),
        want: {
          observedGeneration: 1,
          hostname: "web-1",
          certificate: PEM,
          nodeRef: { name: "east.web-1" },
          decisionTime: "2029-12-31T23:59:30Z",
          conditions: [
            publishedCondition(sufficient(), T0),
            publishedCondition({ type: "Ready", status: "True", reason: "CertificateIssued", message: "certificate issued; node east.web-1 created", observedGeneration: 1 }, T0),
            publishedCondition({ type: "Approved", status: "True", reason: RequestReasons.Approved, message: "auto-approved in spirit: known host", observedGeneration: 1 }, T0),
          ],
        },
      },
      {
        name: "a denied request is Ready False and Approved False, both with reason Denied and the operator's reason",
        row: row({ state: "Denied", reason: "unknown host", decidedAt: at(-1000) }),
        extra: { nodeExists: "east.web-1" },
        want: {
          observedGeneration: 1,
          hostname: "web-1",
          decisionTime: "2029-12-31T23:59:59Z",
          conditions: [
            publishedCondition(sufficient(), T0),
            publishedCondition({ type: "Ready", status: "False", reason: RequestReasons.Denied, message: "unknown host", observedGeneration: 1 }, T0),
            publishedCondition({ type: "Approved", status: "False", reason: "Denied", message: "unknown host", observedGeneration: 1 }, T0),
          ],
        },
      },
      {
        name: "a denied request without a recorded reason says denied",
        row: row({ state: "Denied", reason: null }),
        want: {
          observedGeneration: 1,
          hostname: "web-1",
          conditions: [
            publishedCondition(sufficient(), T0),
            publishedCondition({ type: "Ready", status: "False", reason: "Denied", message: "denied", observedGeneration: 1 }, T0),
            publishedCondition({ type: "Approved", status: "False", reason: "Denied", message: "", observedGeneration: 1 }, T0),
          ],
        },
      },
      {
        name: "an approved request whose certificate is not stored yet publishes no certificate fields and no nodeRef",
        row: approvedRow({ certificatePem: null, fabricNode: null, decidedAt: null }),
        extra: { certificateSerial: "0a1b2c" },
        want: {
          observedGeneration: 1,
          hostname: "web-1",
          conditions: [
            publishedCondition(sufficient(), T0),
            publishedCondition({ type: "Ready", status: "True", reason: "CertificateIssued", message: "certificate issued; node  created", observedGeneration: 1 }, T0),
            publishedCondition({ type: "Approved", status: "True", reason: "Approved", message: "approved by an operator", observedGeneration: 1 }, T0),
          ],
        },
      },
    ];
    for (const c of cases) {
      it(c.name, () => {
        assert.deepEqual(deterministic(desiredRequestStatus, undefined, 1, c.row, frozen(c.extra ?? {}), T0), c.want);
      });
    }

    const hostnames: Array<{ name: string; facts: Record<string, unknown>; want: string | undefined }> = [
      { name: "a 253-character hostname is published", facts: { hostname: "h".repeat(253) }, want: "h".repeat(253) },
      { name: "a 254-character hostname is not published (the schema allows 253)", facts: { hostname: "h".repeat(254) }, want: undefined },
      { name: "a non-string hostname fact is not published", facts: { hostname: 42 }, want: undefined },
      { name: "a missing hostname fact is not published", facts: {}, want: undefined },
    ];
    for (const c of hostnames) {
      it(c.name, () => {
        assert.equal(desiredRequestStatus(undefined, 1, row({ facts: c.facts }), {}, T0).hostname, c.want);
      });
    }

    it("the capability check and Ready keep lastTransitionTime until their status flips", async () => {
      const clock = new PlanClock();
      const pending = desiredRequestStatus(undefined, 1, row({ capabilities: [] }), {}, clock.date());
      await clock.advance(60_000);
      const fixed = desiredRequestStatus(frozen(pending), 2, row(), {}, clock.date());
      assert.equal(conditionOf(fixed, "CapabilitiesSufficient").lastTransitionTime, "2030-01-01T00:01:00Z");
      assert.equal(conditionOf(fixed, "Ready").lastTransitionTime, "2030-01-01T00:00:00Z");
      assert.equal(conditionOf(fixed, "Ready").observedGeneration, 2);
      await clock.advance(60_000);
      const approved = desiredRequestStatus(frozen(fixed), 2, approvedRow(), {}, clock.date());
      assert.equal(conditionOf(approved, "Ready").lastTransitionTime, "2030-01-01T00:02:00Z");
      assert.equal(conditionOf(approved, "Approved").lastTransitionTime, "2030-01-01T00:02:00Z");
    });

    it("fields of a previous status are not carried over: a cleared unsupportedRoles disappears", () => {
      const before = desiredRequestStatus(undefined, 1, row({ capabilities: [] }), {}, T0);
      assert.deepEqual(before.unsupportedRoles, ["entry-node"]);
      const after = desiredRequestStatus(frozen(before), 1, row(), {}, at(1000));
      assert.equal("unsupportedRoles" in after, false);
    });

    it("the NoEnrollmentRecord condition the reconciler writes for a request without a row is replaced once a row exists", () => {
      const foreign: JoinRequestStatus = {
        observedGeneration: 1,
        conditions: [{ type: "Ready", status: "False", reason: RequestReasons.NoEnrollmentRecord, message: "ignored", observedGeneration: 1, lastTransitionTime: "2029-12-31T00:00:00Z" }],
      };
      const s = desiredRequestStatus(frozen(foreign), 1, row(), {}, T0);
      assert.equal(conditionOf(s, "Ready").reason, "AwaitingDecision");
      assert.equal(conditionOf(s, "Ready").lastTransitionTime, "2029-12-31T00:00:00Z");
    });

    it("the same row again gives the published status back (no status write)", () => {
      const first = desiredRequestStatus(undefined, 1, approvedRow(), { certificateSerial: "0a" }, T0);
      assert.deepEqual(desiredRequestStatus(first, 1, approvedRow(), { certificateSerial: "0a" }, at(3_600_000)), first);
    });
  });

  describe("changedDecision", () => {
    const cases: Array<{ name: string; row: RequestRow; decision?: string; want: string | undefined }> = [
      { name: "a pending request has no decision to change", row: row(), decision: "Denied", want: undefined },
      { name: "an approved request with its own decision is unchanged", row: approvedRow(), decision: "Approved", want: undefined },
      { name: "an auto-approved request without spec.decision is unchanged", row: approvedRow({ reason: "auto-approved by join token tok-1" }), want: undefined },
      {
        name: "Denied after Approved is a changed decision, ignored, pointing at the FabricNode to revoke",
        row: approvedRow(),
        decision: "Denied",
        want: "spec.decision was changed to Denied after the request was Approved; a decision is final and the change is ignored; to revoke the node, set spec.membership to Revoked on FabricNode east.web-1",
      },
      { name: "Approved after Denied is a changed decision, ignored", row: row({ state: "Denied" }), decision: "Approved", want: "spec.decision was changed to Approved after the request was Denied; a decision is final and the change is ignored" },
      { name: "an unknown decision value is no decision", row: approvedRow(), decision: "Maybe", want: undefined },
    ];
    for (const c of cases) {
      it(c.name, () => {
        assert.equal(deterministic(changedDecision, c.row, c.decision), c.want);
      });
    }

    it("a changed decision keeps the request Ready and Approved and adds DecisionChanged; it goes when the decision is restored", () => {
      const flipped = desiredRequestStatus(undefined, 2, approvedRow(), { decisionChanged: "changed" }, T0);
      assert.equal(conditionOf(flipped, "Ready").status, "True");
      assert.equal(conditionOf(flipped, "Approved").status, "True");
      assert.deepEqual(conditionOf(flipped, "DecisionChanged"), publishedCondition({ type: "DecisionChanged", status: "True", reason: "DecisionFinal", message: "changed", observedGeneration: 2 }, T0));
      const restored = desiredRequestStatus(frozen(flipped), 3, approvedRow(), {}, at(1000));
      assert.equal(restored.conditions?.some((c) => c.type === "DecisionChanged"), false);
    });
  });

  describe("fabricNodeName", () => {
    const cases = [
      { name: "a membership's FabricNode is <cluster>.<node name>", cluster: "east", node: "web-1", want: "east.web-1" },
      { name: "the same host in another cluster gets another FabricNode", cluster: "west", node: "web-1", want: "west.web-1" },
    ];
    for (const c of cases) {
      it(c.name, () => {
        assert.equal(deterministic(fabricNodeName, c.cluster, c.node), c.want);
      });
    }
  });

  it("every reason constant is produced by a case above (NoEnrollmentRecord by the reconciler)", () => {
    assert.deepEqual(Object.values(RequestReasons).sort(), [
      "Approved",
      "AutoApproved",
      "AwaitingDecision",
      "CapabilitiesSufficient",
      "CertificateIssued",
      "DecisionFinal",
      "Denied",
      "NoEnrollmentRecord",
      "NodeExists",
      "RolesUnsupported",
    ]);
  });
});
