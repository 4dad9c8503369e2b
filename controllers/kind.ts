/**
 * What every kind folder's `setup.ts` receives from the composition root
 * (main.ts) and may hand back: the shared dependencies of the process (API
 * clients, the authority, the state layer's stores, the certificate issuer,
 * settings) and the snapshot contributors the kind owns. A kind builds its
 * own informers (through `mgr.informerFor`), controller, watches, orphan
 * sweep and side loops from these; nothing here names a kind's internals.
 */
import type { CoreV1Api, CustomObjectsApi } from "@kubernetes/client-node";
import type pg from "pg";
import type { Registry } from "prom-client";
import type { Kek } from "../lib/crypto/kek.js";
import type { NodeCertificateIssuer } from "../lib/enrollment/issuer.js";
import type { Logger } from "../lib/log.js";
import type { SnapshotContributor } from "../lib/snapshot/contributors.js";
import type { HeartbeatStore } from "../lib/state/heartbeats.js";
import type { ClusterStore, Fence, NodeGroupStore, NodeStore, RoleStore, TokenStore, WorkloadStore } from "../lib/state/index.js";
import type { EventRecorderLike, KindModule } from "./runtime/index.js";

/** Enrollment settings of the controllers; durations in milliseconds. */
export interface EnrollmentSettings {
  /** Lifetime of node certificates (default 24 h). */
  nodeCertLifetimeMs?: number;
  /** How long decided JoinRequests are kept (default 24 h). */
  joinRequestRetentionMs?: number;
  /** How long expired JoinTokens are kept (default 1 h). */
  expiredTokenRetentionMs?: number;
}

/** Node liveness from heartbeats; durations in milliseconds. */
export interface NodeHealthSettings {
  /** Grace period before Ready=Unknown (default 40 s). */
  gracePeriodMs?: number;
  /** lastHeartbeatTime republish interval (default 5 min). */
  heartbeatPublishIntervalMs?: number;
  /** Heartbeat scan period (default min(5 s, grace/4)). */
  scanIntervalMs?: number;
}

/** The state layer's repositories, one instance each per process (fenced by the process's authority term). */
export interface KindStores {
  clusters: ClusterStore;
  groups: NodeGroupStore;
  tokens: TokenStore;
  nodes: NodeStore;
  heartbeats: HeartbeatStore;
  roles: RoleStore;
  workloads: WorkloadStore;
}

/** The shared dependencies handed to every kind's setup. */
export interface KindDeps {
  /** For the kind's own PostgreSQL listeners (one connection each). */
  pool: pg.Pool;
  api: CustomObjectsApi;
  core: CoreV1Api;
  kek: Kek;
  /** Recorded as the audit actor and the authority holder. */
  identity: string;
  /** The held authority term (undefined while not leading). */
  term: () => number | undefined;
  /** Fenced transactions under that term (for kinds with stores of their own). */
  fence: Fence;
  issuer: NodeCertificateIssuer;
  stores: KindStores;
  registry: Registry;
  /** The controllers' logger; kinds add their own fields. */
  log: Logger;
  /** Kubernetes Events about the objects reconciled (asynchronous; never blocks nor fails a reconcile). */
  events: EventRecorderLike;
  settings: {
    /** Orphan sweep period while leading (default 60 s). */
    sweepIntervalMs?: number;
    workers?: { fabricCluster?: number; nodeGroup?: number };
    enrollment?: EnrollmentSettings;
    nodeHealth?: NodeHealthSettings;
  };
}

/** What a kind's setup hands back to the composition root. */
export interface KindParts {
  /** Parts of a node's snapshot this kind owns, handed to the SnapshotBuilder in kind-list order. */
  snapshotContributors?: readonly SnapshotContributor[];
}

/** A kind folder's registration (exported by its setup.ts). */
export type FabricKind = KindModule<KindDeps, KindParts | void>;
