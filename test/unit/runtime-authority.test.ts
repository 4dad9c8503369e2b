/**
 * PgAuthority against a real PostgreSQL (embedded, migrated with the
 * repository's migrations): fencing is a property of the database's locking,
 * which a fake could not show.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { PgAuthority } from "../../controllers/runtime/authority.js";
import { FencedError } from "../../controllers/runtime/errors.js";
import { openDatabase, type Database } from "../../lib/db/database.js";
import { seedStateDir } from "../support/pg-template.js";

describe("runtime PgAuthority", function () {
  this.timeout(60_000);
  let db: Database;
  let stateDir: string;

  before(async () => {
    stateDir = await fs.mkdtemp(path.join(os.tmpdir(), "fabric-authority-test-"));
    await seedStateDir(stateDir);
    db = await openDatabase({ stateDir, fsync: false });
    await db.pool.query("CREATE TABLE decisions (id serial PRIMARY KEY, what text NOT NULL)");
  });

  after(async () => {
    await db?.close();
    await fs.rm(stateDir, { recursive: true, force: true });
  });

  beforeEach(async () => {
    await db.pool.query("TRUNCATE decisions");
  });

  const decisions = async (): Promise<string[]> =>
    (await db.pool.query<{ what: string }>("SELECT what FROM decisions ORDER BY id")).rows.map((r) => r.what);

  it("refuses fenced work before any term was acquired", async () => {
    const a = new PgAuthority(db.pool);
    await assert.rejects(a.runFenced(async () => undefined), FencedError);
  });

  it("increments the term on every acquisition and records the holder", async () => {
    const a = new PgAuthority(db.pool);
    const t1 = await a.acquire("a");
    const t2 = await a.acquire("a");
    assert.equal(t2, t1 + 1);
    const row = (await db.pool.query<{ holder: string }>("SELECT holder FROM authority WHERE id = 1")).rows[0];
    assert.equal(row?.holder, "a");
  });

  it("commits the work of the current term holder", async () => {
    const a = new PgAuthority(db.pool);
    await a.acquire("a");
    const out = await a.runFenced(async (c) => {
      await c.query("INSERT INTO decisions (what) VALUES ('approve join')");
      return "ok";
    });
    assert.equal(out, "ok");
    assert.deepEqual(await decisions(), ["approve join"]);
  });

  it("refuses a deposed leader's decision and writes nothing", async () => {
    const a = new PgAuthority(db.pool);
    const b = new PgAuthority(db.pool);
    const ta = await a.acquire("a");
    const tb = await b.acquire("b");
    let ran = false;
    await assert.rejects(
      a.runFenced(async (c) => {
        ran = true;
        await c.query("INSERT INTO decisions (what) VALUES ('stale')");
      }),
      (err: unknown) => err instanceof FencedError && err.heldTerm === ta && err.currentTerm === tb,
    );
    assert.equal(ran, false);
    await b.runFenced(async (c) => c.query("INSERT INTO decisions (what) VALUES ('fresh')"));
    assert.deepEqual(await decisions(), ["fresh"]);
  });

  it("rolls back when the fenced work throws", async () => {
    const a = new PgAuthority(db.pool);
    await a.acquire("a");
    await assert.rejects(
      a.runFenced(async (c) => {
        await c.query("INSERT INTO decisions (what) VALUES ('half')");
        throw new Error("boom");
      }),
      /boom/,
    );
    assert.deepEqual(await decisions(), []);
  });

  it("makes a new leader's acquisition wait for a decision in flight", async () => {
    const a = new PgAuthority(db.pool);
    const b = new PgAuthority(db.pool);
    await a.acquire("a");
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let inside!: () => void;
    const entered = new Promise<void>((r) => (inside = r));
    const work = a.runFenced(async (c) => {
      inside();
      await gate;
      await c.query("INSERT INTO decisions (what) VALUES ('in flight')");
    });
    await entered;
    let acquired = false;
    const takeover = b.acquire("b").then(() => (acquired = true));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(acquired, false, "the term cannot move while a fenced transaction holds its share lock");
    release();
    await work;
    await takeover;
    assert.deepEqual(await decisions(), ["in flight"]);
    await assert.rejects(a.runFenced(async () => undefined), FencedError);
  });

  it("refuses fenced work after relinquish", async () => {
    const a = new PgAuthority(db.pool);
    await a.acquire("a");
    a.relinquish();
    await assert.rejects(a.runFenced(async () => undefined), FencedError);
  });
});
