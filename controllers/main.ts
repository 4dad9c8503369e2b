/**
 * Composes the controllers: informers for FabricCluster and NodeGroup, their
 * controllers, the Manager with Lease leader election and the PostgreSQL
 * authority term, and the orphan sweeps. Used by fabric-controlplane
 * (embedded) and fabric-controllers (against any cluster).
 */
import { CoordinationV1Api, CoreV1Api, CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import type pg from "pg";
import { Registry } from "prom-client";
import { RESOURCES } from "../lib/api/types.generated.js";
import type { FabricClusterObject as FabricCluster, FabricNodeObject as FabricNode, JoinRequestObject as JoinRequest, JoinTokenObject as JoinToken, NodeGroupObject as NodeGroup } from "./objects.js";
import { NodeCertificateIssuer } from "../lib/enrollment/issuer.js";
import { FabricNodeReconciler } from "./fabricnode/reconciler.js";
import { HeartbeatMonitor } from "./fabricnode/heartbeat-monitor.js";
import { DEFAULT_LIVENESS } from "./fabricnode/liveness.js";
import { HeartbeatStore } from "../lib/state/heartbeats.js";
import { JoinRequestReconciler } from "./joinrequest/reconciler.js";
import { JoinTokenReconciler } from "./jointoken/reconciler.js";
import type { Kek } from "../lib/crypto/kek.js";
import { logger, type Logger } from "../lib/log.js";
import { ClusterStore, NodeGroupStore, NodeStore, TokenStore, type Fence } from "../lib/state/index.js";
import { FabricClusterReconciler } from "./fabriccluster/reconciler.js";
import { NodeGroupReconciler } from "./nodegroup/reconciler.js";
import { GroupTree } from "./nodegroup/tree.js";
import { runOrphanSweeps } from "./orphans.js";
import { Controller, Informer, Manager, PgAuthority, customResourceSource, intentChanged, kubeLeaseClient, type ObjectKey } from "./runtime/index.js";
import { specWatch } from "./spec-watch.js";
import { roleAndWorkloadControllers } from "./roleassignment/wire.js";
import { SnapshotBuilder } from "./snapshots/builder.js";

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
  /** Enrollment settings (issue 4). */
  enrollment?: EnrollmentSettings;
  /** Snapshot builder tuning (issue 5). */
  snapshots?: { pollMs?: number; sweepMs?: number; batchSize?: number };
  /** Node liveness from heartbeats (issue 5): grace period before Ready=Unknown (default 40 s), lastHeartbeatTime republish interval (default 5 min), scan period (default min(5 s, grace/4)). */
  nodeHealth?: { gracePeriodMs?: number; heartbeatPublishIntervalMs?: number; scanIntervalMs?: number };
}

/** Enrollment settings of the controllers; durations in milliseconds. */
export interface EnrollmentSettings {
  /** Lifetime of node certificates (default 24 h). */
  nodeCertLifetimeMs?: number;
  /** How long decided JoinRequests are kept (default 24 h). */
  joinRequestRetentionMs?: number;
  /** How long expired JoinTokens are kept (default 1 h). */
  expiredTokenRetentionMs?: number;
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
  /** The fence of this instance's decisions (for the agent API's renewals). */
  fence: Fence;
  /** Issues node certificates with the cluster CAs (shared with the agent API). */
  issuer: NodeCertificateIssuer;
  /** Node rows, fenced by this instance's term. */
  nodes: NodeStore;
  /** Queues a FabricNode reconcile (e.g. after the agent API renewed its certificate). */
  enqueueNode(name: string): void;
  /** The snapshot builder (leader only; tests and benchmarks drain it directly). */
  snapshots: SnapshotBuilder;
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
  const tokenInformer = new Informer<JoinToken>({ name: "JoinToken", source: customResourceSource<JoinToken>(kc, ref(RESOURCES.JoinToken)), log: log.with({ informer: "JoinToken" }), ...informerOpts });
  const requestInformer = new Informer<JoinRequest>({ name: "JoinRequest", source: customResourceSource<JoinRequest>(kc, ref(RESOURCES.JoinRequest)), log: log.with({ informer: "JoinRequest" }), ...informerOpts });
  const nodeInformer = new Informer<FabricNode>({ name: "FabricNode", source: customResourceSource<FabricNode>(kc, ref(RESOURCES.FabricNode)), log: log.with({ informer: "FabricNode" }), ...informerOpts });

  const clusterStore = new ClusterStore(o.pool, authority, o.identity);
  const groupStore = new NodeGroupStore(o.pool, authority, o.identity);
  const tokenStore = new TokenStore(o.pool, authority, o.identity);
  const nodeStore = new NodeStore(o.pool, authority, o.identity);
  const issuer = new NodeCertificateIssuer(clusterStore, o.kek, o.enrollment?.nodeCertLifetimeMs);
  const core = kc.makeApiClient(CoreV1Api);

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
    // The reconciler reads only intent: its own status writes must not requeue the group.
    primaryUpdateFilter: intentChanged,
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
  const tokenController = new Controller<JoinToken>({
    name: "jointoken",
    kind: "JoinToken",
    informer: tokenInformer,
    reconciler: new JoinTokenReconciler({ informer: tokenInformer, tokens: tokenStore, clusters: clusterStore, api, core, expiredRetentionMs: o.enrollment?.expiredTokenRetentionMs }),
    // Uses change when the enrollment API accepts a request: follow new JoinRequests to their token.
    watches: [specWatch(requestInformer, (r) => [{ name: r.spec.tokenRef.name }], { ignoreUpdates: true })],
    workers: 2,
    registry,
    log: log.with({ controller: "jointoken" }),
  });
  const requestController = new Controller<JoinRequest>({
    name: "joinrequest",
    kind: "JoinRequest",
    informer: requestInformer,
    reconciler: new JoinRequestReconciler({ informer: requestInformer, nodes: nodeStore, issuer, api, nodeInformer, retentionMs: o.enrollment?.joinRequestRetentionMs }),
    workers: 8,
    registry,
    log: log.with({ controller: "joinrequest" }),
  });
  const liveness = {
    gracePeriodMs: o.nodeHealth?.gracePeriodMs ?? DEFAULT_LIVENESS.gracePeriodMs,
    publishIntervalMs: o.nodeHealth?.heartbeatPublishIntervalMs ?? DEFAULT_LIVENESS.publishIntervalMs,
  };
  const heartbeatStore = new HeartbeatStore(o.pool, authority, o.identity);
  const nodeController = new Controller<FabricNode>({
    name: "fabricnode",
    kind: "FabricNode",
    informer: nodeInformer,
    reconciler: new FabricNodeReconciler({ informer: nodeInformer, nodes: nodeStore, api, heartbeats: heartbeatStore, liveness }),
    workers: 4,
    registry,
    log: log.with({ controller: "fabricnode" }),
  });
  // Issue 6: RoleAssignment and ServiceWorkload (also registers the roles/workloads snapshot contributors).
  const rw = roleAndWorkloadControllers({ kc, pool: o.pool, fence: authority, identity: o.identity, api, registry, log, informerOpts, nodeInformer, clusterInformer });
  manager.add(clusterController).add(groupController).add(tokenController).add(requestController).add(nodeController).add(rw.roleController).add(rw.workloadController);

  const stopCtl = new AbortController();
  const running = manager.start(stopCtl.signal).catch((err: unknown) => log.error("manager stopped with an error", { error: err }));
  const snapshots = new SnapshotBuilder({ pool: o.pool, fence: authority, clusters: clusterStore, kek: o.kek, isLeader: () => manager.isLeader(), log: log.with({ part: "snapshots" }), registry, ...o.snapshots });
  const building = snapshots.run(stopCtl.signal).catch((err: unknown) => log.error("snapshot builder stopped with an error", { error: err }));
  const heartbeatMonitor = new HeartbeatMonitor({
    heartbeats: heartbeatStore,
    // Only nodes with a FabricNode: a reconcile of a missing one deletes its row, which is the orphan sweep's call, not a heartbeat's.
    enqueue: (name) => {
      if (nodeInformer.get({ name }) !== undefined) nodeController.enqueue({ name });
    },
    isLeader: () => manager.isLeader(),
    settings: liveness,
    scanIntervalMs: o.nodeHealth?.scanIntervalMs,
    log: log.with({ part: "heartbeat-monitor" }),
  });
  const monitoring = heartbeatMonitor.run(stopCtl.signal).catch((err: unknown) => log.error("heartbeat monitor stopped with an error", { error: err }));
  const sweeps = Promise.all([
    runOrphanSweeps({ controller: clusterController, informer: clusterInformer, rowNames: () => clusterStore.names(), intervalMs: o.sweepIntervalMs, log }, stopCtl.signal),
    runOrphanSweeps({ controller: groupController, informer: groupInformer, rowNames: () => groupStore.names(), intervalMs: o.sweepIntervalMs, log }, stopCtl.signal),
    runOrphanSweeps({ controller: tokenController, informer: tokenInformer, rowNames: () => tokenStore.names(), intervalMs: o.sweepIntervalMs, log }, stopCtl.signal),
    runOrphanSweeps({ controller: requestController, informer: requestInformer, rowNames: () => nodeStore.requestNames(), intervalMs: o.sweepIntervalMs, log }, stopCtl.signal),
    runOrphanSweeps({ controller: nodeController, informer: nodeInformer, rowNames: () => nodeStore.nodeNames(), intervalMs: o.sweepIntervalMs, log }, stopCtl.signal),
    rw.run(stopCtl.signal, o.sweepIntervalMs),
  ]);
  log.info("controllers started", { identity: o.identity, leaderElection: o.lease !== undefined });
  let stopping: Promise<void> | undefined;
  return {
    isLeader: () => manager.isLeader(),
    term,
    enqueueAll() {
      const pairs: Array<[{ enqueue(k: ObjectKey): void }, { list(): Array<{ metadata?: { name?: string } }> }]> = [
        [clusterController, clusterInformer],
        [groupController, groupInformer],
        [tokenController, tokenInformer],
        [requestController, requestInformer],
        [nodeController, nodeInformer],
        ...rw.pairs,
      ];
      for (const [c, i] of pairs) {
        for (const obj of i.list()) {
          const name = obj.metadata?.name;
          if (name !== undefined) c.enqueue({ name });
        }
      }
    },
    waitForSync: (signal) => manager.waitForSync(signal),
    fence: authority,
    issuer,
    nodes: nodeStore,
    enqueueNode: (name) => nodeController.enqueue({ name }),
    snapshots,
    stop() {
      stopping ??= (async () => {
        stopCtl.abort();
        await running;
        await building;
        await monitoring;
        await sweeps;
        log.info("controllers stopped", { identity: o.identity });
      })();
      return stopping;
    },
  };
}
