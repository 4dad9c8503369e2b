/**
 * The migrated PostgreSQL template of test/support/pg-template.ts, which
 * test control planes start from: a seeded data directory is an initialised
 * cluster with every migration of migrations/ applied (migrate() finds
 * nothing to do, as on a control plane's second start), and a data
 * directory that exists already keeps its own cluster.
 */
import assert from "node:assert/strict";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "../../lib/db/embedded-postgres.js";
import { DEFAULT_MIGRATIONS_DIR, migrate, readMigrations } from "../../lib/db/migrate.js";
import { createPool } from "../../lib/db/pool.js";
import { tempStateDir } from "../support/controlplane.js";
import { seedPostgres } from "../support/pg-template.js";

describe("test support: the migrated PostgreSQL template", function () {
  this.timeout(120_000);
  const stateDir = tempStateDir("fabric-pg-template-test-");
  const dataDir = join(stateDir, "postgres");
  let db: EmbeddedDatabase | undefined;

  after(async () => {
    await db?.stop();
    rmSync(stateDir, { recursive: true, force: true });
  });

  it("seeds an initialised cluster with every migration applied, and leaves an existing data directory alone", async () => {
    await seedPostgres(dataDir);
    assert.ok(existsSync(join(dataDir, "PG_VERSION")), "an initialised cluster");
    assert.ok(existsSync(`${dataDir}.password`), "its password beside it");
    assert.ok(!existsSync(join(dataDir, "postmaster.pid")), "a cleanly stopped cluster");
    db = await startEmbeddedPostgres({ dataDir, fsync: false });
    const pool = createPool(db.url, { max: 2 });
    try {
      const files = await readMigrations(DEFAULT_MIGRATIONS_DIR);
      const recorded = await pool.query<{ version: number; checksum: string }>("SELECT version::int AS version, checksum FROM schema_migrations ORDER BY version");
      assert.deepEqual(
        recorded.rows.map((r) => [r.version, r.checksum]),
        files.map((f) => [f.version, f.checksum]),
      );
      assert.deepEqual(await migrate(pool), { applied: [] });
      // Our own cluster from now on: a second seed (a restart) does not replace it.
      await pool.query("CREATE TABLE seeded_once (v int)");
    } finally {
      await pool.end();
    }
    await db.stop();
    await seedPostgres(dataDir);
    db = await startEmbeddedPostgres({ dataDir, fsync: false });
    const again = createPool(db.url, { max: 1 });
    try {
      assert.equal((await again.query("SELECT count(*)::int AS n FROM seeded_once")).rows[0]?.n, 0);
    } finally {
      await again.end();
    }
  });
});
