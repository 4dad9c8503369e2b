/**
 * Registers the mesh peer directory (docs/mesh.md): a controller projecting
 * the FabricNode facts the directory needs (reconciler.ts), the directory
 * sweep that marks nodes whose candidate set went out of date (sweep.ts),
 * and the "mesh" snapshot contributor (snapshot.ts). Endpoint reports reach
 * the directory through the agent API's heartbeats (lib/state/mesh.ts).
 */
import { RESOURCES } from "../../lib/api/types.generated.js";
import type { FabricKind } from "../kind.js";
import type { FabricNodeObject as FabricNode } from "../objects.js";
import { Controller, jsonEqual } from "../runtime/index.js";
import { MeshNodeReconciler, meshFactsOf } from "./reconciler.js";
import { MeshSetsCache } from "./sets-cache.js";
import { createMeshContributor } from "./snapshot.js";
import { MeshDirectorySweep } from "./sweep.js";

/** See the module comment. */
export const meshKind: FabricKind = {
  kind: "MeshNode",
  setup(mgr, d) {
    const informer = mgr.informerFor<FabricNode>(RESOURCES.FabricNode, "FabricNode");
    // One computation of a cluster's sets per directory change, shared by the sweep and the contributor.
    const sets = new MeshSetsCache();
    const sweep = new MeshDirectorySweep({ pool: d.pool, isLeader: () => mgr.isLeader(), log: d.log.with({ component: "mesh-sweep" }), sets });
    mgr.add(
      new Controller<FabricNode>({
        name: "mesh",
        kind: "MeshNode",
        informer,
        reconciler: new MeshNodeReconciler({ informer, pool: d.pool, onChange: (cluster) => sweep.touch(cluster) }),
        primaryUpdateFilter: (a, b) => !jsonEqual(meshFactsOf(a), meshFactsOf(b)),
        workers: 2,
        registry: d.registry,
        log: d.log.with({ controller: "mesh" }),
      }),
    );
    mgr.addRunnable("mesh directory sweep", (signal) => sweep.run(signal));
    return { snapshotContributors: [createMeshContributor(sets)] };
  },
};
