/**
 * Pure: status.mesh of a FabricNode from its agent's last mesh report
 * (lib/state/mesh.ts meshReportsOf) and its class's active-set bounds.
 * An agent sends its link table when it changes, so a report stays true
 * while the agent lives: it is judged only while the node's heartbeats are
 * fresh (within the liveness grace period), and is Unknown otherwise.
 */
import type { FabricNodeStatusMesh } from "../../lib/api/types.generated.js";
import { meshBoundsOf, meshClassOf, type MeshPeerPolicy, type MeshReportFacts } from "../../lib/state/mesh.js";

/** At most this many peer names in status.mesh.peers. */
export const MAX_STATUS_PEERS = 64;

/** Whether a member's report is current: it has one and its agent's heartbeats are fresh. */
export function reportIsFresh(m: MeshReportFacts, now: Date, graceMs: number): boolean {
  return m.report !== undefined && m.heartbeatAt !== undefined && now.getTime() - m.heartbeatAt.getTime() <= graceMs;
}

/** Mesh health from the active peer count and the bounds. */
export function meshHealthOf(active: number, bounds: { min: number; max: number }): FabricNodeStatusMesh["health"] {
  if (active === 0 && bounds.max > 0) return "Isolated";
  if (active < bounds.min) return "BelowMinimum";
  if (active > bounds.max) return "AboveMaximum";
  return "Healthy";
}

/** status.mesh of a member; undefined (the field removed) when the node is no mesh member. */
export function nodeMeshStatus(m: MeshReportFacts | undefined, policy: MeshPeerPolicy, now: Date, graceMs: number): FabricNodeStatusMesh | undefined {
  if (m === undefined) return undefined;
  const nodeClass = meshClassOf(m);
  const b = meshBoundsOf(policy, nodeClass);
  const out: FabricNodeStatusMesh = { nodeClass, minPeers: b.min, maxPeers: b.max, health: "Unknown" };
  if (m.report === undefined || !reportIsFresh(m, now, graceMs)) return out;
  const up = [...new Set(m.report.up)].sort();
  return { ...out, activePeers: up.length, peers: up.slice(0, MAX_STATUS_PEERS), health: meshHealthOf(up.length, b) };
}
