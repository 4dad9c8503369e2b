/**
 * The Kubernetes Events of the JoinRequest controller: its decisions
 * (approved, denied, certificate issued) and its refusals (a request made
 * outside the enrollment API, a node that already exists). Refused
 * enrollments never become JoinRequests: the agent API records those on the
 * JoinToken (agentapi/enroll.ts).
 */
import type { PlannedEvent } from "../runtime/index.js";
import type { RequestAction } from "./plan.js";

/** Reasons of JoinRequest events. */
export const RequestEventReasons = {
  Approved: "JoinRequestApproved",
  Denied: "JoinRequestDenied",
  CertificateIssued: "CertificateIssued",
  NodeExists: "NodeExists",
  NoEnrollmentRecord: "NoEnrollmentRecord",
} as const;

/** Approval and the certificate it issued. */
export function approvedEvents(action: Extract<RequestAction, { kind: "approve" }>, node: string, serial: string, notAfter: Date): PlannedEvent[] {
  return [
    { type: "Normal", reason: RequestEventReasons.Approved, message: `${action.how === "Auto" ? "auto-approved" : "approved"}: ${action.reason}` },
    { type: "Normal", reason: RequestEventReasons.CertificateIssued, message: `certificate ${serial} issued to node ${node}, valid until ${notAfter.toISOString()}` },
  ];
}

/** Denial. */
export function deniedEvent(reason: string): PlannedEvent {
  return { type: "Warning", reason: RequestEventReasons.Denied, message: `denied: ${reason}` };
}

/** Approval refused: the node is already enrolled. */
export function nodeExistsEvent(node: string): PlannedEvent {
  return { type: "Warning", reason: RequestEventReasons.NodeExists, message: `not approved: node ${node} already exists (delete its FabricNode to re-enroll it)` };
}

/** A request made outside the enrollment API. */
export function noEnrollmentRecordEvent(): PlannedEvent {
  return { type: "Warning", reason: RequestEventReasons.NoEnrollmentRecord, message: "ignored: this request was not made through the enrollment API (or does not match its record)" };
}
