/**
 * Projects the FabricNode facts the mesh directory needs (node class and the
 * failure-domain labels) into mesh_node_facts, and forgets a deleted node.
 * The directory sweep (sweep.ts) turns any resulting change of candidate sets
 * into dirty marks; this reconciler writes no status.
 */
import type { FabricNodeObject as FabricNode } from "../objects.js";
import type { Informer, ObjectKey, Reconciler } from "../runtime/index.js";
import { deleteMeshNode, writeMeshNodeFacts, type MeshNodeFacts } from "../../lib/state/mesh.js";
import type pg from "pg";

/** Label naming a node's region (Kubernetes' well-known topology label). */
export const REGION_LABEL = "topology.kubernetes.io/region";
/** Label naming a node's zone. */
export const ZONE_LABEL = "topology.kubernetes.io/zone";

/** The facts of a FabricNode as the directory stores them. */
export function meshFactsOf(n: FabricNode): MeshNodeFacts | undefined {
  const name = n.metadata.name;
  if (name === undefined) return undefined;
  const labels = n.metadata.labels ?? {};
  const cls = n.spec.nodeClass ?? "Standard";
  return {
    node: name,
    cluster: n.spec.cluster,
    nodeClass: cls === "Thin" ? "thin" : cls === "Relay" ? "relay" : "standard",
    region: labels[REGION_LABEL] ?? "",
    zone: labels[ZONE_LABEL] ?? "",
  };
}

/** See the module comment. */
export class MeshNodeReconciler implements Reconciler {
  constructor(private readonly d: { informer: Informer<FabricNode>; pool: pg.Pool; onChange: (cluster: string) => void }) {}

  async reconcile(key: ObjectKey): Promise<void> {
    const n = this.d.informer.get(key);
    if (n === undefined) {
      await deleteMeshNode(this.d.pool, key.name);
      return;
    }
    const facts = meshFactsOf(n);
    if (facts !== undefined && (await writeMeshNodeFacts(this.d.pool, facts))) this.d.onChange(facts.cluster);
  }
}
