/**
 * Repository of the clusters and cluster_keys tables (the FabricCluster
 * projection). Every write is a fenced decision with its audit row.
 */
import type pg from "pg";
import type { Sealed } from "../crypto/kek.js";
import { decide, decideRow, type Fence } from "./fenced.js";
import { Table } from "./table.js";

/** The public part of a cluster row. */
export interface ClusterRow {
  name: string;
  uid: string;
  generation: number;
  spec: Record<string, unknown>;
  caCertPem: string;
  caFingerprint: string;
  snapshotPublicKey: string;
  snapshotKeyId: string;
  snapshotKeyFingerprint: string;
}

/** A sealed private key of a cluster. */
export interface ClusterKeyRow {
  kind: "ca" | "snapshot";
  keyVersion: number;
  sealed: Sealed;
}

/** Additional data binding a sealed key to its row (see lib/crypto/kek.ts). */
export function clusterKeyAad(cluster: string, kind: ClusterKeyRow["kind"], keyVersion: number): string {
  return `accessfabric.io/cluster-key/v1|${cluster}|${kind}|${keyVersion}`;
}

interface DbRow {
  name: string;
  uid: string;
  generation: string;
  spec: Record<string, unknown>;
  ca_cert_pem: string;
  ca_fingerprint: string;
  snapshot_public_key: string;
  snapshot_key_id: string;
  snapshot_key_fingerprint: string;
}

function fromDb(r: DbRow): ClusterRow {
  return {
    name: r.name,
    uid: r.uid,
    generation: Number(r.generation),
    spec: r.spec,
    caCertPem: r.ca_cert_pem,
    caFingerprint: r.ca_fingerprint,
    snapshotPublicKey: r.snapshot_public_key,
    snapshotKeyId: r.snapshot_key_id,
    snapshotKeyFingerprint: r.snapshot_key_fingerprint,
  };
}

const clusters = new Table<DbRow, ClusterRow>("clusters", fromDb);

/** See the module comment. */
export class ClusterStore {
  constructor(
    private readonly pool: pg.Pool,
    private readonly fence: Fence,
    private readonly actor: string,
  ) {}

  /** The row of a cluster, if projected. */
  async get(name: string): Promise<ClusterRow | undefined> {
    return clusters.get(this.pool, name);
  }

  /** Names of every projected cluster. */
  async names(): Promise<string[]> {
    return clusters.names(this.pool);
  }

  /** The sealed private keys of a cluster. */
  async keys(name: string): Promise<ClusterKeyRow[]> {
    const res = await this.pool.query<{ kind: "ca" | "snapshot"; key_version: number; kek_id: string; nonce: Buffer; ciphertext: Buffer }>(
      "SELECT kind, key_version, kek_id, nonce, ciphertext FROM cluster_keys WHERE cluster = $1 ORDER BY kind, key_version",
      [name],
    );
    return res.rows.map((r) => ({ kind: r.kind, keyVersion: r.key_version, sealed: { kekId: r.kek_id, nonce: r.nonce, ciphertext: r.ciphertext } }));
  }

  /**
   * Creates the row and its sealed keys. With replaceUid, an existing row of
   * that uid (an object deleted and recreated under the same name) and its
   * keys are removed first, in the same decision.
   */
  async create(row: ClusterRow, keys: ClusterKeyRow[], replaceUid?: string): Promise<void> {
    await decide(this.fence, this.actor, async (c) => {
      const audit = [];
      if (replaceUid !== undefined) {
        const del = await c.query("DELETE FROM clusters WHERE name = $1 AND uid = $2", [row.name, replaceUid]);
        if ((del.rowCount ?? 0) > 0) {
          audit.push({ action: "cluster.deleted", objectKind: "FabricCluster", objectName: row.name, cluster: row.name, details: { uid: replaceUid, reason: "replaced by a new object of the same name" } });
        }
      }
      await c.query(
        `INSERT INTO clusters (name, uid, generation, spec, ca_cert_pem, ca_fingerprint, snapshot_public_key, snapshot_key_id, snapshot_key_fingerprint)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
        [row.name, row.uid, row.generation, JSON.stringify(row.spec), row.caCertPem, row.caFingerprint, row.snapshotPublicKey, row.snapshotKeyId, row.snapshotKeyFingerprint],
      );
      for (const k of keys) {
        await c.query("INSERT INTO cluster_keys (cluster, kind, key_version, kek_id, nonce, ciphertext) VALUES ($1, $2, $3, $4, $5, $6)", [
          row.name,
          k.kind,
          k.keyVersion,
          k.sealed.kekId,
          k.sealed.nonce,
          k.sealed.ciphertext,
        ]);
      }
      audit.push({
        action: "cluster.created",
        objectKind: "FabricCluster",
        objectName: row.name,
        cluster: row.name,
        details: { uid: row.uid, generation: row.generation, caFingerprint: row.caFingerprint, snapshotKeyId: row.snapshotKeyId },
      });
      return { result: undefined, audit };
    });
  }

  /** Records a new generation of the spec (keys unchanged). */
  async updateSpec(name: string, uid: string, generation: number, spec: Record<string, unknown>): Promise<void> {
    await decide(this.fence, this.actor, async (c) => {
      const res = await c.query("UPDATE clusters SET generation = $3, spec = $4, updated_at = now() WHERE name = $1 AND uid = $2", [
        name,
        uid,
        generation,
        JSON.stringify(spec),
      ]);
      if ((res.rowCount ?? 0) === 0) throw new Error(`updating cluster ${name}: row of uid ${uid} vanished`);
      return { result: undefined, audit: [{ action: "cluster.updated", objectKind: "FabricCluster", objectName: name, cluster: name, details: { uid, generation } }] };
    });
  }

  /** Deletes the row and its keys; false when there was none (no audit row then). */
  async delete(name: string): Promise<boolean> {
    return decideRow<{ uid: string }>(
      this.fence,
      this.actor,
      "DELETE FROM clusters WHERE name = $1 RETURNING uid",
      [name],
      (r) => ({ action: "cluster.deleted", objectKind: "FabricCluster", objectName: name, cluster: name, details: { uid: r.uid } }),
    );
  }
}
