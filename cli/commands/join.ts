/** `fabricctl join approve|deny NAME [--reason TEXT]`: sets the operator's decision on a JoinRequest. */
import { UsageError } from "../errors.js";
import type { KubeClient } from "../kube/client.js";

/** Sets spec.decision (and decisionReason) with a merge patch; a missing request is NotFound (exit 2). */
export async function joinDecide(client: KubeClient, decision: "Approved" | "Denied", name: string | undefined, reason: string | undefined, out: (s: string) => void): Promise<number> {
  const verb = decision === "Approved" ? "approve" : "deny";
  if (name === undefined || name === "") throw new UsageError(`join ${verb} needs a JoinRequest name`);
  await client.mergePatch("JoinRequest", name, { spec: { decision, ...(reason !== undefined ? { decisionReason: reason } : {}) } });
  out(`joinrequest/${name} ${decision === "Approved" ? "approved" : "denied"}\n`);
  return 0;
}
