/**
 * The directory sweep (leader only): keeps every node's candidate set level
 * with the directory. Joins, leaves, role grants and revocations, membership,
 * class, label and relay-capability changes all change which candidates some
 * nodes should hold; rather than teach each of those writers about the mesh,
 * the sweep recomputes the cluster's sets (plan.ts, O(N*k log n)) when the
 * cluster's directory changed since its last pass, compares them with the
 * sets last put in snapshots (mesh_candidate_sets) and marks dirty only the
 * nodes whose set differs, and the nodes entering or leaving some set (their
 * inbound entries change). A peer entry also shows the listed node's region,
 * zone, class, roles, relay capability and certificate pin, so a change of
 * those re-marks the nodes whose stored set lists it, and the nodes its own
 * set lists (they hold its pin as an inbound entry), even when no set
 * changes (compared with the previous pass; a change made while no sweep
 * ran, e.g. across a leader change, waits for the builder's half-lifetime
 * refresh). Endpoint changes need no sweep: the heartbeat path marks the
 * listing snapshots directly (lib/state/mesh.ts).
 *
 * A pass first reads the directory version (one row, bumped at commit by
 * every write that changes what the directory read returns, migrations/025)
 * and reads no directory when it has not moved since the last complete
 * pass: at 100,000 members a read costs seconds of PostgreSQL and process
 * CPU, and the pass runs every 2 s.
 */
import { createHash } from "node:crypto";
import type pg from "pg";
import type { Logger } from "../../lib/log.js";
import { candidateSetsOf, markMeshNodesDirty, meshClusterNames, meshDirectoryOf, meshDirectoryVersion, type MeshDirectory, type MeshMemberRow } from "../../lib/state/mesh.js";
import { allCandidateSets, inboundChanges, isCandidate, isRelay, prepareDirectory, staleSets } from "./plan.js";
import type { MeshSetsCache } from "./sets-cache.js";

/** What a member's peer entry shows besides its endpoints (the heartbeat path re-marks on those). */
export function entryKey(m: MeshMemberRow): string {
  return `${m.node}|${m.nodeClass}|${m.region}|${m.zone}|${m.roles.join(",")}|${isCandidate(m) ? 1 : 0}|${isRelay(m) ? 1 : 0}|${m.reachable ? 1 : 0}|${m.publicKeyFingerprint}`;
}

/** What decides candidate sets and the entries in them (endpoint values and load do not). */
export function directoryDigest(d: MeshDirectory): string {
  const h = createHash("sha256").update(JSON.stringify(d.policy));
  for (const m of d.members) h.update(`${entryKey(m)}\n`);
  return h.digest("hex");
}

/**
 * What decides the candidate sets alone (the entries without endpoints and
 * pins): a renewal or an endpoint change keeps the sets computed for it.
 */
export function setsDigest(d: MeshDirectory): string {
  const h = createHash("sha256").update(JSON.stringify(d.policy));
  for (const m of d.members) h.update(`${m.node}|${m.nodeClass}|${m.region}|${m.zone}|${m.roles.join(",")}|${isCandidate(m) ? 1 : 0}|${isRelay(m) ? 1 : 0}\n`);
  return h.digest("hex");
}

/** Members whose entry changed (or left) since `previous`; none when there is no previous pass. */
export function changedEntries(previous: ReadonlyMap<string, string> | undefined, d: MeshDirectory): Set<string> {
  const out = new Set<string>();
  if (previous === undefined) return out;
  const now = new Map(d.members.map((m) => [m.node, entryKey(m)]));
  for (const [node, key] of now) if (previous.get(node) !== key) out.add(node);
  for (const node of previous.keys()) if (!now.has(node)) out.add(node);
  return out;
}

/** See the module comment. */
export class MeshDirectorySweep {
  private readonly seen = new Map<string, string>();
  private readonly entries = new Map<string, Map<string, string>>();
  /** Directory version at the start of the last complete pass (undefined: none yet, or forgotten). */
  private version: string | undefined;

  constructor(private readonly d: { pool: pg.Pool; isLeader: () => boolean; log: Logger; intervalMs?: number; sets?: MeshSetsCache }) {}

  /** Forgets a cluster's digest so its next pass recomputes. */
  touch(cluster: string): void {
    this.seen.delete(cluster);
    this.version = undefined;
  }

  /** One pass over every cluster; resolves with the nodes marked dirty. */
  async once(): Promise<number> {
    let marked = 0;
    // Read before the directories: a change committed during the pass moves it past this value.
    const version = await meshDirectoryVersion(this.d.pool);
    if (version === this.version) return 0;
    for (const cluster of await meshClusterNames(this.d.pool)) {
      const dir = await meshDirectoryOf(this.d.pool, cluster);
      const digest = directoryDigest(dir);
      if (this.seen.get(cluster) === digest) continue;
      const stored = await candidateSetsOf(this.d.pool, cluster);
      const wanted = this.d.sets !== undefined ? this.d.sets.get(cluster, setsDigest(dir), () => prepareDirectory(dir)).sets : allCandidateSets(prepareDirectory(dir));
      const stale = new Set(staleSets(wanted, stored));
      // Inbound entries: a node added to or dropped from a set gains or loses a lister.
      for (const node of inboundChanges(stored, wanted)) stale.add(node);
      const changed = changedEntries(this.entries.get(cluster), dir);
      if (changed.size > 0) {
        for (const [node, set] of stored) {
          // Its set lists a changed member (outbound entry), or a changed member lists it (inbound entry, with the pin).
          if (set.some((n) => changed.has(n))) stale.add(node);
          if (changed.has(node)) for (const n of set) stale.add(n);
        }
      }
      await markMeshNodesDirty(this.d.pool, cluster, [...stale]);
      marked += stale.size;
      this.seen.set(cluster, digest);
      this.entries.set(cluster, new Map(dir.members.map((m) => [m.node, entryKey(m)])));
    }
    this.version = version;
    return marked;
  }

  /** Runs until signal aborts, a pass every intervalMs (default 2 s) while leading. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      if (this.d.isLeader()) {
        try {
          const marked = await this.once();
          if (marked > 0) this.d.log.info("mesh candidate sets out of date", { marked });
        } catch (err) {
          this.seen.clear();
          this.entries.clear();
          this.version = undefined;
          this.d.log.warn("mesh directory sweep failed", { error: (err as Error).message });
        }
      } else {
        this.seen.clear();
        this.entries.clear();
        this.version = undefined;
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, this.d.intervalMs ?? 2000);
        function done(): void {
          clearTimeout(t);
          signal.removeEventListener("abort", done);
          resolve();
        }
        signal.addEventListener("abort", done, { once: true });
      });
    }
  }
}
