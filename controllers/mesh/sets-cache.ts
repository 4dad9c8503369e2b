/**
 * Every candidate set and inbound list of a cluster (plan.ts meshSetsOf),
 * kept per cluster under the digest of what decides them (sweep.ts
 * setsDigest: policy and member entries, not endpoint values nor pins). The
 * directory sweep and the snapshot contributor of one process share it, so
 * a directory change costs one O(N*k log n) computation, not one each.
 */
import { meshSetsOf, type MeshSets, type PreparedDirectory } from "./plan.js";

/** See the module comment. */
export class MeshSetsCache {
  private readonly kept = new Map<string, { key: string; sets: MeshSets }>();

  /** The sets of `cluster` for directory digest `key`, computed from `prepared()` when not kept. */
  get(cluster: string, key: string, prepared: () => PreparedDirectory): MeshSets {
    const k = this.kept.get(cluster);
    if (k !== undefined && k.key === key) return k.sets;
    const sets = meshSetsOf(prepared());
    this.kept.set(cluster, { key, sets });
    return sets;
  }
}
