/**
 * The Kubernetes Events of the FabricCluster controller: keys created (on
 * first sight, or for a cluster re-created under the same name).
 */
import type { PlannedEvent } from "../runtime/index.js";

/** Reasons of FabricCluster events. */
export const ClusterEventReasons = { ClusterKeysCreated: "ClusterKeysCreated" } as const;

/** The event of a cluster's new certificate authority and snapshot signing key. */
export function keysCreatedEvent(replaced: boolean, caFingerprint: string, snapshotKeyId: string): PlannedEvent {
  return {
    type: "Normal",
    reason: ClusterEventReasons.ClusterKeysCreated,
    message: `${replaced ? "cluster re-created: new" : "created"} certificate authority ${caFingerprint} and snapshot signing key ${snapshotKeyId} (sealed under the KEK)`,
  };
}
