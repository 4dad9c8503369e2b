/**
 * The composition root of the controllers, used by fabric-controlplane
 * (embedded) and fabric-controllers (against any cluster). It builds what
 * the kinds share (API clients, the PostgreSQL authority term, the state
 * layer's stores, the certificate issuer), the Manager with Lease leader
 * election, and lets every kind folder of KINDS set itself up: each adds its
 * informers, controller, watches, orphan sweep and side loops, and hands
 * back its snapshot contributors, which go to the SnapshotBuilder in list
 * order.
 */
import { CoordinationV1Api, CoreV1Api, CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import type pg from "pg";
import { Registry } from "prom-client";
import type { Kek } from "../lib/crypto/kek.js";
import { NodeCertificateIssuer } from "../lib/enrollment/issuer.js";
import { logger, type Logger } from "../lib/log.js";
import type { SnapshotContributor } from "../lib/snapshot/contributors.js";
import { HeartbeatStore } from "../lib/state/heartbeats.js";
import { ClusterStore, NodeGroupStore, NodeStore, RoleStore, TokenStore, WorkloadStore, type Fence } from "../lib/state/index.js";
import { fabricClusterKind } from "./fabriccluster/setup.js";
import { fabricNodeKind } from "./fabricnode/setup.js";
import { joinRequestKind } from "./joinrequest/setup.js";
import { joinTokenKind } from "./jointoken/setup.js";
import { meshKind } from "./mesh/setup.js";
import type { EnrollmentSettings, FabricKind, KindDeps, NodeHealthSettings } from "./kind.js";
import { nodeGroupKind } from "./nodegroup/setup.js";
import { roleAssignmentKind } from "./roleassignment/setup.js";
import { EventRecorder, Manager, PgAuthority, coreV1EventSink, customResourceSource, kubeLeaseClient } from "./runtime/index.js";
import { serviceWorkloadKind } from "./serviceworkload/setup.js";
import { SnapshotBuilder } from "./snapshots/builder.js";
import { vpnConnectionKind, vpnKeyOf } from "./vpnconnection/setup.js";

export type { EnrollmentSettings, NodeHealthSettings } from "./kind.js";

/** The kinds, in the order their controllers are added and their snapshot contributors run. */
export const KINDS: readonly FabricKind[] = [fabricClusterKind, nodeGroupKind, joinTokenKind, joinRequestKind, fabricNodeKind, roleAssignmentKind, serviceWorkloadKind, meshKind, vpnConnectionKind];

/** source.component of the controllers' Kubernetes Events. */
export const EVENT_SOURCE = "fabric-controllers";

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
  /** Certificate lifetime and retention of enrollment objects. */
  enrollment?: EnrollmentSettings;
  /** Snapshot builder tuning. */
  snapshots?: { pollMs?: number; sweepMs?: number; batchSize?: number };
  /** Node liveness from heartbeats: grace period before Ready=Unknown (default 40 s), lastHeartbeatTime republish interval (default 5 min), scan period (default min(5 s, grace/4)). */
  nodeHealth?: NodeHealthSettings;
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
  /** Queues a VPNConnection reconcile (`<namespace>/<name>`, e.g. after the agent API granted its lease). */
  enqueueVpnConnection(connection: string): void;
  /** The snapshot builder (leader only; tests and benchmarks drain it directly). */
  snapshots: SnapshotBuilder;
  /** The contributors the kinds handed to the snapshot builder, in order. */
  snapshotContributors: readonly SnapshotContributor[];
  /** Stops controllers (releasing the lease), sweeps and informers. Idempotent. */
  stop(): Promise<void>;
}

/** Starts the controllers; they reconcile only while this instance leads. */
export function startControllers(o: ControllersOptions): RunningControllers {
  const log = o.log ?? logger("controllers");
  const registry = o.registry ?? new Registry();
  const kc = o.kubeConfig;
  const authority = new PgAuthority(o.pool, { registry, log: log.with({ part: "authority" }) });
  const stores = {
    clusters: new ClusterStore(o.pool, authority, o.identity),
    groups: new NodeGroupStore(o.pool, authority, o.identity),
    tokens: new TokenStore(o.pool, authority, o.identity),
    nodes: new NodeStore(o.pool, authority, o.identity),
    heartbeats: new HeartbeatStore(o.pool, authority, o.identity),
    roles: new RoleStore(o.pool, authority, o.identity),
    workloads: new WorkloadStore(o.pool, authority, o.identity),
  };
  const issuer = new NodeCertificateIssuer(stores.clusters, o.kek, o.enrollment?.nodeCertLifetimeMs);
  const manager = new Manager({
    registry,
    authority,
    identity: o.identity,
    log: log.with({ part: "manager" }),
    informers: { source: (ref) => customResourceSource(kc, ref), defaults: o.informer, log },
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
  const core = kc.makeApiClient(CoreV1Api);
  const events = new EventRecorder({ sink: coreV1EventSink(core), component: EVENT_SOURCE, host: o.identity, registry, log: log.with({ part: "events" }) });
  const deps: KindDeps = {
    pool: o.pool,
    api: kc.makeApiClient(CustomObjectsApi),
    core,
    kek: o.kek,
    identity: o.identity,
    term: () => authority.heldTerm(),
    fence: authority,
    issuer,
    stores,
    registry,
    log,
    events,
    settings: { sweepIntervalMs: o.sweepIntervalMs, workers: o.workers, enrollment: o.enrollment, nodeHealth: o.nodeHealth },
  };
  const contributors = KINDS.flatMap((k) => k.setup(manager, deps)?.snapshotContributors ?? []);
  const snapshots = new SnapshotBuilder({ pool: o.pool, fence: authority, clusters: stores.clusters, kek: o.kek, contributors, isLeader: () => manager.isLeader(), log: log.with({ part: "snapshots" }), registry, ...o.snapshots });
  manager.addRunnable("snapshot builder", (signal) => snapshots.run(signal));

  const stopCtl = new AbortController();
  const running = manager.start(stopCtl.signal).catch((err: unknown) => log.error("manager stopped with an error", { error: err }));
  log.info("controllers started", { identity: o.identity, leaderElection: o.lease !== undefined });
  const enqueueNode = manager.wake("FabricNode");
  const enqueueVpn = manager.wake("VPNConnection");
  let stopping: Promise<void> | undefined;
  return {
    isLeader: () => manager.isLeader(),
    term: () => authority.heldTerm(),
    enqueueAll: () => manager.enqueueAll(),
    waitForSync: (signal) => manager.waitForSync(signal),
    fence: authority,
    issuer,
    nodes: stores.nodes,
    enqueueNode: (name) => enqueueNode({ name }),
    enqueueVpnConnection: (c) => enqueueVpn(vpnKeyOf(c)),
    snapshots,
    snapshotContributors: contributors,
    stop() {
      stopping ??= (async () => {
        stopCtl.abort();
        await running;
        await events.stop();
        log.info("controllers stopped", { identity: o.identity });
      })();
      return stopping;
    },
  };
}
