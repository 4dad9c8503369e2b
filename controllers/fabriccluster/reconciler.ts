/**
 * FabricClusterReconciler: projects a FabricCluster into PostgreSQL, creates
 * its certificate authority and snapshot signing key on first sight (private
 * halves sealed under the KEK in cluster_keys, never in the CR), and
 * publishes fingerprints, the authority term and Ready. A cluster that no
 * longer exists has its rows and keys deleted.
 *
 * It is the only writer of FabricCluster status: roleCoverage (per role held
 * in the cluster, its holders and how many of them are healthy; a role with
 * ready 0 has no healthy node) is read from the grants in PostgreSQL on
 * every reconcile. The RoleAssignment controller wakes this one after it
 * changed grants, and now and then, since certificates expire and
 * memberships change without an event here. nodeCounts is counted from the
 * FabricNode cache; FabricNode changes that move a count wake the cluster
 * (setup.ts). mesh (members below their minimum, connectivity of the
 * reported active graph, mesh.ts) is computed from the agents' mesh reports
 * in PostgreSQL, with the MeshPartitioned condition and an event when it
 * turns True; a change of a node's status.mesh wakes the cluster. That read
 * covers every member, and in a large fleet node status changes arrive
 * without pause, so it is made at most once per meshReadIntervalMs per
 * cluster: a wake inside that window keeps status.mesh as it is and asks
 * for a reconcile at the window's end, which reads the reports then.
 */
import type { CustomObjectsApi } from "@kubernetes/client-node";
import { RESOURCES } from "../../lib/api/types.generated.js";
import type { FabricClusterObject as FabricCluster, FabricNodeObject as FabricNode } from "../objects.js";
import { generateClusterKeys } from "../../lib/crypto/cluster-keys.js";
import { seal, type Kek } from "../../lib/crypto/kek.js";
import { ClusterStore, clusterKeyAad, type ClusterKeyRow, type ClusterRow, type RoleStore } from "../../lib/state/index.js";
import { FencedError, TerminalError, patchStatusIfChanged, removeCondition, setCondition, type Condition, realClock, recordAll, type Clock, type EventRecorderLike, type Informer, type ObjectKey, type ReconcileContext, type ReconcileResult, type Reconciler } from "../runtime/index.js";
import { DEFAULT_NODE_GRACE_PERIOD_MS } from "../../lib/state/heartbeats.js";
import type { MeshPeerPolicy, MeshReportFacts } from "../../lib/state/mesh.js";
import { keysCreatedEvent, meshPartitionEvents } from "./events.js";
import { clusterMeshStatus, meshPartitionedCondition } from "./mesh.js";
import { desiredClusterStatus, desiredNodeCounts, desiredRoleCoverage, planClusterRow } from "./plan.js";

/** Dependencies of FabricClusterReconciler. */
export interface FabricClusterReconcilerDeps {
  informer: Informer<FabricCluster>;
  clusters: ClusterStore;
  /** Role grants; without it status.roleCoverage is carried over as it is. */
  roles?: Pick<RoleStore, "coverage">;
  /** FabricNode cache; without it status.nodeCounts is carried over as it is. */
  nodes?: Informer<FabricNode>;
  kek: Kek;
  api: CustomObjectsApi;
  /** The held authority term (undefined: not leading, nothing is written). */
  term: () => number | undefined;
  identity: string;
  clock?: Clock;
  /** Kubernetes Events (keys created, mesh partitioned and connected again). */
  events?: EventRecorderLike;
  /** Mesh members and their agents' mesh reports (lib/state/mesh.ts meshReportsOf); without it status.mesh is carried over as it is. */
  meshReports?: (cluster: string) => Promise<{ policy: MeshPeerPolicy; members: MeshReportFacts[] }>;
  /** How long after its last heartbeat an agent's mesh report counts (default DEFAULT_NODE_GRACE_PERIOD_MS). */
  graceMs?: number;
  /** Shortest time between two reads of one cluster's mesh reports (default {@link MESH_READ_INTERVAL_MS}). */
  meshReadIntervalMs?: number;
}

/** Default shortest time between two reads of one cluster's mesh reports. */
export const MESH_READ_INTERVAL_MS = 2000;

const res = RESOURCES.FabricCluster;

/** See the module comment. */
export class FabricClusterReconciler implements Reconciler {
  /** When each cluster's mesh reports were last read (clock ms). */
  private readonly meshReadAt = new Map<string, number>();

  constructor(private readonly d: FabricClusterReconcilerDeps) {}

  async reconcile(key: ObjectKey, ctx: ReconcileContext): Promise<ReconcileResult | void> {
    const obj = this.d.informer.get(key);
    if (obj === undefined) {
      this.meshReadAt.delete(key.name);
      if (await this.d.clusters.delete(key.name)) ctx.log.info("cluster rows and keys deleted", { cluster: key.name });
      return;
    }
    const uid = obj.metadata.uid;
    if (uid === undefined || uid === "") throw new TerminalError(`FabricCluster ${key.name} has no metadata.uid`);
    const generation = obj.metadata.generation ?? 0;
    let row = await this.d.clusters.get(key.name);
    const action = planClusterRow({ uid, generation, spec: obj.spec }, row);
    switch (action.kind) {
      case "create":
      case "replace": {
        const created = this.createKeys(key.name, uid, generation, obj.spec as unknown as Record<string, unknown>);
        await this.d.clusters.create(created.row, created.keys, action.kind === "replace" ? action.oldUid : undefined);
        ctx.log.info("cluster keys created", { cluster: key.name, caFingerprint: created.row.caFingerprint, snapshotKeyId: created.row.snapshotKeyId });
        recordAll(this.d.events, obj, [keysCreatedEvent(action.kind === "replace", created.row.caFingerprint, created.row.snapshotKeyId)]);
        row = created.row;
        break;
      }
      case "updateSpec":
        await this.d.clusters.updateSpec(key.name, uid, generation, obj.spec as unknown as Record<string, unknown>);
        if (row !== undefined) row = { ...row, generation, spec: obj.spec as unknown as Record<string, unknown> };
        break;
      case "none":
        break;
    }
    if (row === undefined) throw new Error("cluster row missing after reconcile");
    const term = this.d.term();
    if (term === undefined) throw new FencedError("fenced: no authority term held while writing status", undefined, undefined);
    const status = desiredClusterStatus(obj, row, { term, holder: this.d.identity }, new Date((this.d.clock ?? realClock).now()));
    if (this.d.roles !== undefined) status.roleCoverage = desiredRoleCoverage(await this.d.roles.coverage(key.name));
    if (this.d.nodes !== undefined) status.nodeCounts = desiredNodeCounts(this.d.nodes.list().filter((n) => n.spec.cluster === key.name));
    let result: ReconcileResult | undefined;
    const nowMs = (this.d.clock ?? realClock).now();
    const lastRead = this.meshReadAt.get(key.name);
    const every = this.d.meshReadIntervalMs ?? MESH_READ_INTERVAL_MS;
    if (this.d.meshReports !== undefined && lastRead !== undefined && nowMs - lastRead < every) {
      // Read recently: status.mesh stays as it is until the window ends.
      result = { requeueAfterMs: every - (nowMs - lastRead) };
    } else if (this.d.meshReports !== undefined) {
      this.meshReadAt.set(key.name, nowMs);
      const r = await this.d.meshReports(key.name);
      const mesh = clusterMeshStatus(r.members, r.policy, new Date((this.d.clock ?? realClock).now()), this.d.graceMs ?? DEFAULT_NODE_GRACE_PERIOD_MS);
      const before = (obj.status?.conditions as Condition[] | undefined)?.find((c) => c.type === "MeshPartitioned");
      const cond = meshPartitionedCondition(mesh, generation);
      if (mesh === undefined) delete status.mesh;
      else status.mesh = mesh;
      status.conditions = cond === undefined ? removeCondition(status.conditions as Condition[] | undefined, "MeshPartitioned") : setCondition(status.conditions as Condition[] | undefined, cond, new Date((this.d.clock ?? realClock).now()));
      const events = meshPartitionEvents(before?.status, cond);
      if (events.length > 0) {
        ctx.log.info("mesh partition state changed", { cluster: key.name, from: before?.status, to: cond?.status, components: mesh?.components });
        recordAll(this.d.events, obj, events);
      }
    }
    const wrote = await patchStatusIfChanged(this.d.api, { group: res.group, version: res.version, plural: res.plural, name: key.name }, obj.status, status);
    if (wrote) ctx.log.debug("status written", { cluster: key.name, generation });
    return result;
  }

  private createKeys(name: string, uid: string, generation: number, spec: Record<string, unknown>): { row: ClusterRow; keys: ClusterKeyRow[] } {
    const k = generateClusterKeys(name);
    const row: ClusterRow = {
      name,
      uid,
      generation,
      spec,
      caCertPem: k.caCertPem,
      caFingerprint: k.caFingerprint,
      snapshotPublicKey: k.snapshotPublicKey,
      snapshotKeyId: k.snapshotKeyId,
      snapshotKeyFingerprint: k.snapshotKeyFingerprint,
    };
    const keys: ClusterKeyRow[] = [
      { kind: "ca", keyVersion: 1, sealed: seal(this.d.kek, k.caPrivateKeyDer, clusterKeyAad(name, "ca", 1)) },
      { kind: "snapshot", keyVersion: 1, sealed: seal(this.d.kek, k.snapshotPrivateKeyDer, clusterKeyAad(name, "snapshot", 1)) },
    ];
    k.caPrivateKeyDer.fill(0);
    k.snapshotPrivateKeyDer.fill(0);
    return { row, keys };
  }
}
