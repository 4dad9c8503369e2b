/**
 * Two control-plane processes against one PostgreSQL (each with its own API
 * server; they share objects and the Lease through the database): only the
 * Lease holder reconciles; SIGKILL of the leader hands over within the lease
 * timing and the new leader, under a higher authority term, reconciles a new
 * change. Deposed-leader write refusal is tested directly in
 * test/integration/controllers-audit.test.ts.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { CoordinationV1Api, CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "../../lib/db/embedded-postgres.js";
import { createPool } from "../../lib/db/pool.js";
import { verifyChain } from "../../lib/audit/chain.js";
import { eventually, spawnControlPlane, tempStateDir, type ChildControlPlane } from "../support/controlplane.js";
import type pg from "pg";
import { seedPostgres } from "../support/pg-template.js";

const group = "accessfabric.io";
const version = "v1alpha1";
const leaseFlags = ["--leader-elect-lease-duration", "4", "--leader-elect-renew-deadline", "3", "--leader-elect-retry-period", "1"];

function kcOf(cp: ChildControlPlane): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(cp.kubeconfig);
  return kc;
}

function metricsUrlOf(cp: ChildControlPlane): string {
  for (const line of cp.output().split("\n")) {
    if (!line.includes('"control plane ready"')) continue;
    const m = (JSON.parse(line) as { metrics?: unknown }).metrics;
    if (typeof m === "string") return m;
  }
  throw new Error("no metrics url in the ready line");
}

async function metric(cp: ChildControlPlane, name: string): Promise<number> {
  const text = await (await fetch(metricsUrlOf(cp))).text();
  let sum = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(name + "{") || line.startsWith(name + " ")) sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

describe("controllers: leader election across two control-plane processes", function () {
  this.timeout(240_000);
  let pgDir: string;
  let db: EmbeddedDatabase;
  let pool: pg.Pool;
  const dirs: string[] = [];
  const procs = new Map<string, ChildControlPlane>();
  const env = { FABRIC_KEK: randomBytes(32).toString("base64") };

  before(async () => {
    pgDir = tempStateDir("fabric-pg-");
    await seedPostgres(join(pgDir, "postgres"));
    db = await startEmbeddedPostgres({ dataDir: join(pgDir, "postgres"), fsync: false });
    pool = createPool(db.url, { max: 4 });
    for (const id of ["cp-a", "cp-b"]) {
      const dir = tempStateDir();
      dirs.push(dir);
      procs.set(id, await spawnControlPlane(dir, ["--identity", id, ...leaseFlags], { ...env, DATABASE_URL: db.url }));
    }
  });
  after(async () => {
    for (const p of procs.values()) {
      p.child.kill("SIGTERM");
      await p.exited;
    }
    await pool?.end();
    await db?.stop();
    for (const d of [...dirs, pgDir]) rmSync(d, { recursive: true, force: true });
  });

  it("lets only the leader reconcile and hands over to the standby when the leader is SIGKILLed", async () => {
    const any = [...procs.values()][0];
    assert.ok(any);
    let leaseApi = kcOf(any).makeApiClient(CoordinationV1Api);
    const holder = async (): Promise<string | undefined> => {
      const l = await leaseApi.readNamespacedLease({ namespace: "kube-system", name: "fabric-controllers" });
      return l.spec?.holderIdentity || undefined;
    };
    const leaderId = await eventually(holder);
    const standbyId = leaderId === "cp-a" ? "cp-b" : "cp-a";
    const leader = procs.get(leaderId);
    const standby = procs.get(standbyId);
    assert.ok(leader && standby);
    leaseApi = kcOf(standby).makeApiClient(CoordinationV1Api);

    // Objects written through the standby's API server reach the leader through the shared database.
    const api = kcOf(standby).makeApiClient(CustomObjectsApi);
    await api.createClusterCustomObject({ group, version, plural: "fabricclusters", body: { apiVersion: `${group}/${version}`, kind: "FabricCluster", metadata: { name: "ha" }, spec: {} } });
    for (let i = 0; i < 5; i++) {
      await api.createClusterCustomObject({ group, version, plural: "nodegroups", body: { apiVersion: `${group}/${version}`, kind: "NodeGroup", metadata: { name: `ha-${i}` }, spec: { cluster: "ha" } } });
    }
    const readyStatus = async (plural: string, name: string) => {
      const o = (await api.getClusterCustomObject({ group, version, plural, name })) as { status?: { authorityHolder?: string; authorityTerm?: number; conditions?: Array<{ type: string; status: string }> } };
      return o.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ? o.status : undefined;
    };
    const st = await eventually(() => readyStatus("fabricclusters", "ha"));
    for (let i = 0; i < 5; i++) await eventually(() => readyStatus("nodegroups", `ha-${i}`));
    assert.equal(st.authorityHolder, leaderId);
    const firstTerm = st.authorityTerm ?? 0;

    const actors = (await pool.query<{ actor: string }>("SELECT DISTINCT actor FROM audit_events")).rows.map((r) => r.actor);
    assert.deepEqual(actors, [leaderId]);
    assert.equal(await metric(standby, "controller_runtime_reconcile_total"), 0);
    assert.ok((await metric(leader, "controller_runtime_reconcile_total")) >= 6);
    assert.equal(await metric(leader, "leader_election_master_status"), 1);
    assert.equal(await metric(standby, "leader_election_master_status"), 0);

    leader.child.kill("SIGKILL");
    await leader.exited;
    procs.delete(leaderId);
    const killedAt = Date.now();
    // Handover: lease duration (4 s) plus retry jitter; poll well beyond it.
    await eventually(async () => (await holder()) === standbyId, 20_000);
    await eventually(async () => (await metric(standby, "leader_election_master_status")) === 1, 20_000).catch((err: unknown) => {
      throw new Error(`standby never led: ${String(err)}\n${standby.output().slice(-4000)}`);
    });
    const handoverMs = Date.now() - killedAt;
    process.stdout.write(`      handover observed after ${handoverMs} ms (lease 4 s, renew 3 s, retry 1 s)\n`);

    await api.createClusterCustomObject({ group, version, plural: "nodegroups", body: { apiVersion: `${group}/${version}`, kind: "NodeGroup", metadata: { name: "after-failover" }, spec: { cluster: "ha" } } });
    await eventually(() => readyStatus("nodegroups", "after-failover"), 20_000);
    const st2 = await eventually(async () => {
      const s = await readyStatus("fabricclusters", "ha");
      return s?.authorityHolder === standbyId ? s : undefined;
    });
    assert.ok((st2.authorityTerm ?? 0) > firstTerm);
    const a = await pool.query<{ actor: string; term: string }>("SELECT actor, term FROM audit_events WHERE object_name = 'after-failover'");
    assert.equal(a.rows[0]?.actor, standbyId);
    assert.ok(Number(a.rows[0]?.term) > firstTerm);
    const v = await verifyChain(pool);
    assert.ok(v.ok, JSON.stringify(v));
  });
});
