/**
 * When the mesh loop sends its link table to the control plane. A change of
 * shape (links up or down, states, directions, paths, endpoints, the active
 * set, a reason) goes out at the evaluation that sees it: FabricNode and
 * FabricCluster status (active peers, nodes below their minimum, partition)
 * read it. A change of figures only (RTT, jitter, loss move a little at
 * every evaluation) goes out at most once per FIGURES_REPORT_MS, so an idle
 * agent does not post its table every 10 s for noise. The local
 * mesh-status.json is written at every evaluation regardless.
 */
import type { MeshPeerStatus } from "./mesh-status.js";

/** Fewest ms between two reports that differ only in figures. */
export const FIGURES_REPORT_MS = 60_000;

/** The report body the control plane receives (kind `mesh`). */
export interface MeshReportBody {
  enabled: boolean;
  reason?: string;
  endpoints: string[];
  active: string[];
  peers: MeshPeerStatus[];
}

/** The last report sent: its full text, its text without figures, and when. */
export interface SentReport {
  json: string;
  shape: string;
  atMs: number;
}

/** A report's full text and its text without the figures that move at every evaluation. */
export function reportOf(body: MeshReportBody): Omit<SentReport, "atMs"> {
  return {
    json: JSON.stringify(body),
    shape: JSON.stringify({ ...body, peers: body.peers.map(({ rttMs: _r, jitterMs: _j, loss: _l, ...rest }) => rest) }),
  };
}

/** Whether the report `next` must be sent now, given the last report sent (undefined: none yet). */
export function reportDue(next: Omit<SentReport, "atMs">, last: SentReport | undefined, nowMs: number): boolean {
  if (last === undefined) return true;
  if (next.json === last.json) return false;
  if (next.shape !== last.shape) return true;
  return nowMs - last.atMs >= FIGURES_REPORT_MS;
}
