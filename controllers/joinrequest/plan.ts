/**
 * Pure decisions of the JoinRequest controller: what to do with a request
 * and the status to publish.
 */
import type { JoinRequestStatus } from "../../lib/api/types.generated.js";
import { missingCapabilities, unsupportedRoles } from "../../lib/enrollment/roles.js";
import type { RequestRow } from "../../lib/state/index.js";
import { formatTime, removeCondition, setCondition, type Condition } from "../runtime/index.js";

/** Condition reasons. */
export const RequestReasons = {
  Pending: "AwaitingDecision",
  Approved: "Approved",
  AutoApproved: "AutoApproved",
  Denied: "Denied",
  CertificateIssued: "CertificateIssued",
  NoEnrollmentRecord: "NoEnrollmentRecord",
  NodeExists: "NodeExists",
  CapabilitiesSufficient: "CapabilitiesSufficient",
  RolesUnsupported: "RolesUnsupported",
  DecisionFinal: "DecisionFinal",
} as const;

/** What the reconciler should do. */
export type RequestAction =
  | { kind: "wait" }
  | { kind: "approve"; how: "Manual" | "Auto"; reason: string }
  | { kind: "deny"; reason: string }
  | { kind: "decided" };

/**
 * The operator's decision wins; without one, a request made with an
 * auto-approve token (allowed by the cluster policy at enrollment) is
 * approved only when every requested role is supported by the reported
 * capabilities. Roles outside the token's allowedRoles never got this far.
 */
export function planRequest(row: RequestRow, decision: string | undefined, decisionReason: string | undefined): RequestAction {
  if (row.state !== "Pending") return { kind: "decided" };
  if (decision === "Denied") return { kind: "deny", reason: decisionReason ?? "denied by an operator" };
  if (decision === "Approved") return { kind: "approve", how: "Manual", reason: decisionReason ?? "approved by an operator" };
  if (row.autoApprove && unsupportedRoles(row.requestedRoles, row.capabilities).length === 0) {
    return { kind: "approve", how: "Auto", reason: `auto-approved by join token ${row.tokenName}` };
  }
  return { kind: "wait" };
}

/**
 * When spec.decision names another outcome than the one already recorded
 * (Denied after Approved, or the reverse), the message of the
 * DecisionChanged condition; undefined otherwise. A decision is final: the
 * API server refuses such a change (the CRD's transition rule), and should
 * one get through anyway (an API server without the rule), the recorded
 * outcome stands: the node is kept, and revoking it is done on the FabricNode.
 */
export function changedDecision(row: RequestRow, decision: string | undefined): string | undefined {
  if (row.state === "Pending" || (decision !== "Approved" && decision !== "Denied") || decision === row.state) return undefined;
  const revoke = row.state === "Approved" && row.fabricNode !== null ? `; to revoke the node, set spec.membership to Revoked on FabricNode ${row.fabricNode}` : "";
  return `spec.decision was changed to ${decision} after the request was ${row.state}; a decision is final and the change is ignored${revoke}`;
}

/** The status to publish. */
export function desiredRequestStatus(
  current: JoinRequestStatus | undefined,
  generation: number,
  row: RequestRow,
  extra: { certificateSerial?: string; certificateNotAfter?: Date; nodeExists?: string; decisionChanged?: string },
  now: Date,
): JoinRequestStatus {
  const unsupported = unsupportedRoles(row.requestedRoles, row.capabilities);
  let conditions = current?.conditions as Condition[] | undefined;
  const missing = missingCapabilities(row.requestedRoles, row.capabilities);
  conditions = setCondition(
    conditions,
    unsupported.length === 0
      ? { type: "CapabilitiesSufficient", status: "True", reason: RequestReasons.CapabilitiesSufficient, message: "the reported capabilities support every requested role", observedGeneration: generation }
      : {
          type: "CapabilitiesSufficient",
          status: "False",
          reason: RequestReasons.RolesUnsupported,
          message: Object.entries(missing)
            .map(([r, caps]) => `${r} needs ${caps.join(", ")}`)
            .join("; "),
          observedGeneration: generation,
        },
    now,
  );
  const auto = row.approvedHow === "Auto";
  let ready: Omit<Condition, "lastTransitionTime">;
  if (row.state === "Approved") ready = { type: "Ready", status: "True", reason: RequestReasons.CertificateIssued, message: `certificate issued; node ${row.fabricNode ?? ""} created`, observedGeneration: generation };
  else if (row.state === "Denied") ready = { type: "Ready", status: "False", reason: RequestReasons.Denied, message: row.reason ?? "denied", observedGeneration: generation };
  else if (extra.nodeExists !== undefined) ready = { type: "Ready", status: "False", reason: RequestReasons.NodeExists, message: `node ${extra.nodeExists} already exists in the cluster; delete it or enroll under another name`, observedGeneration: generation };
  else ready = { type: "Ready", status: "False", reason: RequestReasons.Pending, message: "waiting for an operator to set spec.decision", observedGeneration: generation };
  conditions = setCondition(conditions, ready, now);
  if (row.state !== "Pending") {
    conditions = setCondition(
      conditions,
      row.state === "Approved"
        ? { type: "Approved", status: "True", reason: auto ? RequestReasons.AutoApproved : RequestReasons.Approved, message: row.reason ?? "", observedGeneration: generation }
        : { type: "Approved", status: "False", reason: RequestReasons.Denied, message: row.reason ?? "", observedGeneration: generation },
      now,
    );
  }
  conditions =
    extra.decisionChanged === undefined
      ? removeCondition(conditions, "DecisionChanged")
      : setCondition(conditions, { type: "DecisionChanged", status: "True", reason: RequestReasons.DecisionFinal, message: extra.decisionChanged, observedGeneration: generation }, now);
  const out: JoinRequestStatus = { observedGeneration: generation, conditions };
  if (unsupported.length > 0) out.unsupportedRoles = unsupported;
  const hostname = row.facts.hostname;
  if (typeof hostname === "string" && hostname.length <= 253) out.hostname = hostname;
  if (row.state === "Approved" && row.certificatePem !== null) {
    out.certificate = row.certificatePem;
    if (extra.certificateSerial !== undefined) out.certificateSerial = extra.certificateSerial;
    if (extra.certificateNotAfter !== undefined) out.certificateNotAfter = formatTime(extra.certificateNotAfter);
    if (row.fabricNode !== null) out.nodeRef = { name: row.fabricNode };
  }
  if (row.decidedAt !== null) out.decisionTime = formatTime(row.decidedAt);
  return out;
}

/** Deterministic FabricNode name of a membership: `<cluster>.<node name>`. */
export function fabricNodeName(cluster: string, nodeName: string): string {
  return `${cluster}.${nodeName}`;
}
