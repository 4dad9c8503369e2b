/**
 * What the control plane leaves behind when it refuses an enrollment: one
 * structured log line, and a Warning event "JoinRefused" on the JoinToken
 * that was presented (or, for a token that matches none, on the cluster the
 * agent named, when it exists). The refusal itself creates nothing else:
 * the agent API records the event through the Kubernetes API with its own
 * recorder (lib/kube/events.ts), whose spam filter bounds what a caller
 * hammering one token or cluster can write.
 */
import { RESOURCES } from "../lib/api/types.generated.js";
import type { EventRecorderLike, ObjectRef } from "../lib/kube/events.js";
import type { Logger } from "../lib/log.js";
import type { ClusterStore, RefusalCode } from "../lib/state/index.js";
import type { RefusedToken } from "../lib/state/enrollment.js";

/** The event reason of every refused enrollment. */
export const JOIN_REFUSED = "JoinRefused";

/** One refused enrollment. */
export interface Refusal {
  code: RefusalCode;
  message: string;
  nodeName: string;
  /** The cluster the agent named, if it did. */
  cluster?: string;
  token?: RefusedToken;
  address: string;
}

/** Logs the refusal and records its event (never throws, never waits for the event's write). */
export async function recordRefusal(r: Refusal, d: { log: Logger; events?: EventRecorderLike; clusters: Pick<ClusterStore, "get"> }): Promise<void> {
  d.log.warn("join refused", { code: r.code, node: r.nodeName, cluster: r.token?.cluster ?? r.cluster, token: r.token?.name, address: r.address, reason: r.message });
  if (d.events === undefined) return;
  let ref: ObjectRef | undefined;
  if (r.token !== undefined) {
    const res = RESOURCES.JoinToken;
    ref = { apiVersion: `${res.group}/${res.version}`, kind: "JoinToken", name: r.token.name, uid: r.token.uid };
  } else if (r.cluster !== undefined) {
    try {
      const row = await d.clusters.get(r.cluster);
      const res = RESOURCES.FabricCluster;
      if (row !== undefined) ref = { apiVersion: `${res.group}/${res.version}`, kind: "FabricCluster", name: row.name, uid: row.uid };
    } catch (err) {
      d.log.warn("looking up the cluster of a refused join failed", { cluster: r.cluster, err });
    }
  }
  if (ref !== undefined) d.events.event(ref, "Warning", JOIN_REFUSED, `node ${r.nodeName} refused (${r.code}): ${r.message} [from ${r.address}]`);
}
