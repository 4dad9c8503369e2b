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
 */
import type { SnapshotContributor } from "../../lib/snapshot/contributors.js";
import { meshDirectoryOf, recordCandidateSets } from "../../lib/state/mesh.js";
import { candidatesFor, peerEntry, prepareDirectory, settingsFor } from "./plan.js";

/** Fills payload.meshPeers and payload.mesh. */
export const meshContributor: SnapshotContributor = {
  name: "mesh",
  async contribute(db, ref, payload) {
    await this.contributeMany?.(db, ref.cluster, [ref], new Map([[ref.node, payload]]));
  },
  async contributeMany(db, cluster, refs, payloads) {
    const d = prepareDirectory(await meshDirectoryOf(db, cluster));
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
