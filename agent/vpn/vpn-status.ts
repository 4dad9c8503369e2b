/**
 * The VPN status file, one per membership (`<membership dir>/vpn-status.json`),
 * written by the running agent's VPN owner on every change and every few
 * seconds, read by `fabric-agent vpn status`. A report, never an input.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../state/atomic-file.js";
import type { VpnConnectionStatus } from "./types.js";

/** File name inside the membership directory. */
export const VPN_STATUS_FILE = "vpn-status.json";

/** One connection row with its local interface name. */
export interface VpnStatusRow extends VpnConnectionStatus {
  interface: string;
  mode: string;
  preference: number;
}

/** What vpn-status.json holds. */
export interface VpnStatusFile {
  formatVersion: 1;
  cluster: string;
  node: string;
  pid: number;
  dataPlane: { ok: boolean; reason?: string };
  connections: VpnStatusRow[];
  /** Assignments of the snapshot that were unusable, with reasons. */
  invalid: { connection?: string; invalid: string }[];
  updatedAt: string;
}

/** Atomically replaces the status file. */
export async function writeVpnStatus(dir: string, s: VpnStatusFile): Promise<void> {
  await writeFileAtomic(dir, VPN_STATUS_FILE, Buffer.from(JSON.stringify(s, null, 2) + "\n"));
}

/** Reads the status file; undefined when there is none. */
export async function readVpnStatus(dir: string): Promise<VpnStatusFile | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, VPN_STATUS_FILE), "utf8")) as VpnStatusFile;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new Error(`reading ${join(dir, VPN_STATUS_FILE)}`, { cause: err });
  }
}

/** The table `fabric-agent vpn status` prints. */
export function formatVpnStatus(s: VpnStatusFile, now: Date): string {
  const age = Math.max(0, Math.round((now.getTime() - Date.parse(s.updatedAt)) / 1000));
  const lines = [`vpn ${s.cluster}/${s.node} (agent pid ${s.pid}, updated ${age}s ago)`];
  if (!s.dataPlane.ok) lines.push(`  data plane: ${s.dataPlane.reason ?? "unavailable"}`);
  if (s.connections.length === 0) lines.push("  no VPN assignments in the snapshot in force");
  else {
    const rows = [["CONNECTION", "STATE", "TOKEN", "TUNNEL", "INTERFACE", "DEADLINE", "PREF", "REASON"]];
    for (const c of s.connections) rows.push([c.connection, c.state, c.token === undefined ? "-" : String(c.token), c.tunnel ?? "down", c.interface, c.deadlineInMs === undefined ? "-" : `${(c.deadlineInMs / 1000).toFixed(1)}s`, String(c.preference), c.reason ?? ""]);
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
    for (const r of rows) lines.push("  " + r.map((v, i) => (i === r.length - 1 ? v : v.padEnd(widths[i] ?? 0))).join("  ").trimEnd());
  }
  for (const i of s.invalid) lines.push(`  ignored assignment ${i.connection ?? "(unnamed)"}: ${i.invalid}`);
  return lines.join("\n") + "\n";
}
