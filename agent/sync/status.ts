/**
 * The agent's status file, one per membership (`<membership dir>/status.json`),
 * written atomically by the running agent and read by `fabric-agent status`
 * (and by operators' tooling). It is a report, never an input: the agent
 * does not read it back to make decisions.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { SnapshotErrorCode } from "../../lib/snapshot/errors.js";
import { writeFileAtomic } from "../state/atomic-file.js";

/** File name inside the membership directory. */
export const STATUS_FILE = "status.json";

/** The snapshot the agent holds. */
export interface HeldSnapshot {
  serial: number;
  term: number;
  /** sha256 hex of the verified bytes. */
  hash: string;
  issuedAt: string;
  expiresAt: string;
  /** When this agent verified it (from the control plane) or loaded it (from the checkpoint). */
  appliedAt: string;
  source: "checkpoint" | "control-plane";
  /** Expired: the host runs on it in stale mode until a fresh one arrives. */
  stale: boolean;
}

/** One rejected snapshot. */
export interface Rejection {
  code: SnapshotErrorCode;
  message: string;
  at: string;
}

/** What status.json holds. */
export interface AgentStatus {
  formatVersion: 1;
  cluster: string;
  node: string;
  server: string;
  identitySerial: string;
  certificateNotAfter: string;
  pid: number;
  startedAt: string;
  /** True when this process started from its checkpoint (before any contact). */
  bootedFromCheckpoint: boolean;
  snapshot?: HeldSnapshot;
  /** Last successful exchange with the agent API. */
  lastContact?: string;
  /** Last failed exchange (cleared by the next success). */
  lastError?: { message: string; at: string };
  /** Snapshots verified and applied by this process. */
  accepted: number;
  /** Rejections by code since the process started. */
  rejections: Partial<Record<SnapshotErrorCode, number>>;
  lastRejection?: Rejection;
  heartbeats: { sent: number; failed: number; lastSentAt?: string };
  updatedAt: string;
}

/** Atomically replaces the status file. */
export async function writeStatus(dir: string, s: AgentStatus): Promise<void> {
  await writeFileAtomic(dir, STATUS_FILE, Buffer.from(JSON.stringify(s, null, 2) + "\n"), { durable: false });
}

/** Reads the status file; undefined when there is none. */
export async function readStatus(dir: string): Promise<AgentStatus | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, STATUS_FILE), "utf8")) as AgentStatus;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new Error(`reading ${join(dir, STATUS_FILE)}`, { cause: err });
  }
}

function age(from: string | undefined, now: Date): string {
  if (from === undefined) return "never";
  const s = Math.max(0, Math.round((now.getTime() - Date.parse(from)) / 1000));
  if (s < 120) return `${s}s ago`;
  if (s < 7200) return `${Math.round(s / 60)}m ago`;
  return `${Math.round(s / 3600)}h ago`;
}

/** Human-readable lines for `fabric-agent status`. */
export function formatStatus(s: AgentStatus, now: Date): string {
  const lines = [
    `membership ${s.cluster}/${s.node}`,
    `  server:          ${s.server}`,
    `  identity:        certificate ${s.identitySerial}, valid until ${s.certificateNotAfter}`,
    s.snapshot === undefined
      ? `  snapshot:        none verified yet (nothing is applied until the first verified snapshot)`
      : `  snapshot:        serial ${s.snapshot.serial} (term ${s.snapshot.term}), issued ${age(s.snapshot.issuedAt, now)}, expires ${s.snapshot.expiresAt}${s.snapshot.stale ? " [STALE: expired, running on last verified state]" : ""}, from ${s.snapshot.source}`,
    `  booted from checkpoint: ${s.bootedFromCheckpoint ? "yes" : "no"}`,
    `  last contact:    ${age(s.lastContact, now)}`,
  ];
  if (s.lastError !== undefined) lines.push(`  last error:      ${s.lastError.message} (${age(s.lastError.at, now)})`);
  const rej = Object.entries(s.rejections).map(([k, v]) => `${k}=${String(v)}`);
  lines.push(`  rejected:        ${rej.length === 0 ? "none" : rej.join(" ")}`);
  if (s.lastRejection !== undefined) lines.push(`  last rejection:  ${s.lastRejection.code}: ${s.lastRejection.message} (${age(s.lastRejection.at, now)})`);
  lines.push(`  heartbeats:      ${s.heartbeats.sent} sent, ${s.heartbeats.failed} failed, last ${age(s.heartbeats.lastSentAt, now)}`);
  lines.push(`  agent pid ${s.pid}, status updated ${age(s.updatedAt, now)}`);
  return lines.join("\n") + "\n";
}

/** Prometheus text exposition of the agent's counters (served by `fabric-agent run --metrics-port`). */
export function metricsText(all: readonly AgentStatus[], now: Date): string {
  const out: string[] = [
    "# HELP fabric_agent_snapshot_rejections_total Snapshots rejected by verification, by error code.",
    "# TYPE fabric_agent_snapshot_rejections_total counter",
  ];
  for (const s of all) for (const [code, n] of Object.entries(s.rejections)) out.push(`fabric_agent_snapshot_rejections_total{cluster="${s.cluster}",node="${s.node}",code="${code}"} ${String(n)}`);
  out.push("# HELP fabric_agent_snapshots_accepted_total Snapshots verified and applied.", "# TYPE fabric_agent_snapshots_accepted_total counter");
  for (const s of all) out.push(`fabric_agent_snapshots_accepted_total{cluster="${s.cluster}",node="${s.node}"} ${s.accepted}`);
  out.push("# HELP fabric_agent_snapshot_serial Serial of the snapshot in force.", "# TYPE fabric_agent_snapshot_serial gauge");
  for (const s of all) out.push(`fabric_agent_snapshot_serial{cluster="${s.cluster}",node="${s.node}"} ${s.snapshot?.serial ?? 0}`);
  out.push("# HELP fabric_agent_snapshot_age_seconds Age of the snapshot in force.", "# TYPE fabric_agent_snapshot_age_seconds gauge");
  for (const s of all) if (s.snapshot !== undefined) out.push(`fabric_agent_snapshot_age_seconds{cluster="${s.cluster}",node="${s.node}"} ${Math.max(0, (now.getTime() - Date.parse(s.snapshot.issuedAt)) / 1000)}`);
  out.push("# HELP fabric_agent_snapshot_stale 1 while running on an expired snapshot.", "# TYPE fabric_agent_snapshot_stale gauge");
  for (const s of all) out.push(`fabric_agent_snapshot_stale{cluster="${s.cluster}",node="${s.node}"} ${s.snapshot?.stale === true ? 1 : 0}`);
  out.push("# HELP fabric_agent_heartbeats_failed_total Heartbeats that failed.", "# TYPE fabric_agent_heartbeats_failed_total counter");
  for (const s of all) out.push(`fabric_agent_heartbeats_failed_total{cluster="${s.cluster}",node="${s.node}"} ${s.heartbeats.failed}`);
  return out.join("\n") + "\n";
}
