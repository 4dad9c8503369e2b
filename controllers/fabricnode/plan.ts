/**
 * Pure decisions of the FabricNode controller: the Ready condition, the
 * identity block, (liveness.ts) what the heartbeats contribute, and the
 * roles and workloads the node holds and runs.
 */
import type { FabricNodeStatus, FabricNodeStatusWorkload } from "../../lib/api/types.generated.js";
import type { HeartbeatRow } from "../../lib/state/heartbeats.js";
import type { IdentityRow, NodeRow, WorkloadReportRow } from "../../lib/state/index.js";
import { formatTime, jsonEqual, setCondition, type Condition } from "../runtime/index.js";
import { healthOf, LivenessReasons, type LivenessSettings } from "./liveness.js";
import { withHeartbeat } from "./liveness.js";

/** Ready reasons owned by this controller. */
export const NodeReasons = {
  Active: "Active",
  Disabled: "Disabled",
  Revoked: "Revoked",
  RevokedIsFinal: "RevokedIsFinal",
  NoIdentity: "NoIdentity",
  CertificateExpired: "CertificateExpired",
} as const;

/**
 * The status to publish (fields owned by other controllers carried over).
 * With a heartbeat, an Active node is Ready only while heartbeats arrive
 * (Unknown after the grace period); a node that never sent one is judged
 * by its identity (enrolled, agent not started yet) until the startup grace
 * period after its certificate was issued has passed, then Unknown
 * (`heartbeatsTracked` false: no heartbeat store, identity alone).
 */
export function desiredNodeStatus(
  current: FabricNodeStatus | undefined,
  generation: number,
  row: NodeRow | undefined,
  identity: IdentityRow | undefined,
  specMembership: NodeRow["membership"],
  now: Date,
  liveness?: { heartbeat: HeartbeatRow | undefined; settings: LivenessSettings; heartbeatsTracked?: boolean },
): FabricNodeStatus {
  const hb = row !== undefined && row.membership !== "Revoked" ? liveness?.heartbeat : undefined;
  const health = hb === undefined || liveness === undefined ? undefined : healthOf(hb.receivedAt, hb.health, now, liveness.settings.gracePeriodMs);
  let ready: Omit<Condition, "lastTransitionTime">;
  if (row === undefined) {
    ready = { type: "Ready", status: "False", reason: NodeReasons.NoIdentity, message: "no enrollment record: nodes join only through an approved JoinRequest", observedGeneration: generation };
  } else if (row.membership === "Revoked") {
    ready =
      specMembership === "Revoked"
        ? { type: "Ready", status: "False", reason: NodeReasons.Revoked, message: "identity revoked; the agent API refuses this node's certificates", observedGeneration: generation }
        : { type: "Ready", status: "False", reason: NodeReasons.RevokedIsFinal, message: "revocation is final; enroll the host again for a new identity", observedGeneration: generation };
  } else if (identity === undefined) {
    ready = { type: "Ready", status: "False", reason: NodeReasons.NoIdentity, message: "no active certificate", observedGeneration: generation };
  } else if (identity.notAfter.getTime() <= now.getTime()) {
    ready = { type: "Ready", status: "False", reason: NodeReasons.CertificateExpired, message: `certificate expired at ${identity.notAfter.toISOString()} without renewal`, observedGeneration: generation };
  } else if (row.membership === "Disabled") {
    ready = { type: "Ready", status: "False", reason: NodeReasons.Disabled, message: "membership disabled: identity kept, no work assigned", observedGeneration: generation };
  } else if (hb !== undefined && health === "Unknown" && liveness !== undefined) {
    ready = {
      type: "Ready",
      status: "Unknown",
      reason: LivenessReasons.NodeStatusUnknown,
      message: `no heartbeat for more than ${Math.round(liveness.settings.gracePeriodMs / 1000)}s (last at ${formatTime(hb.receivedAt)})`,
      observedGeneration: generation,
    };
  } else if (liveness !== undefined && neverUpdated(liveness.heartbeat, liveness.heartbeatsTracked ?? true, identity, now, liveness.settings)) {
    ready = {
      type: "Ready",
      status: "Unknown",
      reason: LivenessReasons.NodeStatusNeverUpdated,
      message: `the agent has sent no heartbeat since the certificate was issued at ${formatTime(identity.issuedAt)} (startup grace ${Math.round(liveness.settings.startupGracePeriodMs / 1000)}s)`,
      observedGeneration: generation,
    };
  } else {
    ready = { type: "Ready", status: "True", reason: NodeReasons.Active, message: `active; certificate valid until ${identity.notAfter.toISOString()}`, observedGeneration: generation };
  }
  const out: FabricNodeStatus = { ...current, observedGeneration: generation, conditions: setCondition(current?.conditions as Condition[] | undefined, ready, now) };
  // A revoked node has no health any more: its heartbeats are refused, and the last one would stand forever.
  if (row?.membership === "Revoked") delete out.health;
  if (identity !== undefined && row?.membership !== "Revoked") {
    out.identity = { certificateSerial: identity.serial, notBefore: formatTime(identity.notBefore), notAfter: formatTime(identity.notAfter), publicKeyFingerprint: identity.publicKeyFingerprint };
  } else delete out.identity;
  if (row !== undefined) {
    out.capabilities = row.capabilities;
    out.facts = row.facts;
  }
  if (hb !== undefined && health !== undefined && liveness !== undefined) return withHeartbeat(row?.name ?? "", current, out, hb, health, liveness.settings, jsonEqual);
  return out;
}

/** True when no heartbeat ever arrived and the startup grace period since the certificate's issue has passed. */
export function neverUpdated(heartbeat: HeartbeatRow | undefined, tracked: boolean, identity: IdentityRow, now: Date, settings: LivenessSettings): boolean {
  if (heartbeat !== undefined || !tracked || settings.startupGracePeriodMs <= 0) return false;
  return now.getTime() - identity.issuedAt.getTime() > settings.startupGracePeriodMs;
}

/** status.assignedRoles from the node's grants: each role once, sorted; undefined (the field removed) when none. */
export function assignedRolesOf(grants: ReadonlyArray<{ role: string }>): string[] | undefined {
  const roles = [...new Set(grants.map((g) => g.role))].sort();
  return roles.length === 0 ? undefined : roles;
}

/**
 * status.workloads from the agent's latest reports (one per workload, in the
 * order given); undefined (the field removed) when there is none.
 */
export function nodeWorkloadsOf(reports: readonly WorkloadReportRow[]): FabricNodeStatusWorkload[] | undefined {
  if (reports.length === 0) return undefined;
  return reports.map((r) => {
    const w: FabricNodeStatusWorkload = { name: r.workload, state: r.state, restartCount: r.restartCount };
    const msg = [r.reason, r.message].filter((x) => x !== "").join(": ");
    if (msg !== "") w.message = msg.slice(0, 1024);
    return w;
  });
}
