/**
 * The directory sweep (leader only): keeps every node's candidate set level
 * with the directory. Joins, leaves, role grants and revocations, membership,
 * class, label and relay-capability changes all change which candidates some
 * nodes should hold; rather than teach each of those writers about the mesh,
 * the sweep recomputes the cluster's sets (plan.ts, O(N*k log n)) when the
 * cluster's directory changed since its last pass, compares them with the
 * sets last put in snapshots (mesh_candidate_sets) and marks dirty only the
 * nodes whose set differs. Endpoint changes need no sweep: the heartbeat
 * path marks the listing snapshots directly (lib/state/mesh.ts).
 */
import { createHash } from "node:crypto";
import type pg from "pg";
import type { Logger } from "../../lib/log.js";
import { candidateSetsOf, markMeshNodesDirty, meshClusterNames, meshDirectoryOf, type MeshDirectory } from "../../lib/state/mesh.js";
import { allCandidateSets, isCandidate, isRelay, prepareDirectory, staleSets } from "./plan.js";

/** What decides candidate sets (endpoint values and load do not). */
export function directoryDigest(d: MeshDirectory): string {
  const h = createHash("sha256").update(JSON.stringify(d.policy));
  for (const m of d.members) h.update(`${m.node}|${m.nodeClass}|${m.region}|${m.zone}|${m.roles.join(",")}|${isCandidate(m) ? 1 : 0}|${isRelay(m) ? 1 : 0}\n`);
  return h.digest("hex");
}

/** See the module comment. */
export class MeshDirectorySweep {
  private readonly seen = new Map<string, string>();

  constructor(private readonly d: { pool: pg.Pool; isLeader: () => boolean; log: Logger; intervalMs?: number }) {}

  /** Forgets a cluster's digest so its next pass recomputes. */
  touch(cluster: string): void {
    this.seen.delete(cluster);
  }

  /** One pass over every cluster; resolves with the nodes marked dirty. */
  async once(): Promise<number> {
    let marked = 0;
    for (const cluster of await meshClusterNames(this.d.pool)) {
      const dir = await meshDirectoryOf(this.d.pool, cluster);
      const digest = directoryDigest(dir);
      if (this.seen.get(cluster) === digest) continue;
      const stale = staleSets(allCandidateSets(prepareDirectory(dir)), await candidateSetsOf(this.d.pool, cluster));
      await markMeshNodesDirty(this.d.pool, cluster, stale);
      marked += stale.length;
      this.seen.set(cluster, digest);
    }
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
          this.d.log.warn("mesh directory sweep failed", { error: (err as Error).message });
        }
      } else this.seen.clear();
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
