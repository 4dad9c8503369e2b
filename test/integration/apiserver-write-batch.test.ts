/**
 * Group-committed API writes (apiserver/write-batcher.ts) against the real
 * api_write_batch function in PostgreSQL: revisions in order with one event
 * each, per-element conditions, and a broken element failing alone.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { sharedControlPlane } from "../support/controlplane.js";
import { WriteBatcher, type WriteOp } from "../../apiserver/write-batcher.js";
import type { KubeObject } from "../../apiserver/object.js";

const g = "test.batch.io";
const r = "widgets";

function obj(name: string, extra: Record<string, unknown> = {}): KubeObject {
  return { apiVersion: `${g}/v1`, kind: "Widget", metadata: { name }, ...extra } as KubeObject;
}

describe("API write batches (api_write_batch)", function () {
  this.timeout(60_000);

  it("commits concurrent writes in batches: consecutive revisions, one event each, a stale element fails alone", async () => {
    const { cp } = await sharedControlPlane();
    const pool = cp.db.pool;
    const writer = new WriteBatcher(pool, 1, 50);
    const tag = randomUUID().slice(0, 8);
    const names = Array.from({ length: 120 }, (_, i) => `w-${tag}-${i}`);
    // 120 creates at once through one writer with one batch in flight: they
    // must be grouped (fewer calls than writes) and each must land.
    const rvs = await Promise.all(
      names.map((n) => writer.write({ op: "create", g, r, ns: "", n, uid: randomUUID(), d: obj(n) })),
    );
    assert.ok(rvs.every((x) => x !== undefined), "every create committed");
    assert.equal(writer.stats.writes, names.length);
    assert.ok(writer.stats.batches < names.length / 2, `grouped: ${writer.stats.batches} calls for ${names.length} writes`);
    const nums = rvs.map(Number).sort((a, b) => a - b);
    assert.equal(new Set(nums).size, names.length, "distinct revisions");
    const stored = await pool.query<{ name: string; rv: string; data_rv: string }>(
      "SELECT name, rv::text, data->'metadata'->>'resourceVersion' AS data_rv FROM api_objects WHERE api_group=$1 AND name LIKE $2",
      [g, `w-${tag}-%`],
    );
    assert.equal(stored.rowCount, names.length);
    for (const row of stored.rows) assert.equal(row.rv, row.data_rv, "metadata.resourceVersion is the row's revision");
    const events = await pool.query<{ rv: string; type: string }>(
      "SELECT rv::text, type FROM api_events WHERE api_group=$1 AND name LIKE $2 ORDER BY api_events.rv",
      [g, `w-${tag}-%`],
    );
    assert.deepEqual(events.rows.map((e) => Number(e.rv)), nums, "one ADDED event per create, at its revision");
    assert.ok(events.rows.every((e) => e.type === "ADDED"));

    // Two updates decided on the same revision, sent together: exactly one wins.
    const name0 = names[0] as string;
    const base: Omit<WriteOp, "op" | "d"> = { g, r, ns: "", n: name0, rv: rvs[0] };
    const [a, b] = await Promise.all([
      writer.write({ ...base, op: "update", d: obj(name0, { spec: { v: "a" } }) }),
      writer.write({ ...base, op: "update", d: obj(name0, { spec: { v: "b" } }) }),
    ]);
    assert.equal([a, b].filter((x) => x !== undefined).length, 1, "one of two stale-racing updates commits");
    // A create of an existing object writes nothing and says so.
    assert.equal(await writer.write({ op: "create", g, r, ns: "", n: name0, uid: randomUUID(), d: obj(name0) }), undefined);
    // A delete on a stale revision writes nothing; on the current one it removes the object and records DELETED.
    assert.equal(await writer.write({ op: "delete", g, r, ns: "", n: name0, rv: rvs[0], d: obj(name0) }), undefined);
    const current = (a ?? b) as string;
    const del = await writer.write({ op: "delete", g, r, ns: "", n: name0, rv: current, d: obj(name0) });
    assert.ok(del !== undefined && Number(del) > Number(current));
    const gone = await pool.query("SELECT 1 FROM api_objects WHERE api_group=$1 AND name=$2", [g, name0]);
    assert.equal(gone.rowCount, 0);
    const delEv = await pool.query<{ type: string; rv: string }>("SELECT type, data->'metadata'->>'resourceVersion' AS rv FROM api_events WHERE rv=$1", [del]);
    assert.deepEqual(delEv.rows[0], { type: "DELETED", rv: del });
  });

  it("a broken element fails alone: the others of its batch still commit", async () => {
    const { cp } = await sharedControlPlane();
    const pool = cp.db.pool;
    const writer = new WriteBatcher(pool, 1, 50);
    const tag = randomUUID().slice(0, 8);
    // Occupy the writer so the next writes queue up into one batch.
    const first = writer.write({ op: "create", g, r, ns: "", n: `b-${tag}-first`, uid: randomUUID(), d: obj(`b-${tag}-first`) });
    const good = Array.from({ length: 10 }, (_, i) =>
      writer.write({ op: "create", g, r, ns: "", n: `b-${tag}-${i}`, uid: randomUUID(), d: obj(`b-${tag}-${i}`) }),
    );
    // Not a uuid: PostgreSQL rejects the whole statement with 22P02.
    const bad = writer.write({ op: "create", g, r, ns: "", n: `b-${tag}-bad`, uid: "not-a-uuid", d: obj(`b-${tag}-bad`) });
    await first;
    await assert.rejects(bad, (err: { code?: string }) => err.code === "22P02");
    const rvs = await Promise.all(good);
    assert.ok(rvs.every((x) => x !== undefined), "the good writes of the broken batch committed");
    const n = await pool.query("SELECT 1 FROM api_objects WHERE api_group=$1 AND name LIKE $2", [g, `b-${tag}-%`]);
    assert.equal(n.rowCount, 11, "first + 10 good, nothing for the broken one");
  });
});
