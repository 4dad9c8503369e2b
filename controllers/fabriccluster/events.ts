/**
 * The Kubernetes Events of the FabricCluster controller: keys created (on
 * first sight, or for a cluster re-created under the same name).
 */
import type { PlannedEvent } from "../runtime/index.js";

/** Reasons of FabricCluster events. */
export const ClusterEventReasons = { ClusterKeysCreated: "ClusterKeysCreated", MeshPartitioned: "MeshPartitioned", MeshConnected: "MeshConnected" } as const;

/** Events of a MeshPartitioned condition turning True (a warning) or back to False from True. */
export function meshPartitionEvents(before: string | undefined, after: { status: string; message: string } | undefined): PlannedEvent[] {
  if (after === undefined || before === after.status) return [];
  if (after.status === "True") return [{ type: "Warning", reason: ClusterEventReasons.MeshPartitioned, message: after.message }];
  if (before === "True" && after.status === "False") return [{ type: "Normal", reason: ClusterEventReasons.MeshConnected, message: after.message }];
  return [];
}

/** The event of a cluster's new certificate authority and snapshot signing key. */
export function keysCreatedEvent(replaced: boolean, caFingerprint: string, snapshotKeyId: string): PlannedEvent {
  return {
    type: "Normal",
    reason: ClusterEventReasons.ClusterKeysCreated,
    message: `${replaced ? "cluster re-created: new" : "created"} certificate authority ${caFingerprint} and snapshot signing key ${snapshotKeyId} (sealed under the KEK)`,
  };
}
