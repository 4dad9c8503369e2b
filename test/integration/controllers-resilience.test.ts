/**
 * The controllers keep working across API server trouble: the API server
 * process (another process, same state dir and port) restarted mid-watch by
 * SIGTERM and by SIGKILL, and a watch that goes silent without closing (a
 * TCP proxy stops forwarding). A change made afterwards is reconciled.
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "../../lib/db/embedded-postgres.js";
import { createPool } from "../../lib/db/pool.js";
import { eventually, spawnControlPlane, tempStateDir, type ChildControlPlane } from "../support/controlplane.js";
import { metricSum, startTestControllers, testKek, type TestControllers } from "../support/controllers.js";
import { freePort, startTcpProxy, type TcpProxy } from "../support/tcp-proxy.js";
import type pg from "pg";
import { seedPostgres } from "../support/pg-template.js";

const group = "accessfabric.io";
const version = "v1alpha1";

async function readyOf(api: CustomObjectsApi, plural: string, name: string): Promise<string | undefined> {
  const o = (await api.getClusterCustomObject({ group, version, plural, name })) as { status?: { conditions?: Array<{ type: string; status: string }> } };
  return o.status?.conditions?.find((c) => c.type === "Ready")?.status;
}

function loadKc(file: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(file);
  return kc;
}

describe("controllers: API server restarts and silent watches", function () {
  this.timeout(180_000);
  let pgDir: string;
  let db: EmbeddedDatabase;
  let pool: pg.Pool;
  let stateDir: string;
  let port: number;
  let cp: ChildControlPlane | undefined;
  let ctl: TestControllers | undefined;
  let proxy: TcpProxy | undefined;
  const kek = testKek();

  const spawnApi = async (): Promise<ChildControlPlane> =>
    spawnControlPlane(stateDir, ["--controllers=false", "--port", String(port)], { DATABASE_URL: db.url });

  before(async () => {
    pgDir = tempStateDir("fabric-pg-");
    await seedPostgres(join(pgDir, "postgres"));
    db = await startEmbeddedPostgres({ dataDir: join(pgDir, "postgres"), fsync: false });
    pool = createPool(db.url, { max: 10 });
    stateDir = tempStateDir();
    port = await freePort();
    cp = await spawnApi();
  });
  after(async () => {
    await ctl?.stop();
    await proxy?.close();
    if (cp !== undefined) {
      cp.child.kill("SIGTERM");
      await cp.exited;
    }
    await pool?.end();
    await db?.stop();
    rmSync(stateDir, { recursive: true, force: true });
    rmSync(pgDir, { recursive: true, force: true });
  });

  it("reconciles changes made after the API server was restarted (SIGTERM, then SIGKILL) mid-watch", async () => {
    assert.ok(cp);
    const kubeconfig = cp.kubeconfig;
    ctl = startTestControllers(loadKc(kubeconfig), pool, kek, { informer: { silenceTimeoutMs: 5_000 } });
    const api = () => loadKc(kubeconfig).makeApiClient(CustomObjectsApi);
    await api().createClusterCustomObject({ group, version, plural: "fabricclusters", body: { apiVersion: `${group}/${version}`, kind: "FabricCluster", metadata: { name: "restart" }, spec: {} } });
    await eventually(async () => (await readyOf(api(), "fabricclusters", "restart")) === "True");

    for (const signal of ["SIGTERM", "SIGKILL"] as const) {
      const restartsBefore = await metricSum(ctl.registry, "fabric_informer_watch_restarts_total");
      cp.child.kill(signal);
      await cp.exited;
      cp = await spawnApi();
      const name = `after-${signal.toLowerCase()}`;
      await api().createClusterCustomObject({ group, version, plural: "nodegroups", body: { apiVersion: `${group}/${version}`, kind: "NodeGroup", metadata: { name }, spec: { cluster: "restart" } } });
      await eventually(async () => (await readyOf(api(), "nodegroups", name)) === "True", 30_000);
      assert.ok((await metricSum(ctl.registry, "fabric_informer_watch_restarts_total")) > restartsBefore);
    }
    await ctl.stop();
    ctl = undefined;
  });

  it("recovers from watches that stop sending without closing", async () => {
    assert.ok(cp);
    // The controllers reach the API server only through the proxy.
    const target = new URL(loadKc(cp.kubeconfig).getCurrentCluster()?.server ?? "");
    proxy = await startTcpProxy(target.hostname, Number(target.port));
    const kc = loadKc(cp.kubeconfig);
    const cluster = kc.getCurrentCluster();
    assert.ok(cluster);
    kc.clusters = kc.clusters.map((c) => (c.name === cluster.name ? { ...c, server: `https://127.0.0.1:${proxy?.port}` } : c));
    ctl = startTestControllers(kc, pool, kek, { informer: { silenceTimeoutMs: 3_000, relistAfterSilentRestarts: 3 } });
    const direct = loadKc(cp.kubeconfig).makeApiClient(CustomObjectsApi);
    await eventually(() => ctl?.isLeader());
    await direct.createClusterCustomObject({ group, version, plural: "nodegroups", body: { apiVersion: `${group}/${version}`, kind: "NodeGroup", metadata: { name: "before-silence" }, spec: { cluster: "restart" } } });
    await eventually(async () => (await readyOf(direct, "nodegroups", "before-silence")) === "True");
    // Silence every connection: the two watch streams stay silent, pooled idle connections thaw on their next request.
    const silentBefore = await metricSum(ctl.registry, "fabric_informer_watch_restarts_total", { reason: "silent" });
    assert.ok(proxy.freeze() >= 2);
    await direct.createClusterCustomObject({ group, version, plural: "nodegroups", body: { apiVersion: `${group}/${version}`, kind: "NodeGroup", metadata: { name: "after-silence" }, spec: { cluster: "restart" } } });
    await eventually(async () => (await readyOf(direct, "nodegroups", "after-silence")) === "True", 30_000);
    assert.ok((await metricSum(ctl.registry, "fabric_informer_watch_restarts_total", { reason: "silent" })) > silentBefore);
  });
});
