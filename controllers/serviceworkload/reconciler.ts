/**
 * ServiceWorkloadReconciler (leader only): validates the runtime-specific
 * fields, resolves the nodes that should run the workload (holders of
 * spec.role in spec.cluster, for spec.organization when set, narrowed by
 * spec.nodeSelector), writes one desired row per node in its snapshot form
 * (fenced, audited, snapshot marks in the same transaction), and publishes
 * desired / ready / degraded counts and per-node detail from the agents'
 * reports; an instance on a node whose FabricNode is not Ready never counts
 * as ready. Reports wake it through report-listener.ts, a node's Ready
 * flipping through setup.ts; it also looks again every few seconds while
 * instances are not ready.
 *
 * FabricNode status.workloads (every workload the node's agent reports) is
 * published by the FabricNode controller (each kind's status has one
 * writer): this reconciler wakes the nodes concerned after its commit.
 */
import type { CustomObjectsApi } from "@kubernetes/client-node";
import { labelSelectorFromMetav1, matchesLabels, SelectorError } from "../../lib/kube/selectors.js";
import { RESOURCES } from "../../lib/api/types.generated.js";
import type { RoleStore, WorkloadStore } from "../../lib/state/index.js";
import type { FabricClusterObject as FabricCluster, FabricNodeObject as FabricNode, ServiceWorkloadObject } from "../objects.js";
import { isTrue, patchStatusIfChanged, realClock, recordAll, type Clock, type Condition, type EventRecorderLike, type Informer, type ObjectKey, type ReconcileContext, type ReconcileResult, type Reconciler } from "../runtime/index.js";
import { workloadEvents } from "./events.js";
import { desiredWorkloadStatus, snapshotWorkloadOf, targetNodes, validateWorkloadSpec } from "./plan.js";

export type { ServiceWorkloadObject } from "../objects.js";

/** Dependencies of ServiceWorkloadReconciler. */
export interface ServiceWorkloadReconcilerDeps {
  informer: Informer<ServiceWorkloadObject>;
  nodes: Informer<FabricNode>;
  clusters: Informer<FabricCluster>;
  roles: RoleStore;
  workloads: WorkloadStore;
  api: CustomObjectsApi;
  /** Requeues a FabricNode (whose controller publishes its status.workloads). */
  wakeNode?: (name: string) => void;
  clock?: Clock;
  /** Requeue period while some instance is not ready (default 5 s) and otherwise (default 60 s). */
  pollMs?: { notReady?: number; ready?: number };
  /** Kubernetes Events (crash loops, degraded and recovered instances, refused specs). */
  events?: EventRecorderLike;
}

const res = RESOURCES.ServiceWorkload;

/** See the module comment. */
export class ServiceWorkloadReconciler implements Reconciler {
  constructor(private readonly d: ServiceWorkloadReconcilerDeps) {}

  async reconcile(key: ObjectKey, ctx: ReconcileContext): Promise<ReconcileResult | void> {
    const obj = this.d.informer.get(key);
    if (obj === undefined) {
      const had = await this.d.workloads.desired(key.name);
      if (await this.d.workloads.deleteWorkload(key.name)) {
        ctx.log.info("workload withdrawn from every node: deleted", { workload: key.name, nodes: had.length });
        this.wakeNodes(had.map((r) => r.node));
      }
      this.wakeNodes(this.nodesListing(key.name));
      return;
    }
    const spec = obj.spec;
    const generation = obj.metadata.generation ?? 0;
    const organization = spec.organization ?? "";
    let problem: { reason: "InvalidSpec" | "ClusterNotFound"; message: string } | undefined;
    let nodes: string[] = [];
    const problems = validateWorkloadSpec(spec);
    if (this.d.clusters.get({ name: spec.cluster }) === undefined) problem = { reason: "ClusterNotFound", message: `FabricCluster ${spec.cluster} does not exist` };
    else if (problems.length > 0) problem = { reason: "InvalidSpec", message: problems.join("; ") };
    else {
      let matches = (_node: string): boolean => true;
      if (spec.nodeSelector !== undefined) {
        try {
          const sel = labelSelectorFromMetav1(spec.nodeSelector);
          matches = (node) => {
            const n = this.d.nodes.get({ name: node });
            return n !== undefined && matchesLabels(sel, n.metadata.labels ?? {});
          };
        } catch (err) {
          if (!(err instanceof SelectorError)) throw err;
          problem = { reason: "InvalidSpec", message: `spec.nodeSelector: ${err.message}` };
        }
      }
      if (problem === undefined) nodes = targetNodes(await this.d.roles.holders(spec.cluster, spec.role, organization === "" ? undefined : organization), organization, matches);
    }
    const wl = snapshotWorkloadOf(key.name, generation, spec);
    const before = await this.d.workloads.desired(key.name);
    const change = await this.d.workloads.setDesired(
      key.name,
      spec.cluster,
      nodes.map((node) => ({ node, organization, generation, spec: wl })),
    );
    if (change.added.length + change.updated.length + change.removed.length > 0) {
      ctx.log.info("desired workload placement changed", { workload: key.name, added: change.added, updated: change.updated, removed: change.removed });
    }
    const reports = await this.d.workloads.reportsOfWorkload(key.name);
    const now = new Date((this.d.clock ?? realClock).now());
    const notReady = new Set(nodes.filter((n) => !isTrue(this.d.nodes.get({ name: n })?.status?.conditions as Condition[] | undefined, "Ready")));
    const status = desiredWorkloadStatus(obj.status, generation, nodes, reports, problem, now, notReady);
    recordAll(this.d.events, obj, workloadEvents(obj.status, status, problem));
    await patchStatusIfChanged(this.d.api, { group: res.group, version: res.version, plural: res.plural, name: key.name }, obj.status, status);
    // Nodes still listing the workload matter too: a report that dropped it
    // (the agent stopped it after its rows were gone) must clear their status.
    this.wakeNodes([...new Set([...nodes, ...before.map((r) => r.node), ...reports.keys(), ...this.nodesListing(key.name)])]);
    const allReady = nodes.length > 0 && status.ready === nodes.length;
    return { requeueAfterMs: allReady || nodes.length === 0 ? (this.d.pollMs?.ready ?? 60_000) : (this.d.pollMs?.notReady ?? 5000) };
  }

  /** FabricNodes whose cached status.workloads names the workload. */
  private nodesListing(workload: string): string[] {
    return this.d.nodes
      .list()
      .filter((n) => n.status?.workloads?.some((w) => w.name === workload) === true)
      .map((n) => n.metadata.name ?? "")
      .filter((n) => n !== "");
  }

  /** Wakes the FabricNodes given (only existing ones: a reconcile of a missing one deletes its row, which is the orphan sweep's call). */
  private wakeNodes(nodes: readonly string[]): void {
    for (const node of nodes) {
      if (this.d.nodes.get({ name: node }) !== undefined) this.d.wakeNode?.(node);
    }
  }
}
