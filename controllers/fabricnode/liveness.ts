/**
 * Pure decisions of the FabricNode controller's heartbeat part: whether a
 * node is live, the health to publish, and which heartbeat fields reach the
 * FabricNode status.
 *
 * Heartbeats themselves live in `node_heartbeats` (the Lease of this
 * design: written in batches, never through the API server). The status is
 * a projection of them that changes only when something visible changes:
 * capabilities, facts, agent version, health, the held snapshot, or Ready.
 * `lastHeartbeatTime` alone moves at most once per `publishIntervalMs`
 * (default 5 min, like kubelet's nodeStatusReportFrequency), at a per-node
 * offset so ten thousand nodes do not all rewrite their status in the same
 * second. Without that, every heartbeat would be a status write, a new
 * resourceVersion and a watch event to every FabricNode watcher: the load
 * Kubernetes removed by moving node heartbeats into Lease objects.
 */
import { createHash } from "node:crypto";
import type { FabricNodeStatus } from "../../lib/api/types.generated.js";
import type { HeartbeatRow } from "../../lib/state/heartbeats.js";
import { formatTime } from "../runtime/index.js";

/** Ready reasons of the heartbeat part. */
export const LivenessReasons = {
  /** Heartbeats stopped for longer than the grace period (Kubernetes' reason). */
  NodeStatusUnknown: "NodeStatusUnknown",
} as const;

/** Liveness settings (milliseconds). */
export interface LivenessSettings {
  /** Without a heartbeat for this long, Ready goes Unknown (default 40 s, kube-controller-manager's node-monitor-grace-period). */
  gracePeriodMs: number;
  /** lastHeartbeatTime alone is republished at most this often (default 5 min). */
  publishIntervalMs: number;
}

/** Defaults of {@link LivenessSettings}. */
export const DEFAULT_LIVENESS: LivenessSettings = { gracePeriodMs: 40_000, publishIntervalMs: 300_000 };

/** Health the control plane publishes. */
export type PublishedHealth = "Healthy" | "Degraded" | "Unknown";

/** True while the last heartbeat is within the grace period. */
export function isLive(receivedAt: Date, now: Date, gracePeriodMs: number): boolean {
  return now.getTime() - receivedAt.getTime() <= gracePeriodMs;
}

/** The health to publish: the agent's own while it is live, Unknown after the grace period. */
export function healthOf(receivedAt: Date, reported: HeartbeatRow["health"], now: Date, gracePeriodMs: number): PublishedHealth {
  return isLive(receivedAt, now, gracePeriodMs) ? reported : "Unknown";
}

/** sha256 prefix per node name: the heartbeat monitor asks for every node on every scan. */
const offsetSeeds = new Map<string, number>();

/** A per-node offset in [0, interval), so publication buckets of different nodes do not line up. */
export function publishOffset(node: string, intervalMs: number): number {
  let seed = offsetSeeds.get(node);
  if (seed === undefined) {
    seed = createHash("sha256").update(node).digest().readUInt32BE(0);
    if (offsetSeeds.size >= 200_000) offsetSeeds.clear();
    offsetSeeds.set(node, seed);
  }
  return seed % Math.max(1, intervalMs);
}

/** The lastHeartbeatTime bucket of a time: it is republished alone only when the bucket changes. */
export function publishBucket(node: string, at: Date, intervalMs: number): number {
  return Math.floor((at.getTime() + publishOffset(node, intervalMs)) / Math.max(1, intervalMs));
}

/**
 * Folds a heartbeat into a status whose other fields are already computed
 * (`next`; `current` is the published one). lastHeartbeatTime moves when any
 * other field changed, when it is missing, or when its bucket changed.
 */
export function withHeartbeat(
  node: string,
  current: FabricNodeStatus | undefined,
  next: FabricNodeStatus,
  hb: HeartbeatRow,
  health: PublishedHealth,
  s: LivenessSettings,
  jsonEqual: (a: unknown, b: unknown) => boolean,
): FabricNodeStatus {
  const out: FabricNodeStatus = { ...next, capabilities: hb.capabilities, facts: hb.facts, agentVersion: hb.agentVersion, health };
  if (hb.snapshotSerial !== undefined) {
    out.snapshot = {
      serial: hb.snapshotSerial,
      ...(hb.snapshotHash !== undefined ? { hash: hb.snapshotHash } : {}),
      ...(hb.snapshotAppliedAt !== undefined ? { appliedTime: formatTime(hb.snapshotAppliedAt) } : {}),
    };
  } else delete out.snapshot;
  const published = current?.lastHeartbeatTime;
  const { lastHeartbeatTime: _a, ...restNext } = out;
  const { lastHeartbeatTime: _b, ...restCurrent } = current ?? {};
  const publishedAt = published === undefined ? Number.NaN : Date.parse(published);
  const move =
    !Number.isFinite(publishedAt) ||
    !jsonEqual(restNext, restCurrent) ||
    publishBucket(node, hb.receivedAt, s.publishIntervalMs) !== publishBucket(node, new Date(publishedAt), s.publishIntervalMs);
  out.lastHeartbeatTime = move ? formatTime(hb.receivedAt) : published;
  return out;
}
