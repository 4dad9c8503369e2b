/**
 * The assembly pass of a snapshot batch: which nodes a batch of dirty marks
 * covers, what each cluster needs for signing, and each node's complete
 * payload (identity from PostgreSQL, then every contributor, in batches per
 * cluster where a contributor can). Nothing here signs or writes; the
 * sign/store pass (store.ts) takes it from there.
 */
import type { KeyObject } from "node:crypto";
import type pg from "pg";
import type { Logger } from "../../lib/log.js";
import type { SnapshotContributor, SnapshotNodeRef } from "../../lib/snapshot/contributors.js";
import type { SnapshotPayload } from "../../lib/snapshot/format.js";
import type { ClusterStore } from "../../lib/state/index.js";
import { clusterNodeNames, nodeSources, storedMeta, type DirtyMark, type StoredSnapshotMeta } from "../../lib/state/snapshots.js";
import { lifetimeOf } from "./plan.js";

/** A cluster's opened snapshot signing key. */
export interface SigningKey {
  key: KeyObject;
  keyId: string;
}

/** What signing a cluster's snapshots needs. */
export interface ClusterSigning {
  lifetimeMs: number;
  key: SigningKey;
}

/** The dirty marks of a batch, resolved to nodes and clusters. */
export interface DirtyBatch {
  marks: DirtyMark[];
  /** Every node the marks cover ("*" expanded), sorted. */
  names: string[];
  /** Per cluster of the marks: its signing needs, or why it cannot be signed for now. */
  signing: Map<string, ClusterSigning | Error>;
}

/** One node's assembled payload, ready to hash and sign. */
export interface AssembledSnapshot {
  node: string;
  ref: SnapshotNodeRef;
  signing: ClusterSigning;
  payload: SnapshotPayload;
}

/** The assembly pass's result. */
export interface Assembly {
  snapshots: AssembledSnapshot[];
  /** Nodes that have a stored snapshot but no longer exist. */
  gone: string[];
  /** Stored snapshot metadata and the highest serial ever issued, per node. */
  meta: Map<string, StoredSnapshotMeta>;
  highest: Map<string, number>;
}

/**
 * Resolves dirty marks to nodes and reads each cluster's row and signing
 * key, before the fenced transaction (the key is cached by the caller).
 */
export async function loadBatch(
  pool: pg.Pool,
  marks: DirtyMark[],
  clusters: ClusterStore,
  signingKey: (cluster: string, keyId: string) => Promise<SigningKey>,
): Promise<DirtyBatch> {
  const nodes = new Set<string>();
  for (const m of marks) {
    if (m.node === "*") for (const n of await clusterNodeNames(pool, m.cluster)) nodes.add(n);
    else nodes.add(m.node);
  }
  const signing = new Map<string, ClusterSigning | Error>();
  for (const c of new Set(marks.map((m) => m.cluster))) {
    const row = await clusters.get(c);
    if (row === undefined) {
      signing.set(c, new Error(`cluster ${c} has no row`));
      continue;
    }
    try {
      signing.set(c, { lifetimeMs: lifetimeOf(row.spec), key: await signingKey(c, row.snapshotKeyId) });
    } catch (err) {
      signing.set(c, err as Error);
    }
  }
  return { marks, names: [...nodes].sort(), signing };
}

/**
 * Builds the payload of every node of the batch inside the fenced
 * transaction `c`: identity, then each of `contributors` in order. A node
 * whose cluster cannot be signed for is skipped with a warning (its mark is
 * cleared like the others; the next change or sweep marks it again).
 */
export async function assemblePayloads(
  c: pg.PoolClient,
  batch: DirtyBatch,
  contributors: readonly SnapshotContributor[],
  log: Logger,
): Promise<Assembly> {
  const sources = await nodeSources(c, batch.names);
  const { meta, highest } = await storedMeta(c, batch.names);
  const gone: string[] = [];
  const snapshots: AssembledSnapshot[] = [];
  for (const node of batch.names) {
    const src = sources.get(node);
    if (src === undefined) {
      if (meta.has(node)) gone.push(node);
      continue;
    }
    const signing = batch.signing.get(src.cluster);
    if (signing === undefined || signing instanceof Error) {
      log.warn("snapshot not built: cluster not ready", { cluster: src.cluster, node, error: signing?.message ?? "not in this batch" });
      continue;
    }
    const payload: SnapshotPayload = { identity: src.identity, roles: [], workloads: [], meshPeers: [], vpnAssignments: [], updates: [] };
    snapshots.push({ node, signing, payload, ref: { cluster: src.cluster, node, membership: src.membership } });
  }
  await contribute(c, snapshots, contributors);
  return { snapshots, gone, meta, highest };
}

/** Runs every contributor over the assembled payloads, cluster by cluster. */
async function contribute(c: pg.PoolClient, snapshots: readonly AssembledSnapshot[], contributors: readonly SnapshotContributor[]): Promise<void> {
  const byCluster = new Map<string, AssembledSnapshot[]>();
  for (const s of snapshots) {
    let list = byCluster.get(s.ref.cluster);
    if (!list) byCluster.set(s.ref.cluster, (list = []));
    list.push(s);
  }
  for (const contributor of contributors) {
    for (const [cluster, list] of byCluster) {
      try {
        if (contributor.contributeMany) {
          await contributor.contributeMany(c, cluster, list.map((s) => s.ref), new Map(list.map((s) => [s.node, s.payload])));
        } else {
          for (const s of list) await contributor.contribute(c, s.ref, s.payload);
        }
      } catch (cause) {
        throw new Error(`snapshot contributor ${contributor.name} failed for cluster ${cluster}`, { cause });
      }
    }
  }
}
