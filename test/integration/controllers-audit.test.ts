/**
 * The audit chain and the authority fence on a real PostgreSQL: concurrent
 * appends stay one chain, the table refuses UPDATE/DELETE, `fabricctl audit
 * verify` passes an intact chain and names the first tampered row, and a
 * deposed leader's decision writes are refused by the term check.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { PgAuthority, FencedError } from "../../controllers/runtime/index.js";
import { appendAudit, verifyChain } from "../../lib/audit/chain.js";
import { withTransaction } from "../../lib/db/pool.js";
import { ClusterStore, NodeGroupStore } from "../../lib/state/index.js";
import { eventually, fabricctl, kubectl, repoRoot, startTestControlPlane, type TestControlPlane } from "../support/controlplane.js";
import { auditCount, metricSum, startTestControllers, testKek, type TestControllers } from "../support/controllers.js";

describe("controllers: audit chain and authority fence", function () {
  this.timeout(120_000);
  let t: TestControlPlane;
  let ctl: TestControllers;

  before(async () => {
    t = await startTestControlPlane();
    ctl = startTestControllers(t.kc, t.cp.db.pool, testKek());
  });
  after(async () => {
    await ctl?.stop();
    await t?.stop();
  });

  it("audits every change a controller makes, each row hashing the previous one", async () => {
    const r = await kubectl(t.kubeconfig, ["apply", "-f", join(repoRoot, "manifests", "examples", "10-fabriccluster.yaml"), "-f", join(repoRoot, "manifests", "examples", "20-nodegroups.yaml")]);
    assert.equal(r.code, 0, r.stderr);
    await eventually(async () => (await auditCount(t.cp.db.pool)) >= 3);
    const rows = (await t.cp.db.pool.query("SELECT actor, action, object_name, term::int AS term FROM audit_events ORDER BY id")).rows;
    assert.deepEqual(
      rows.map((x: { action: string; object_name: string }) => `${x.action} ${x.object_name}`).sort(),
      ["cluster.created demo", "nodegroup.created demo-eu", "nodegroup.created demo-eu-fra1"],
    );
    for (const x of rows as Array<{ actor: string; term: number }>) {
      assert.equal(x.actor, ctl.identity);
      assert.equal(x.term, ctl.term());
    }
  });

  it("keeps one linear chain under concurrent appends from many connections", async () => {
    await Promise.all(
      Array.from({ length: 8 }, (_, w) =>
        (async () => {
          for (let i = 0; i < 25; i++) {
            await withTransaction(t.cp.db.pool, (c) =>
              appendAudit(c, [{ actor: `writer-${w}`, term: 0, action: "test.append", objectKind: "Test", objectName: `o-${w}-${i}`, details: { i, nested: { w } } }]),
            );
          }
        })(),
      ),
    );
    const v = await verifyChain(t.cp.db.pool);
    assert.ok(v.ok, JSON.stringify(v));
    assert.ok(v.events >= 203);
  });

  it("refuses UPDATE, DELETE and TRUNCATE on the audit table", async () => {
    await assert.rejects(t.cp.db.pool.query("UPDATE audit_events SET actor = 'mallory'"), /append-only/);
    await assert.rejects(t.cp.db.pool.query("DELETE FROM audit_events"), /append-only/);
    await assert.rejects(t.cp.db.pool.query("TRUNCATE audit_events"), /append-only/);
  });

  it("refuses the decision writes of a deposed leader by the term check", async () => {
    const pool = t.cp.db.pool;
    const old = new PgAuthority(pool);
    await old.acquire("old-leader");
    const oldGroups = new NodeGroupStore(pool, old, "old-leader");
    await oldGroups.put({ name: "fence-probe", uid: "u1", cluster: "demo", parent: undefined, generation: 1, ready: true, reason: "Valid" }, undefined);
    const newer = new PgAuthority(pool);
    await newer.acquire("new-leader");
    const before = await auditCount(pool);
    await assert.rejects(
      oldGroups.put({ name: "fence-probe", uid: "u1", cluster: "demo", parent: undefined, generation: 2, ready: true, reason: "Valid" }, undefined),
      (err: unknown) => err instanceof FencedError && err.currentTerm === newer.heldTerm(),
    );
    await assert.rejects(oldGroups.delete("fence-probe"), FencedError);
    await assert.rejects(new ClusterStore(pool, old, "old-leader").delete("demo"), FencedError);
    assert.equal(await auditCount(pool), before);
    const row = (await pool.query("SELECT generation::int AS g FROM node_groups WHERE name = 'fence-probe'")).rows[0] as { g: number };
    assert.equal(row.g, 1);
    // The running controllers hold an older term now: their next decision is refused, nothing is written.
    const fencedBefore = await metricSum(ctl.registry, "fabric_authority_fenced_total");
    const r = await kubectl(t.kubeconfig, ["apply", "-f", "-"], {
      input: JSON.stringify({ apiVersion: "accessfabric.io/v1alpha1", kind: "NodeGroup", metadata: { name: "after-depose" }, spec: { cluster: "demo" } }),
    });
    assert.equal(r.code, 0, r.stderr);
    await eventually(async () => (await metricSum(ctl.registry, "fabric_authority_fenced_total")) > fencedBefore);
    assert.equal((await pool.query("SELECT 1 FROM node_groups WHERE name = 'after-depose'")).rowCount, 0);
    assert.equal(await auditCount(pool), before);
    await new NodeGroupStore(pool, newer, "new-leader").delete("fence-probe");
    assert.equal(await auditCount(pool), before + 1);
  });

  it("verifies an intact chain with fabricctl and names the first tampered row", async () => {
    const ok = await fabricctl(["audit", "verify", "--database-url", t.cp.db.url]);
    assert.equal(ok.code, 0, ok.stderr + ok.stdout);
    const n = await auditCount(t.cp.db.pool);
    assert.match(ok.stdout, new RegExp(`audit chain intact: ${n} events`));

    // An attacker with the table owner's rights: switch the trigger off, edit one row.
    const victim = (await t.cp.db.pool.query<{ id: string }>("SELECT id FROM audit_events ORDER BY id OFFSET 5 LIMIT 1")).rows[0]?.id;
    assert.ok(victim !== undefined);
    await withTransaction(t.cp.db.pool, async (c) => {
      await c.query("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_delete");
      await c.query(`UPDATE audit_events SET details = '{"forged": true}' WHERE id = $1`, [victim]);
      await c.query("ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update_delete");
    });
    const bad = await fabricctl(["audit", "verify", "--database-url", t.cp.db.url]);
    assert.equal(bad.code, 1, bad.stderr + bad.stdout);
    assert.match(bad.stdout, new RegExp(`BROKEN at event id ${victim}\\b`));
    const v = await verifyChain(t.cp.db.pool);
    assert.deepEqual(v.ok ? undefined : v.brokenAt, Number(victim));
  });

  it("detects a removed row by the broken link after it", async () => {
    const state = t.stateDir;
    const rows = (await t.cp.db.pool.query<{ id: string }>("SELECT id FROM audit_events ORDER BY id DESC LIMIT 2")).rows;
    const [last, removed] = rows;
    assert.ok(last && removed);
    await withTransaction(t.cp.db.pool, async (c) => {
      await c.query("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_delete");
      await c.query("DELETE FROM audit_events WHERE id = $1", [removed.id]);
      await c.query("ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update_delete");
    });
    // Through --state-dir this time: the embedded server of the running control plane.
    const bad = await fabricctl(["audit", "verify", "--state-dir", state]);
    assert.equal(bad.code, 1, bad.stderr + bad.stdout);
  });
});

