/**
 * The Kubernetes Events of the VPNConnection controller, decided against the
 * status last published (a steady state records nothing): a new grant, a
 * lease that ended (with the grant history's reason), an operator fence, and
 * a connection that cannot be owned (spec invalid, credential missing, no
 * eligible node).
 */
import type { VPNConnectionStatus } from "../../lib/api/types.generated.js";
import type { PlannedEvent } from "../runtime/index.js";

/** Reasons of VPNConnection events. */
export const VpnEventReasons = {
  LeaseGranted: "LeaseGranted",
  LeaseEnded: "LeaseEnded",
  Fenced: "Fenced",
  NotOwnable: "NotOwnable",
} as const;

/** Events of one reconcile. */
export function vpnEvents(
  published: VPNConnectionStatus | undefined,
  next: VPNConnectionStatus,
  o: { fenced?: { fence: number; holder?: string; token?: number }; lastEnd?: { holder: string; token: number; reason: string } },
): PlannedEvent[] {
  const out: PlannedEvent[] = [];
  const was = published?.activeLease;
  const now = next.activeLease;
  if (o.fenced !== undefined) {
    out.push({ type: "Warning", reason: VpnEventReasons.Fenced, message: `operator fence ${o.fenced.fence}: ${o.fenced.holder !== undefined ? `lease of ${o.fenced.holder} (token ${o.fenced.token ?? 0}) ended` : "no lease was held"}; the next grant gets a higher token` });
  }
  if (was !== undefined && (now === undefined || now.fencingToken !== was.fencingToken) && o.fenced === undefined) {
    const why = o.lastEnd !== undefined && o.lastEnd.token === was.fencingToken ? o.lastEnd.reason : "ended";
    out.push({ type: "Normal", reason: VpnEventReasons.LeaseEnded, message: `lease of ${was.holder} (token ${was.fencingToken}) ${why}` });
  }
  if (now !== undefined && now.fencingToken !== was?.fencingToken) {
    out.push({ type: "Normal", reason: VpnEventReasons.LeaseGranted, message: `lease granted to ${now.holder} with token ${now.fencingToken}` });
  }
  const ready = next.conditions?.find((c) => c.type === "Ready");
  const wasReason = published?.conditions?.find((c) => c.type === "Ready")?.reason;
  if (ready !== undefined && ready.reason !== wasReason && ["InvalidSpec", "ClusterNotFound", "CredentialMissing", "NoEligibleNode"].includes(ready.reason)) {
    out.push({ type: "Warning", reason: VpnEventReasons.NotOwnable, message: `${ready.reason}: ${ready.message}` });
  }
  return out;
}
