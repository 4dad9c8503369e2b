/**
 * Composes the controllers: informers for FabricCluster and NodeGroup, their
 * controllers, the Manager with Lease leader election and the PostgreSQL
 * authority term, and the orphan sweeps. Used by fabric-controlplane
 * (embedded) and fabric-controllers (against any cluster).
 */
import { CoordinationV1Api, CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import type pg from "pg";
import { Registry } from "prom-client";
import { RESOURCES } from "../lib/api/types.generated.js";
import type { FabricClusterObject as FabricCluster, NodeGroupObject as NodeGroup } from "./objects.js";
import type { Kek } from "../lib/crypto/kek.js";
import { logger, type Logger } from "../lib/log.js";
import { ClusterStore, NodeGroupStore } from "../lib/state/index.js";
import { FabricClusterReconciler } from "./fabriccluster/reconciler.js";
import { NodeGroupReconciler } from "./nodegroup/reconciler.js";
import { GroupTree } from "./nodegroup/tree.js";
import { runOrphanSweeps } from "./orphans.js";
import { Controller, Informer, Manager, PgAuthority, customResourceSource, kubeLeaseClient, type ObjectKey } from "./runtime/index.js";
import { specWatch } from "./spec-watch.js";

/** Lease election settings; durations in milliseconds (client-go defaults 15 s / 10 s / 2 s). */
export interface LeaseSettings {
  namespace: string;
  name: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

/** Options of startControllers. */
export interface ControllersOptions {
  kubeConfig: KubeConfig;
  pool: pg.Pool;
  /** Unique per process; recorded as the audit actor and the lease holder. */
  identity: string;
  kek: Kek;
  /** Where the controller metrics go (share the process's /metrics registry). */
  registry?: Registry;
  log?: Logger;
  /** Without it this instance always leads (one instance only). */
  lease?: LeaseSettings;
  /** Informer tuning (silence timeout for dead watches, resync). */
  informer?: { silenceTimeoutMs?: number; resyncPeriodMs?: number; relistAfterSilentRestarts?: number };
  workers?: { fabricCluster?: number; nodeGroup?: number };
  /** Orphan sweep period while leading (default 60 s). */
  sweepIntervalMs?: number;
}

/** Running controllers. */
export interface RunningControllers {
  /** True while this instance leads and its controllers run. */
  isLeader(): boolean;
  /** The authority term held, if leading. */
  term(): number | undefined;
  /** Queues a reconcile of every cached object (a manual resync). */
  enqueueAll(): void;
  /** Resolves once every informer has synced. */
  waitForSync(signal?: AbortSignal): Promise<boolean>;
  /** Stops controllers (releasing the lease), sweeps and informers. Idempotent. */
  stop(): Promise<void>;
}

/** Starts the controllers; they reconcile only while this instance leads. */
export function startControllers(o: ControllersOptions): RunningControllers {
  const log = o.log ?? logger("controllers");
  const registry = o.registry ?? new Registry();
  const kc = o.kubeConfig;
  const api = kc.makeApiClient(CustomObjectsApi);
  const authority = new PgAuthority(o.pool, { registry, log: log.with({ part: "authority" }) });
  const term = (): number | undefined => authority.heldTerm();

  const informerOpts = { registry, ...o.informer };
  const ref = (r: { group: string; version: string; plural: string }) => ({ group: r.group, version: r.version, plural: r.plural });
  const clusterInformer = new Informer<FabricCluster>({
    name: "FabricCluster",
    source: customResourceSource<FabricCluster>(kc, ref(RESOURCES.FabricCluster)),
    log: log.with({ informer: "FabricCluster" }),
    ...informerOpts,
  });
  const groupInformer = new Informer<NodeGroup>({
    name: "NodeGroup",
    source: customResourceSource<NodeGroup>(kc, ref(RESOURCES.NodeGroup)),
    log: log.with({ informer: "NodeGroup" }),
    ...informerOpts,
  });
  const tree = new GroupTree(groupInformer);

  const clusterStore = new ClusterStore(o.pool, authority, o.identity);
  const groupStore = new NodeGroupStore(o.pool, authority, o.identity);

  const clusterController = new Controller<FabricCluster>({
    name: "fabriccluster",
    kind: "FabricCluster",
    informer: clusterInformer,
    reconciler: new FabricClusterReconciler({ informer: clusterInformer, clusters: clusterStore, kek: o.kek, api, term, identity: o.identity }),
    workers: o.workers?.fabricCluster ?? 2,
    registry,
    log: log.with({ controller: "fabriccluster" }),
  });
  const byName = (names: string[]): ObjectKey[] => names.map((name) => ({ name }));
  const groupController = new Controller<NodeGroup>({
    name: "nodegroup",
    kind: "NodeGroup",
    informer: groupInformer,
    reconciler: new NodeGroupReconciler({ groups: groupInformer, clusters: clusterInformer, tree, store: groupStore, api }),
    watches: [
      // A group's validity depends on its ancestors, its childCount on its children: only spec changes matter.
      specWatch(groupInformer, (g) => {
        const name = g.metadata.name;
        if (name === undefined) return [];
        const keys = byName(tree.descendants(name));
        if (g.spec.parent) keys.push({ name: g.spec.parent });
        return keys;
      }),
      // ClusterNotFound flips when a cluster appears or goes.
      specWatch(clusterInformer, (c) => (c.metadata.name === undefined ? [] : byName(tree.inCluster(c.metadata.name))), { ignoreUpdates: true }),
    ],
    workers: o.workers?.nodeGroup ?? 8,
    registry,
    log: log.with({ controller: "nodegroup" }),
  });

  const manager = new Manager({
    registry,
    authority,
    identity: o.identity,
    log: log.with({ part: "manager" }),
    leaderElection:
      o.lease === undefined
        ? undefined
        : {
            lease: kubeLeaseClient(kc.makeApiClient(CoordinationV1Api), o.lease.namespace, o.lease.name),
            identity: o.identity,
            leaseDurationMs: o.lease.leaseDurationMs,
            renewDeadlineMs: o.lease.renewDeadlineMs,
            retryPeriodMs: o.lease.retryPeriodMs,
            log: log.with({ part: "leader-election", identity: o.identity }),
          },
  });
  manager.add(clusterController).add(groupController);

  const stopCtl = new AbortController();
  const running = manager.start(stopCtl.signal).catch((err: unknown) => log.error("manager stopped with an error", { error: err }));
  const sweeps = Promise.all([
    runOrphanSweeps({ controller: clusterController, informer: clusterInformer, rowNames: () => clusterStore.names(), intervalMs: o.sweepIntervalMs, log }, stopCtl.signal),
    runOrphanSweeps({ controller: groupController, informer: groupInformer, rowNames: () => groupStore.names(), intervalMs: o.sweepIntervalMs, log }, stopCtl.signal),
  ]);
  log.info("controllers started", { identity: o.identity, leaderElection: o.lease !== undefined });
  let stopping: Promise<void> | undefined;
  return {
    isLeader: () => manager.isLeader(),
    term,
    enqueueAll() {
      for (const [c, i] of [
        [clusterController, clusterInformer],
        [groupController, groupInformer],
      ] as const) {
        for (const obj of i.list()) {
          const name = obj.metadata?.name;
          if (name !== undefined) c.enqueue({ name });
        }
      }
    },
    waitForSync: (signal) => manager.waitForSync(signal),
    stop() {
      stopping ??= (async () => {
        stopCtl.abort();
        await running;
        await sweeps;
        log.info("controllers stopped", { identity: o.identity });
      })();
      return stopping;
    },
  };
}
