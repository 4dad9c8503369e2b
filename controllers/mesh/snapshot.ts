/**
 * The "mesh" snapshot contributor (lib/snapshot/contributors.ts): fills
 * payload.meshPeers (the node's bounded candidate set, plan.ts) and
 * payload.mesh (its class and active-set bounds) for Active nodes holding a
 * mesh role; everyone else gets no peers. Need-to-know: a peer entry holds
 * only what an agent needs to reach, authenticate and score that peer, and
 * only the peer's mesh roles.
 *
 * It also records each built node's candidate names in
 * mesh_candidate_sets, in the builder's transaction: that is the reverse
 * index through which an endpoint change re-signs exactly the snapshots
 * listing the node (lib/state/mesh.ts).
 *
 * The builder drains a cluster-wide mark in batches of 1,000 nodes, each its
 * own transaction, and every batch needs the whole cluster's directory.
 * Reading and preparing it (rings per region and zone) costs far more than
 * selecting 1,000 sets from it, so each contributor keeps the last prepared
 * directory per cluster keyed by the digest of what it read, and a batch
 * first asks PostgreSQL for the digest of the directory as it is now
 * (meshDirectoryDigest, one statement in the batch's transaction). Equal
 * digests mean equal directories, so a kept directory is used only when
 * re-reading would give the same one: a node removed, revoked or changed
 * since is never served from it.
 */
import type { SnapshotContributor } from "../../lib/snapshot/contributors.js";
import { meshDirectoryDigest, meshDirectoryOf, recordCandidateSets } from "../../lib/state/mesh.js";
import { candidatesFor, peerEntry, prepareDirectory, settingsFor, type PreparedDirectory } from "./plan.js";

/** How a contributor came by the directories of its batches (tests and benchmarks read it). */
export interface MeshDirectoryCacheStats {
  /** Batches served from a kept directory (its digest matched). */
  hits: number;
  /** Batches that read and prepared the directory. */
  reads: number;
}

/** A "mesh" contributor with its own directory cache (one per builder). */
export interface MeshContributor extends SnapshotContributor {
  readonly cache: MeshDirectoryCacheStats;
}

/** Fills payload.meshPeers and payload.mesh; see the module comment. */
export function createMeshContributor(): MeshContributor {
  const kept = new Map<string, { digest: string; prepared: PreparedDirectory }>();
  const stats: MeshDirectoryCacheStats = { hits: 0, reads: 0 };
  const directoryFor = async (db: Parameters<SnapshotContributor["contribute"]>[0], cluster: string): Promise<PreparedDirectory> => {
    const k = kept.get(cluster);
    if (k !== undefined && k.digest === (await meshDirectoryDigest(db, cluster))) {
      stats.hits++;
      return k.prepared;
    }
    kept.delete(cluster);
    const dir = await meshDirectoryOf(db, cluster);
    const prepared = prepareDirectory(dir);
    // Keyed by the digest of the rows this read returned, not of an earlier look.
    kept.set(cluster, { digest: dir.digest, prepared });
    stats.reads++;
    return prepared;
  };
  const contributor: MeshContributor = {
    name: "mesh",
    cache: stats,
    async contribute(db, ref, payload) {
      await contributor.contributeMany?.(db, ref.cluster, [ref], new Map([[ref.node, payload]]));
    },
    async contributeMany(db, cluster, refs, payloads) {
      const d = await directoryFor(db, cluster);
      const sets = new Map<string, string[]>();
      for (const ref of refs) {
        const p = payloads.get(ref.node);
        if (p === undefined) continue;
        const names = ref.membership === "Active" ? candidatesFor(d, ref.node) : [];
        sets.set(ref.node, names);
        p.meshPeers = names.flatMap((n) => {
          const m = d.members.get(n);
          return m === undefined ? [] : [peerEntry(cluster, m)];
        });
        const settings = ref.membership === "Active" ? settingsFor(d, ref.node) : undefined;
        if (settings !== undefined) p.mesh = settings;
        else delete p.mesh;
      }
      await recordCandidateSets(db, cluster, sets);
    },
  };
  return contributor;
}
