/**
 * Pure decisions of the snapshot builder: whether a node's snapshot must be
 * re-signed, under which serial, and for how long it is valid.
 */
import type { StoredSnapshotMeta } from "../../lib/state/snapshots.js";
import { parseDuration } from "../../lib/enrollment/token.js";

/** Default snapshot lifetime when FabricCluster.spec.snapshotLifetime is unset. */
export const DEFAULT_SNAPSHOT_LIFETIME_MS = 24 * 3_600_000;
/** Shortest lifetime accepted (a lifetime shorter than the re-issue loop would flap). */
export const MIN_SNAPSHOT_LIFETIME_MS = 10_000;
/**
 * Longest lifetime accepted (30 days). The schema's duration pattern allows
 * values past what a Date can hold ("2400000000h"); without a ceiling one
 * typo would stop snapshot building for the cluster.
 */
export const MAX_SNAPSHOT_LIFETIME_MS = 30 * 24 * 3_600_000;

/** Why a snapshot is (re)issued, or "unchanged" when the stored one stands. */
export type BuildDecision = "new" | "changed" | "refresh" | "unchanged";

/**
 * Same payload and not yet past half its lifetime: the stored snapshot
 * stands (same input, same bytes, no new serial). A changed payload is
 * re-signed; an unchanged one past half its lifetime is re-issued so that
 * agents never hold an expired snapshot while the control plane is up.
 */
export function decide(stored: StoredSnapshotMeta | undefined, payloadHash: string, now: Date): BuildDecision {
  if (stored === undefined) return "new";
  if (stored.payloadHash !== payloadHash) return "changed";
  const half = stored.issuedAt.getTime() + (stored.expiresAt.getTime() - stored.issuedAt.getTime()) / 2;
  if (now.getTime() >= half) return "refresh";
  return "unchanged";
}

/** The next serial: above the stored one and above any serial ever issued to this node name. */
export function nextSerial(stored: StoredSnapshotMeta | undefined, highestEver: number | undefined): number {
  return Math.max(stored?.serial ?? 0, highestEver ?? 0) + 1;
}

/** Snapshot lifetime of a cluster from its spec (default 24 h, at least 10 s, at most 30 days). */
export function lifetimeOf(spec: Record<string, unknown>): number {
  const v = spec.snapshotLifetime;
  if (typeof v !== "string") return DEFAULT_SNAPSHOT_LIFETIME_MS;
  try {
    const ms = parseDuration(v);
    if (!Number.isFinite(ms)) return MAX_SNAPSHOT_LIFETIME_MS;
    return Math.min(MAX_SNAPSHOT_LIFETIME_MS, Math.max(MIN_SNAPSHOT_LIFETIME_MS, ms));
  } catch {
    return DEFAULT_SNAPSHOT_LIFETIME_MS;
  }
}
