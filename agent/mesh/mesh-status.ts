/**
 * The mesh status file, one per membership (`<membership dir>/mesh-status.json`),
 * written atomically by the running agent's mesh loop after every evaluation
 * and read by `fabric-agent mesh status`. Like status.json it is a report,
 * never an input: the loop does not read it back.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../state/atomic-file.js";

/** File name inside the membership directory. */
export const MESH_STATUS_FILE = "mesh-status.json";

/** One peer row: a link the transport holds, a dial in flight, or a candidate whose last dial failed. */
export interface MeshPeerStatus {
  peer: string;
  state: "up" | "connecting" | "failed";
  direction?: "inbound" | "outbound";
  /** RTT EWMA, ms (absent before the first probe answer). */
  rttMs?: number;
  jitterMs?: number;
  /** Lost fraction of the recent probes. */
  loss?: number;
  /** The rows are this node's own links: `direct` (relayed paths are per destination: see `relays` and `mesh ping`). */
  path: "direct" | "none";
  /** Consecutive failed dials (failed rows). */
  failures?: number;
  /** When the row entered its state (RFC 3339). */
  since: string;
}

/** What mesh-status.json holds. */
export interface MeshStatus {
  formatVersion: 1;
  cluster: string;
  node: string;
  pid: number;
  /** False when the snapshot in force gives this node no `mesh` settings (no mesh role), or before the first verified snapshot. */
  enabled: boolean;
  /** Why the mesh is off, or why it is degraded (a bind failure). */
  reason?: string;
  /** Bound UDP port and advertised endpoints. */
  port?: number;
  endpoints: string[];
  /** The Unix socket `fabric-agent mesh ping` talks to. */
  controlSocket?: string;
  snapshotSerial?: number;
  nodeClass?: string;
  bounds?: { min: number; max: number; warm: number };
  /** Candidates in the snapshot in force. */
  candidates: string[];
  /** The peer manager's active and warm sets after the last evaluation. */
  active: string[];
  warm: string[];
  peers: MeshPeerStatus[];
  evaluations: number;
  /** Hysteresis swaps this process applied (a peer replaced by a cheaper candidate); absent in files of older agents. */
  swaps?: number;
  /** Warm candidates measured by short-lived probes (their links are not in `peers`). */
  warmProbes?: Array<{ peer: string; rttMs: number; loss: number; at: string }>;
  /** The peer manager's cost of every candidate at the last evaluation (lower is better). */
  costs?: Record<string, number>;
  lastEvaluationAt?: string;
  counters?: { protocolErrors: number; refused: number; requestsServed: number };
  /** Relay advertisements held (live ones): which relay reaches which nodes. */
  relays?: Array<{ relay: string; reaches: string[] }>;
  /** Data streams served: accepted, refused, relayed (as relay) and the bytes relayed, both ways, counted as they pass (an open stream's too). */
  streams?: { accepted: number; refused: number; relayed: number; relayedBytes: number };
  updatedAt: string;
}

/** Atomically replaces the mesh status file. */
export async function writeMeshStatus(dir: string, s: MeshStatus): Promise<void> {
  await writeFileAtomic(dir, MESH_STATUS_FILE, Buffer.from(JSON.stringify(s, null, 2) + "\n"), { durable: false });
}

/** Reads the mesh status file; undefined when there is none. */
export async function readMeshStatus(dir: string): Promise<MeshStatus | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, MESH_STATUS_FILE), "utf8")) as MeshStatus;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new Error(`reading ${join(dir, MESH_STATUS_FILE)}`, { cause: err });
  }
}

function age(from: string, now: Date): string {
  const s = Math.max(0, Math.round((now.getTime() - Date.parse(from)) / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

/** Human-readable table for `fabric-agent mesh status`. */
export function formatMeshStatus(s: MeshStatus, now: Date): string {
  const head = `mesh ${s.cluster}/${s.node}: ${s.enabled ? "on" : "off"}${s.reason !== undefined ? ` (${s.reason})` : ""}`;
  if (!s.enabled) return head + "\n";
  const lines = [
    head,
    `  listening:   udp ${s.port ?? "?"}, advertised ${s.endpoints.length === 0 ? "none" : s.endpoints.join(", ")}`,
    `  class:       ${s.nodeClass ?? "?"}, active ${s.bounds?.min ?? "?"}-${s.bounds?.max ?? "?"} (warm ${s.bounds?.warm ?? "?"}), snapshot serial ${s.snapshotSerial ?? "?"}`,
    `  candidates:  ${s.candidates.length}; active set ${s.active.length === 0 ? "empty" : s.active.join(", ")}`,
    `  evaluated:   ${s.evaluations} times, last ${s.lastEvaluationAt === undefined ? "never" : `${age(s.lastEvaluationAt, now)} ago`}`,
  ];
  if (s.relays !== undefined) lines.push(`  relays:      ${s.relays.length === 0 ? "none advertised" : s.relays.map((r) => `${r.relay} (reaches ${r.reaches.length})`).join(", ")}`);
  if (s.streams !== undefined) lines.push(`  streams:     ${s.streams.accepted} accepted, ${s.streams.refused} refused, ${s.streams.relayed} relayed (${s.streams.relayedBytes} bytes)`);
  const rows = [["PEER", "STATE", "RTT", "LOSS", "PATH", "SINCE"]];
  for (const p of s.peers) {
    rows.push([
      p.peer,
      p.state + (p.direction !== undefined ? `(${p.direction === "inbound" ? "in" : "out"})` : p.failures !== undefined ? `(${p.failures})` : ""),
      p.rttMs === undefined ? "-" : `${p.rttMs.toFixed(2)}ms`,
      p.loss === undefined ? "-" : `${Math.round(p.loss * 100)}%`,
      p.path,
      age(p.since, now),
    ]);
  }
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length))) ?? [];
  for (const r of rows) lines.push("  " + r.map((c, i) => c.padEnd(widths[i] ?? 0)).join("  ").trimEnd());
  return lines.join("\n") + "\n";
}
