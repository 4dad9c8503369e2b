/**
 * The "mesh" snapshot contributor (lib/snapshot/contributors.ts): fills
 * payload.meshPeers (the node's bounded candidate set, plan.ts) and
 * payload.mesh (its class and active-set bounds) for Active nodes holding a
 * mesh role; everyone else gets no peers. Need-to-know: a peer entry holds
 * only what an agent needs to reach, authenticate and score that peer, and
 * only the peer's mesh roles.
 *
 * Members also get payload.meshInbound: the members whose set lists the
 * node while its own set does not list them, with their certificate pins,
 * so that a link is authorised on both ends whichever side's set holds it.
 * Every set of the cluster is computed once per directory (meshSetsOf, the
 * same O(N*k log n) as the full build) and kept while what decides sets is
 * unchanged (sets-cache.ts, shared with the directory sweep): an endpoint
 * change re-reads the directory but keeps the sets.
 *
 * It also records each built node's candidate names in
 * mesh_candidate_sets, in the builder's transaction: that is the reverse
 * index through which an endpoint change re-signs exactly the snapshots
 * listing the node (lib/state/mesh.ts).
 *
 * The builder drains marks in batches of 1,000 nodes (a cluster-wide mark
 * over more nodes is split into per-node marks), each its own transaction,
 * and every batch needs the whole
 * cluster's directory. Reading and preparing it (rings per region and zone)
 * costs far more than selecting 1,000 sets from it, so each contributor
 * keeps the last prepared directory per cluster with the directory version
 * it was read at (lib/state/mesh.ts), and a batch first reads the version as
 * it is now (one row, in the batch's transaction). Writers bump the version
 * at commit, so an equal version means no committed change since the read:
 * a node removed, revoked or changed since is never served from a kept
 * directory.
 */
import type { SnapshotContributor } from "../../lib/snapshot/contributors.js";
import type { SnapshotMeshInbound, SnapshotMeshPeer } from "../../lib/snapshot/format.js";
import { meshDirectoryOf, meshDirectoryVersion, recordCandidateSets } from "../../lib/state/mesh.js";
import { inboundEntry, peerEntry, prepareDirectory, settingsFor, type MeshSets, type PreparedDirectory } from "./plan.js";
import { MeshSetsCache } from "./sets-cache.js";
import { setsDigest } from "./sweep.js";

/** How a contributor came by the directories of its batches (tests and benchmarks read it). */
export interface MeshDirectoryCacheStats {
  /** Batches served from a kept directory (the version had not moved). */
  hits: number;
  /** Batches that read and prepared the directory. */
  reads: number;
}

/** A "mesh" contributor with its own directory cache (one per builder). */
export interface MeshContributor extends SnapshotContributor {
  readonly cache: MeshDirectoryCacheStats;
}

/**
 * A kept directory with the entries built from it so far. An entry is built
 * once per directory, deep-frozen and shared by every payload listing that
 * member: its canonical text is then written once, not once per lister
 * (lib/snapshot/canonical-json.ts).
 */
interface Kept {
  version: string;
  prepared: PreparedDirectory;
  sets: MeshSets;
  peers: Map<string, SnapshotMeshPeer>;
  inbound: Map<string, SnapshotMeshInbound>;
}

function deepFreeze<T extends object>(v: T): T {
  for (const x of Object.values(v)) if (typeof x === "object" && x !== null) deepFreeze(x as object);
  return Object.freeze(v);
}

function shared<T extends object>(entries: Map<string, T>, node: string, build: () => T): T {
  let e = entries.get(node);
  if (e === undefined) entries.set(node, (e = deepFreeze(build())));
  return e;
}

/** Fills payload.meshPeers and payload.mesh; see the module comment. */
export function createMeshContributor(setsCache = new MeshSetsCache()): MeshContributor {
  const kept = new Map<string, Kept>();
  const stats: MeshDirectoryCacheStats = { hits: 0, reads: 0 };
  const directoryFor = async (db: Parameters<SnapshotContributor["contribute"]>[0], cluster: string): Promise<Kept> => {
    const k = kept.get(cluster);
    if (k !== undefined && k.version === (await meshDirectoryVersion(db))) {
      stats.hits++;
      return k;
    }
    kept.delete(cluster);
    const dir = await meshDirectoryOf(db, cluster);
    const prepared = prepareDirectory(dir);
    // Sets depend on what decides them, not on endpoint values or pins: an endpoint change or a renewal keeps them.
    const sets = setsCache.get(cluster, setsDigest(dir), () => prepared);
    // Keyed by the version this read saw, not by an earlier look.
    const entry: Kept = { version: dir.version, prepared, sets, peers: new Map(), inbound: new Map() };
    kept.set(cluster, entry);
    stats.reads++;
    return entry;
  };
  const contributor: MeshContributor = {
    name: "mesh",
    cache: stats,
    async contribute(db, ref, payload) {
      await contributor.contributeMany?.(db, ref.cluster, [ref], new Map([[ref.node, payload]]));
    },
    async contributeMany(db, cluster, refs, payloads) {
      const k = await directoryFor(db, cluster);
      const { prepared: d, sets: all } = k;
      const sets = new Map<string, string[]>();
      for (const ref of refs) {
        const p = payloads.get(ref.node);
        if (p === undefined) continue;
        const active = ref.membership === "Active";
        const names = active ? (all.sets.get(ref.node) ?? []) : [];
        sets.set(ref.node, names);
        p.meshPeers = names.flatMap((n) => {
          const m = d.members.get(n);
          return m === undefined ? [] : [shared(k.peers, n, () => peerEntry(cluster, m))];
        });
        const settings = active ? settingsFor(d, ref.node) : undefined;
        if (settings !== undefined) {
          p.mesh = settings;
          p.meshInbound = (all.inbound.get(ref.node) ?? []).flatMap((n) => {
            const m = d.members.get(n);
            return m === undefined ? [] : [shared(k.inbound, n, () => inboundEntry(m))];
          });
        } else {
          delete p.mesh;
          delete p.meshInbound;
        }
      }
      await recordCandidateSets(db, cluster, sets);
    },
  };
  return contributor;
}
