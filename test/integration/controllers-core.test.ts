/**
 * The FabricCluster and NodeGroup controllers against the real API server,
 * real PostgreSQL, the real kubectl and client-node: Ready for the examples,
 * tree validation reasons, keys sealed in PostgreSQL, idempotent reconciles,
 * level-based cleanup (also of deletes made while the controllers were down).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { CustomObjectsApi } from "@kubernetes/client-node";
import { open } from "../../lib/crypto/kek.js";
import { ed25519PublicOf, certificateFingerprint } from "../../lib/crypto/cluster-keys.js";
import { clusterKeyAad } from "../../lib/state/index.js";
import { verifyChain } from "../../lib/audit/chain.js";
import { eventually, kubectl, repoRoot, startTestControlPlane, type TestControlPlane } from "../support/controlplane.js";
import { auditCount, metricSum, startTestControllers, testKek, type TestControllers } from "../support/controllers.js";

const group = "accessfabric.io";
const version = "v1alpha1";

interface Cond {
  type: string;
  status: string;
  reason: string;
  message: string;
  observedGeneration?: number;
}
interface Obj {
  metadata: { name: string; resourceVersion: string; generation?: number };
  status?: { conditions?: Cond[]; [k: string]: unknown };
}

describe("controllers: FabricCluster and NodeGroup", function () {
  this.timeout(120_000);
  let t: TestControlPlane;
  let ctl: TestControllers;
  let api: CustomObjectsApi;
  const kek = testKek();

  const get = async (plural: string, name: string): Promise<Obj> => (await api.getClusterCustomObject({ group, version, plural, name })) as Obj;
  const ready = async (plural: string, name: string): Promise<Cond | undefined> => {
    const o = await get(plural, name);
    return o.status?.conditions?.find((c) => c.type === "Ready" && c.observedGeneration === o.metadata.generation);
  };
  const waitReady = (plural: string, name: string, status: "True" | "False", reason?: string) =>
    eventually(async () => {
      const c = await ready(plural, name);
      return c !== undefined && c.status === status && (reason === undefined || c.reason === reason) ? c : undefined;
    });
  const applyGroup = (name: string, cluster: string, parent?: string) =>
    kubectl(t.kubeconfig, ["apply", "-f", "-"], {
      input: JSON.stringify({ apiVersion: `${group}/${version}`, kind: "NodeGroup", metadata: { name }, spec: { cluster, ...(parent ? { parent } : {}) } }),
    }).then((r) => assert.equal(r.code, 0, r.stderr));

  before(async () => {
    t = await startTestControlPlane();
    api = t.kc.makeApiClient(CustomObjectsApi);
    ctl = startTestControllers(t.kc, t.cp.db.pool, kek);
  });
  after(async () => {
    await ctl?.stop();
    await t?.stop();
  });

  it("makes the examples Ready: kubectl wait succeeds, fingerprints match the sealed keys in PostgreSQL", async () => {
    const ex = join(repoRoot, "manifests", "examples");
    const r = await kubectl(t.kubeconfig, ["apply", "-f", join(ex, "00-namespace.yaml"), "-f", join(ex, "10-fabriccluster.yaml"), "-f", join(ex, "20-nodegroups.yaml")]);
    assert.equal(r.code, 0, r.stderr);
    const w = await kubectl(t.kubeconfig, ["wait", "--for=condition=Ready", "fabriccluster/demo", "nodegroup/demo-eu", "nodegroup/demo-eu-fra1", "--timeout=60s"]);
    assert.equal(w.code, 0, w.stderr + w.stdout);

    const fc = await get("fabricclusters", "demo");
    const st = fc.status ?? {};
    const row = (await t.cp.db.pool.query("SELECT * FROM clusters WHERE name = 'demo'")).rows[0] as Record<string, string>;
    assert.equal(st.caFingerprint, row.ca_fingerprint);
    assert.equal(st.caFingerprint, certificateFingerprint(row.ca_cert_pem));
    assert.equal(st.snapshotKeyFingerprint, row.snapshot_key_fingerprint);
    assert.equal(st.snapshotKeyId, row.snapshot_key_id);
    assert.match(String(st.snapshotKeyId), /^[0-9a-f]{16}$/);
    assert.equal(st.authorityHolder, ctl.identity);
    assert.equal(st.authorityTerm, ctl.term());
    assert.doesNotMatch(JSON.stringify(fc), /PRIVATE KEY/);

    const keys = (await t.cp.db.pool.query("SELECT kind, key_version, kek_id, nonce, ciphertext FROM cluster_keys WHERE cluster = 'demo' ORDER BY kind")).rows as Array<{
      kind: "ca" | "snapshot";
      key_version: number;
      kek_id: string;
      nonce: Buffer;
      ciphertext: Buffer;
    }>;
    assert.deepEqual(keys.map((k) => k.kind), ["ca", "snapshot"]);
    for (const k of keys) assert.equal(k.kek_id, kek.id);
    const snap = keys[1];
    assert.ok(snap);
    const sealed = { kekId: snap.kek_id, nonce: snap.nonce, ciphertext: snap.ciphertext };
    const der = open(kek, sealed, clusterKeyAad("demo", "snapshot", 1));
    assert.equal(ed25519PublicOf(der).toString("base64"), row.snapshot_public_key);
    // The additional data binds the ciphertext to its row.
    assert.throws(() => open(kek, sealed, clusterKeyAad("other", "snapshot", 1)), /authentication failed/);

    const fra = await get("nodegroups", "demo-eu-fra1");
    assert.equal(fra.status?.path, "demo-eu/demo-eu-fra1");
    assert.equal((await get("nodegroups", "demo-eu")).status?.childCount, 1);
  });

  it("reports a missing parent as ParentNotFound and turns Ready when the parent appears", async () => {
    await applyGroup("orphan-child", "demo", "late-parent");
    const c = await waitReady("nodegroups", "orphan-child", "False", "ParentNotFound");
    assert.match(c.message, /late-parent/);
    const row = (await t.cp.db.pool.query("SELECT ready, reason FROM node_groups WHERE name = 'orphan-child'")).rows[0] as { ready: boolean; reason: string };
    assert.deepEqual(row, { ready: false, reason: "ParentNotFound" });
    await applyGroup("late-parent", "demo");
    await waitReady("nodegroups", "orphan-child", "True", "Valid");
  });

  it("reports a cycle as CycleDetected on every member and recovers when it is broken", async () => {
    await applyGroup("cyc-a", "demo", "cyc-b");
    await applyGroup("cyc-b", "demo", "cyc-c");
    await applyGroup("cyc-c", "demo", "cyc-a");
    await applyGroup("cyc-below", "demo", "cyc-a");
    for (const n of ["cyc-a", "cyc-b", "cyc-c"]) {
      const c = await waitReady("nodegroups", n, "False", "CycleDetected");
      assert.match(c.message, /->/);
    }
    await waitReady("nodegroups", "cyc-below", "False", "ParentNotReady");
    await applyGroup("cyc-c", "demo"); // c becomes a root: the chain a -> b -> c ends
    for (const n of ["cyc-a", "cyc-b", "cyc-c", "cyc-below"]) await waitReady("nodegroups", n, "True", "Valid");
    assert.equal((await get("nodegroups", "cyc-below")).status?.path, "cyc-c/cyc-b/cyc-a/cyc-below");
  });

  it("reports ParentInOtherCluster and ClusterNotFound, and recovers when fixed", async () => {
    await applyGroup("ghost-root", "ghost");
    await waitReady("nodegroups", "ghost-root", "False", "ClusterNotFound");
    await applyGroup("cross-child", "demo", "ghost-root");
    await waitReady("nodegroups", "cross-child", "False", "ParentInOtherCluster");
    const r = await kubectl(t.kubeconfig, ["apply", "-f", "-"], {
      input: JSON.stringify({ apiVersion: `${group}/${version}`, kind: "FabricCluster", metadata: { name: "ghost" }, spec: {} }),
    });
    assert.equal(r.code, 0, r.stderr);
    await waitReady("nodegroups", "ghost-root", "True", "Valid");
    await applyGroup("cross-child", "ghost", "ghost-root");
    await waitReady("nodegroups", "cross-child", "True", "Valid");
    await waitReady("fabricclusters", "ghost", "True", "KeysReady");
  });

  it("is idempotent: reconciling everything again changes no row, adds no audit row and writes no status", async () => {
    const names = ["demo-eu", "demo-eu-fra1", "orphan-child", "cyc-a", "cross-child"];
    // Let the work of the previous tests settle: no queued keys, nothing in flight.
    await eventually(async () => (await metricSum(ctl.registry, "workqueue_depth")) === 0 && (await metricSum(ctl.registry, "controller_runtime_active_workers")) === 0);
    const snapshot = async () => ({
      clusters: (await t.cp.db.pool.query("SELECT name, xmin::text AS x FROM clusters ORDER BY name")).rows,
      groups: (await t.cp.db.pool.query("SELECT name, xmin::text AS x FROM node_groups ORDER BY name")).rows,
      keys: (await t.cp.db.pool.query("SELECT cluster, kind, xmin::text AS x FROM cluster_keys ORDER BY 1, 2")).rows,
      audit: await auditCount(t.cp.db.pool),
      rvs: await Promise.all([...names.map((n) => get("nodegroups", n)), get("fabricclusters", "demo"), get("fabricclusters", "ghost")].map(async (p) => (await p).metadata.resourceVersion)),
    });
    const before = await snapshot();
    const reconciles = await metricSum(ctl.registry, "controller_runtime_reconcile_total", { result: "success" });
    const objects = (await metricSum(ctl.registry, "fabric_informer_objects"));
    ctl.enqueueAll();
    await eventually(async () => (await metricSum(ctl.registry, "controller_runtime_reconcile_total", { result: "success" })) >= reconciles + objects);
    await eventually(async () => (await metricSum(ctl.registry, "workqueue_depth")) === 0 && (await metricSum(ctl.registry, "controller_runtime_active_workers")) === 0);
    assert.deepEqual(await snapshot(), before);
  });

  it("deletes the rows of deleted objects, with an audit row each", async () => {
    const r = await kubectl(t.kubeconfig, ["delete", "nodegroup", "orphan-child"]);
    assert.equal(r.code, 0, r.stderr);
    await eventually(async () => (await t.cp.db.pool.query("SELECT 1 FROM node_groups WHERE name = 'orphan-child'")).rowCount === 0);
    const a = await t.cp.db.pool.query("SELECT actor, action FROM audit_events WHERE object_name = 'orphan-child' ORDER BY id DESC LIMIT 1");
    assert.deepEqual(a.rows[0], { actor: ctl.identity, action: "nodegroup.deleted" });
  });

  it("cleans up rows of objects deleted while the controllers were down", async () => {
    await ctl.stop();
    for (const args of [
      ["delete", "fabriccluster", "ghost"],
      ["delete", "nodegroup", "ghost-root", "cross-child"],
    ]) {
      const r = await kubectl(t.kubeconfig, args);
      assert.equal(r.code, 0, r.stderr);
    }
    assert.equal((await t.cp.db.pool.query("SELECT 1 FROM clusters WHERE name = 'ghost'")).rowCount, 1);
    ctl = startTestControllers(t.kc, t.cp.db.pool, kek);
    await eventually(async () => (await t.cp.db.pool.query("SELECT 1 FROM clusters WHERE name = 'ghost'")).rowCount === 0);
    await eventually(async () => (await t.cp.db.pool.query("SELECT 1 FROM node_groups WHERE name IN ('ghost-root', 'cross-child')")).rowCount === 0);
    assert.equal((await t.cp.db.pool.query("SELECT 1 FROM cluster_keys WHERE cluster = 'ghost'")).rowCount, 0);
    // The new instance drew a new term and re-published it.
    await eventually(async () => (await get("fabricclusters", "demo")).status?.authorityTerm === ctl.term());
    const v = await verifyChain(t.cp.db.pool);
    assert.ok(v.ok, JSON.stringify(v));
  });
});
