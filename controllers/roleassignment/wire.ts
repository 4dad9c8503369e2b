/**
 * Builds the RoleAssignment and ServiceWorkload controllers (issue 6) for
 * controllers/main.ts: their informers, secondary watches, the report
 * listener and the orphan sweeps. Importing this module also registers the
 * roles and workloads snapshot contributors (./snapshot.ts).
 */
import { setMaxListeners } from "node:events";
import type { CustomObjectsApi, KubeConfig, KubernetesObject } from "@kubernetes/client-node";
import type pg from "pg";
import type { Registry } from "prom-client";
import { RESOURCES } from "../../lib/api/types.generated.js";
import type { Logger } from "../../lib/log.js";
import { RoleStore, WorkloadStore, type Fence } from "../../lib/state/index.js";
import type { FabricClusterObject as FabricCluster, FabricNodeObject as FabricNode } from "../objects.js";
import { runOrphanSweeps } from "../orphans.js";
import { Controller, Informer, customResourceSource, jsonEqual, type ObjectKey, type SecondaryWatch } from "../runtime/index.js";
import { listenForReports } from "../serviceworkload/report-listener.js";
import { ServiceWorkloadReconciler, type ServiceWorkloadObject } from "../serviceworkload/reconciler.js";
import { RoleAssignmentReconciler, type RoleAssignmentObject } from "./reconciler.js";
import "./snapshot.js";

/** What the wiring needs from main.ts. */
export interface RoleWorkloadWiring {
  kc: KubeConfig;
  pool: pg.Pool;
  fence: Fence;
  identity: string;
  api: CustomObjectsApi;
  registry: Registry;
  log: Logger;
  informerOpts: { registry: Registry; silenceTimeoutMs?: number; resyncPeriodMs?: number; relistAfterSilentRestarts?: number };
  nodeInformer: Informer<FabricNode>;
  clusterInformer: Informer<FabricCluster>;
}

/** The two controllers, and what main.ts runs alongside them. */
export interface RoleWorkloadControllers {
  roleController: Controller<RoleAssignmentObject>;
  workloadController: Controller<ServiceWorkloadObject>;
  /** [controller, informer] pairs for enqueueAll. */
  pairs: Array<[{ enqueue(k: ObjectKey): void }, { list(): Array<{ metadata?: { name?: string } }> }]>;
  /** Orphan sweeps and the report listener, until signal aborts. */
  run(signal: AbortSignal, sweepIntervalMs: number | undefined): Promise<unknown>;
}

/** A watch on informer calling map for adds, deletes and the updates `relevant` accepts. */
function watchWhen<S extends KubernetesObject>(informer: Informer<S>, relevant: (a: S, b: S) => boolean, map: (o: S) => ObjectKey[]): SecondaryWatch {
  return {
    informer: informer as unknown as Informer<KubernetesObject>,
    subscribe(enqueue) {
      const emit = (o: S): void => {
        for (const k of map(o)) enqueue(k);
      };
      return informer.addHandlers({
        onAdd: emit,
        onUpdate: (a, b) => {
          if (a === b || !relevant(a, b)) return;
          emit(a);
          emit(b);
        },
        onDelete: emit,
      });
    },
  };
}

const readyOf = (n: FabricNode): string | undefined => n.status?.conditions?.find((c) => c.type === "Ready")?.status;

/** See the module comment. */
export function roleAndWorkloadControllers(w: RoleWorkloadWiring): RoleWorkloadControllers {
  const ref = (r: { group: string; version: string; plural: string }) => ({ group: r.group, version: r.version, plural: r.plural });
  const raInformer = new Informer<RoleAssignmentObject>({ name: "RoleAssignment", source: customResourceSource<RoleAssignmentObject>(w.kc, ref(RESOURCES.RoleAssignment)), log: w.log.with({ informer: "RoleAssignment" }), ...w.informerOpts });
  const swInformer = new Informer<ServiceWorkloadObject>({ name: "ServiceWorkload", source: customResourceSource<ServiceWorkloadObject>(w.kc, ref(RESOURCES.ServiceWorkload)), log: w.log.with({ informer: "ServiceWorkload" }), ...w.informerOpts });
  const roles = new RoleStore(w.pool, w.fence, w.identity);
  const workloads = new WorkloadStore(w.pool, w.fence, w.identity);
  const names = <T extends { metadata: { name?: string } }>(list: T[], keep: (o: T) => boolean): ObjectKey[] =>
    list.filter(keep).flatMap((o) => (o.metadata.name === undefined ? [] : [{ name: o.metadata.name }]));
  const rasOfCluster = (cluster: string): ObjectKey[] => names(raInformer.list(), (r) => r.spec.cluster === cluster);
  const swsOf = (cluster: string, role?: string): ObjectKey[] => names(swInformer.list(), (s) => s.spec.cluster === cluster && (role === undefined || s.spec.role === role));

  let workloadController: Controller<ServiceWorkloadObject> | undefined;
  const roleController = new Controller<RoleAssignmentObject>({
    name: "roleassignment",
    kind: "RoleAssignment",
    informer: raInformer,
    reconciler: new RoleAssignmentReconciler({
      informer: raInformer,
      nodes: w.nodeInformer,
      clusters: w.clusterInformer,
      roles,
      api: w.api,
      onGrantsChanged: (cluster, role) => {
        for (const k of swsOf(cluster, role)) workloadController?.enqueue(k);
      },
    }),
    watches: [
      // Membership, labels, reported capabilities and health decide grants and coverage.
      watchWhen(
        w.nodeInformer,
        (a, b) => !jsonEqual(a.spec, b.spec) || !jsonEqual(a.metadata.labels, b.metadata.labels) || !jsonEqual(a.status?.capabilities, b.status?.capabilities) || readyOf(a) !== readyOf(b),
        (n) => rasOfCluster(n.spec.cluster),
      ),
      watchWhen(w.clusterInformer, () => false, (c) => (c.metadata.name === undefined ? [] : rasOfCluster(c.metadata.name))),
    ],
    workers: 4,
    registry: w.registry,
    log: w.log.with({ controller: "roleassignment" }),
  });
  workloadController = new Controller<ServiceWorkloadObject>({
    name: "serviceworkload",
    kind: "ServiceWorkload",
    informer: swInformer,
    reconciler: new ServiceWorkloadReconciler({ informer: swInformer, nodes: w.nodeInformer, clusters: w.clusterInformer, roles, workloads, api: w.api }),
    watches: [
      watchWhen(w.nodeInformer, (a, b) => !jsonEqual(a.metadata.labels, b.metadata.labels), (n) => names(swInformer.list(), (s) => s.spec.cluster === n.spec.cluster && s.spec.nodeSelector !== undefined)),
      watchWhen(w.clusterInformer, () => false, (c) => (c.metadata.name === undefined ? [] : swsOf(c.metadata.name))),
    ],
    workers: 4,
    registry: w.registry,
    log: w.log.with({ controller: "serviceworkload" }),
  });
  const wc = workloadController;
  return {
    roleController,
    workloadController: wc,
    pairs: [
      [roleController, raInformer],
      [wc, swInformer],
    ],
    run: (signal, intervalMs) => {
      // main.ts's sweeps, these two and the listener all wait on one signal.
      setMaxListeners(32, signal);
      return Promise.all([
        runOrphanSweeps({ controller: roleController, informer: raInformer, rowNames: () => roles.assignmentNames(), intervalMs, log: w.log }, signal),
        runOrphanSweeps({ controller: wc, informer: swInformer, rowNames: () => workloads.workloadNames(), intervalMs, log: w.log }, signal),
        listenForReports(w.pool, (list) => {
          // "*": too many names for one notification.
          const keys = list.includes("*") ? names(swInformer.list(), () => true) : list.map((name) => ({ name }));
          for (const k of keys) wc.enqueue(k);
        }, w.log.with({ part: "workload-reports" }), signal),
      ]);
    },
  };
}
