/**
 * Types shared by the workload supervisor's parts: the reported status of a
 * workload, the process spawner (the operating-system edge tests may fake),
 * the clock, and the rule for workload names (which are also directory names).
 */
import type { ChildProcess, SpawnOptions } from "node:child_process";
import type { SnapshotWorkload } from "../../lib/snapshot/format.js";

/** Observed state of a workload on this host (FabricNode status.workloads[].state). */
export type WorkloadState = "Starting" | "Running" | "Degraded" | "Stopped" | "Failed" | "Unsupported";

/** What the supervisor reports for one workload. */
export interface WorkloadStatus {
  /** ServiceWorkload name. */
  name: string;
  /** Generation of the desired workload this status is about. */
  observedGeneration: number;
  state: WorkloadState;
  /** Running and, when it has a probe, passing it. */
  ready: boolean;
  /** PascalCase reason (e.g. ContainerRuntimeUnavailable, CrashLoopBackOff, ProbeFailed). */
  reason: string;
  /** Human detail; never a secret. */
  message: string;
  /** Restarts since the workload was first started on this host (kept across agent restarts). */
  restartCount: number;
  /** Supervised process id, when running. */
  pid?: number;
}

/**
 * A desired workload as the supervisor reads it: the snapshot's
 * SnapshotWorkload plus the optional members later v1 builders add (payload
 * objects are open, so an older builder simply leaves them out).
 */
export type DesiredWorkload = SnapshotWorkload & {
  /** Working directory of a native process. */
  workingDir?: string;
  /** Seconds after start before the first probe (default 0). */
  initialDelaySeconds?: number;
};

/** Starts processes; the one operating-system edge tests may replace. */
export interface Spawner {
  spawn(command: string, args: readonly string[], options: SpawnOptions): ChildProcess;
}

/** Milliseconds since the epoch; injectable for tests of backoff arithmetic. */
export interface WorkloadClock {
  now(): number;
}

const WORKLOAD_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/** True for a valid workload name: a DNS-subdomain-like name, safe as a directory name under `<stateDir>/workloads/`. */
export function isWorkloadName(name: string): boolean {
  return WORKLOAD_NAME.test(name);
}
