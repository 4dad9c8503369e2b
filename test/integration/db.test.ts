import { strict as assert } from "node:assert";
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import pg from "pg";
import { openDatabase } from "../../lib/db/database.js";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "../../lib/db/embedded-postgres.js";
import { DEFAULT_MIGRATIONS_DIR, migrate } from "../../lib/db/migrate.js";
import { createPool, withTransaction } from "../../lib/db/pool.js";


const repoRoot = fileURLToPath(new URL("../../", import.meta.url));

/**
 * A fresh state directory. mkdtemp makes it 0700, the case where the
 * postgres OS user (when we are root) cannot traverse it without help.
 */
async function tempStateDir(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), "fabric-db-test-"));
}

/** Processes whose command line mentions `needle` (the postmaster runs as `postgres -D <dataDir> ...`). */
async function processesMentioning(needle: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await fs.readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await fs.readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    if (cmdline.split("\0").includes(needle)) pids.push(Number(entry));
  }
  return pids;
}

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** Writes migration files into a new temporary directory. */
async function migrationsDir(files: Record<string, string>): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "fabric-migrations-"));
  for (const [name, sql] of Object.entries(files)) await fs.writeFile(path.join(dir, name), sql);
  return dir;
}

describe("embedded postgres", function () {
  this.timeout(60_000);
  const cleanups: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
  });

  it("initialises a cluster on first start and reuses its data, port and password on the next", async () => {
    const stateDir = await tempStateDir();
    cleanups.push(() => fs.rm(stateDir, { recursive: true, force: true }));
    const dataDir = path.join(stateDir, "postgres");

    const first = await startEmbeddedPostgres({ dataDir, fsync: false });
    cleanups.push(() => first.stop());
    await fs.access(path.join(dataDir, "PG_VERSION"));
    await withClient(first.url, async (c) => {
      await c.query("CREATE TABLE survivor (v text)");
      await c.query("INSERT INTO survivor VALUES ('first start')");
    });
    await first.stop();
    assert.deepEqual(await processesMentioning(dataDir), []);

    const second = await startEmbeddedPostgres({ dataDir, fsync: false });
    cleanups.push(() => second.stop());
    assert.equal(second.port, first.port, "remembered port reused");
    assert.equal(second.url, first.url);
    const rows = await withClient(second.url, (c) => c.query("SELECT v FROM survivor"));
    assert.deepEqual(rows.rows, [{ v: "first start" }]);
    await second.stop();
  });

  it("listens on loopback only, requires the generated password and keeps secrets private", async () => {
    const stateDir = await tempStateDir();
    cleanups.push(() => fs.rm(stateDir, { recursive: true, force: true }));
    const dataDir = path.join(stateDir, "postgres");
    const db = await startEmbeddedPostgres({ dataDir, fsync: false });
    cleanups.push(() => db.stop());

    const settings = await withClient(db.url, async (c) => {
      const r = await c.query<{ name: string; setting: string }>(
        "SELECT name, setting FROM pg_settings WHERE name IN ('listen_addresses', 'fsync', 'max_connections', 'password_encryption')",
      );
      return Object.fromEntries(r.rows.map((x) => [x.name, x.setting]));
    });
    assert.deepEqual(settings, {
      fsync: "off",
      listen_addresses: "127.0.0.1",
      max_connections: "100",
      password_encryption: "scram-sha-256",
    });

    const wrong = new URL(db.url);
    wrong.password = "not-the-password";
    await assert.rejects(withClient(wrong.toString(), (c) => c.query("SELECT 1")), /password authentication failed/);

    const pwStat = await fs.stat(path.join(stateDir, "postgres.password"));
    assert.equal(pwStat.mode & 0o777, 0o600);
    const dataStat = await fs.stat(dataDir);
    assert.equal(dataStat.mode & 0o777, 0o700);
    if (process.getuid?.() === 0) {
      const status = await fs.readFile(`/proc/${db.pid}/status`, "utf8");
      const uid = /^Uid:\s+(\d+)/m.exec(status)?.[1];
      assert.notEqual(uid, "0", "postmaster must not run as root");
      assert.equal(dataStat.uid, Number(uid), "data dir owned by the server's user");
    }
  });

  it("recovers from an owner killed with SIGKILL: same data, no orphaned postmaster", async () => {
    const stateDir = await tempStateDir();
    cleanups.push(() => fs.rm(stateDir, { recursive: true, force: true }));
    const dataDir = path.join(stateDir, "postgres");

    // .mts: a script outside the repo is otherwise compiled as CommonJS.
    const script = path.join(stateDir, "owner.mts");
    const lib = (f: string): string => pathToFileURL(path.join(repoRoot, "lib/db", f)).href;
    await fs.writeFile(
      script,
      `import { startEmbeddedPostgres } from ${JSON.stringify(lib("embedded-postgres.ts"))};
import { createPool } from ${JSON.stringify(lib("pool.ts"))};
const db = await startEmbeddedPostgres({ dataDir: process.argv[2] ?? "", fsync: false });
const pool = createPool(db.url);
await pool.query("CREATE TABLE survivor (v text)");
await pool.query("INSERT INTO survivor VALUES ('written before SIGKILL')");
await pool.end();
console.log("ready " + db.pid);
setInterval(() => undefined, 60_000);
`,
    );
    // node --import tsx rather than npx tsx: one process, so SIGKILL leaves no tsx child behind.
    const child: ChildProcess = spawn(process.execPath, ["--import", "tsx", script, dataDir], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "inherit"],
    });
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    cleanups.push(async () => {
      child.kill("SIGKILL");
      await exited;
    });
    const leftoverPid = await new Promise<number>((resolve, reject) => {
      let out = "";
      child.stdout?.on("data", (chunk: Buffer) => {
        out += chunk.toString();
        const m = /ready (\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      child.once("exit", (code) => reject(new Error(`owner exited early with code ${code}`)));
    });

    // While its owner lives, the server is not ours to take over.
    await assert.rejects(startEmbeddedPostgres({ dataDir, fsync: false }), /in use by running process/);
    const others = (await processesMentioning(dataDir)).filter((p) => p !== child.pid);
    assert.deepEqual(others, [leftoverPid], "the refused start left the running server alone");

    child.kill("SIGKILL");
    await exited;
    assert.deepEqual(await processesMentioning(dataDir), [leftoverPid], "the postmaster outlives its owner");

    const db = await startEmbeddedPostgres({ dataDir, fsync: false });
    cleanups.push(() => db.stop());
    assert.notEqual(db.pid, leftoverPid);
    assert.deepEqual(await processesMentioning(dataDir), [db.pid], "leftover replaced, not duplicated");
    const rows = await withClient(db.url, (c) => c.query("SELECT v FROM survivor"));
    assert.deepEqual(rows.rows, [{ v: "written before SIGKILL" }]);

    await db.stop();
    assert.deepEqual(await processesMentioning(dataDir), []);
  });

  it("starts despite a stale postmaster.pid whose process is gone", async () => {
    const stateDir = await tempStateDir();
    cleanups.push(() => fs.rm(stateDir, { recursive: true, force: true }));
    const dataDir = path.join(stateDir, "postgres");
    const first = await startEmbeddedPostgres({ dataDir, fsync: false });
    await first.stop();

    // The pid of a process that has exited.
    const gone = spawn("true");
    await new Promise((r) => gone.once("exit", r));
    const pidFile = path.join(dataDir, "postmaster.pid");
    await fs.writeFile(pidFile, `${gone.pid}\n${dataDir}\n0\n${first.port}\n\n127.0.0.1\n0 0\nready   \n`);

    const db = await startEmbeddedPostgres({ dataDir, fsync: false });
    cleanups.push(() => db.stop());
    await withClient(db.url, (c) => c.query("SELECT 1"));
    await db.stop();
    assert.deepEqual(await processesMentioning(dataDir), []);
  });
});

describe("migrate", function () {
  this.timeout(60_000);
  let stateDir: string;
  let server: EmbeddedDatabase;
  const pools: pg.Pool[] = [];
  const dirs: string[] = [];
  let seq = 0;

  before(async () => {
    stateDir = await tempStateDir();
    server = await startEmbeddedPostgres({ dataDir: path.join(stateDir, "postgres"), fsync: false });
  });
  after(async () => {
    await server?.stop();
    await fs.rm(stateDir, { recursive: true, force: true });
  });
  afterEach(async () => {
    for (const p of pools.splice(0)) await p.end();
    for (const d of dirs.splice(0)) await fs.rm(d, { recursive: true, force: true });
  });

  /** A pool on a brand-new database, so each test starts without schema_migrations. */
  async function freshPool(): Promise<{ url: string; pool: pg.Pool }> {
    const name = `migrate_${process.pid}_${++seq}`;
    await withClient(server.url, (c) => c.query(`CREATE DATABASE ${name}`));
    const u = new URL(server.url);
    u.pathname = `/${name}`;
    const pool = createPool(u.toString());
    pools.push(pool);
    return { url: u.toString(), pool };
  }

  async function dirWith(files: Record<string, string>): Promise<string> {
    const d = await migrationsDir(files);
    dirs.push(d);
    return d;
  }

  it("resolves the default folder from the module, not the working directory", () => {
    assert.equal(path.resolve(DEFAULT_MIGRATIONS_DIR), path.join(repoRoot, "migrations"));
  });

  it("applies files in version order once and records them", async () => {
    const { pool } = await freshPool();
    const dir = await dirWith({
      "002_second.sql": "INSERT INTO log VALUES ('second');",
      "001_first.sql": "CREATE TABLE log (v text); INSERT INTO log VALUES ('first');",
      "010_tenth.sql": "INSERT INTO log VALUES ('tenth');",
      "README.md": "ignored",
    });
    assert.deepEqual(await migrate(pool, dir), { applied: ["001_first.sql", "002_second.sql", "010_tenth.sql"] });
    assert.deepEqual(await migrate(pool, dir), { applied: [] });

    const log = await pool.query("SELECT v FROM log");
    assert.deepEqual(log.rows.map((r) => r.v), ["first", "second", "tenth"]);
    const recorded = await pool.query("SELECT version::int, name, length(checksum) AS len, applied_at FROM schema_migrations ORDER BY version");
    assert.deepEqual(recorded.rows.map((r) => [r.version, r.name, r.len]), [[1, "first", 64], [2, "second", 64], [10, "tenth", 64]]);

    await fs.writeFile(path.join(dir, "011_later.sql"), "INSERT INTO log VALUES ('later');");
    assert.deepEqual(await migrate(pool, dir), { applied: ["011_later.sql"] });
  });

  it("refuses to run when an applied file was changed", async () => {
    const { pool } = await freshPool();
    const dir = await dirWith({ "001_first.sql": "CREATE TABLE a (v int);" });
    await migrate(pool, dir);
    await fs.writeFile(path.join(dir, "001_first.sql"), "CREATE TABLE a (v bigint);");
    await fs.writeFile(path.join(dir, "002_second.sql"), "CREATE TABLE b (v int);");
    await assert.rejects(migrate(pool, dir), /001_first\.sql differs from the version applied.*checksum/);
    const b = await pool.query("SELECT to_regclass('b') AS t");
    assert.equal(b.rows[0].t, null, "nothing applied after the refusal");
  });

  it("rolls back a failing file and records nothing for it", async () => {
    const { pool } = await freshPool();
    const dir = await dirWith({
      "001_ok.sql": "CREATE TABLE ok (v int);",
      "002_bad.sql": "CREATE TABLE half (v int); SELECT no_such_function();",
    });
    await assert.rejects(migrate(pool, dir), (err: Error) => {
      assert.match(err.message, /applying migration 002_bad\.sql/);
      assert.match(String((err.cause as Error).message), /no_such_function/);
      return true;
    });
    const state = await pool.query("SELECT to_regclass('ok') AS ok, to_regclass('half') AS half");
    assert.deepEqual(state.rows[0], { ok: "ok", half: null });
    const recorded = await pool.query("SELECT version::int FROM schema_migrations");
    assert.deepEqual(recorded.rows, [{ version: 1 }]);
  });

  it("applies each file exactly once when two processes migrate at the same time", async () => {
    const { url, pool } = await freshPool();
    const other = createPool(url);
    pools.push(other);
    // Not idempotent on purpose: a second application would fail or double the count.
    const dir = await dirWith({
      "001_counter.sql": "CREATE TABLE runs (file text); SELECT pg_sleep(0.2); INSERT INTO runs VALUES ('001');",
      "002_more.sql": "CREATE TABLE more (v int); INSERT INTO runs VALUES ('002');",
    });
    const [a, b] = await Promise.all([migrate(pool, dir), migrate(other, dir)]);
    assert.deepEqual([...a.applied, ...b.applied].sort(), ["001_counter.sql", "002_more.sql"]);
    assert.deepEqual([a.applied.length, b.applied.length].sort(), [0, 2], "the lock serialises whole runs");
    const runs = await pool.query("SELECT file FROM runs ORDER BY file");
    assert.deepEqual(runs.rows.map((r) => r.file), ["001", "002"]);
  });

  it("withTransaction commits, rolls back, sets isolation and always releases the client", async () => {
    const { pool } = await freshPool();
    await pool.query("CREATE TABLE tx (v int)");
    const level = await withTransaction(
      pool,
      async (c) => {
        await c.query("INSERT INTO tx VALUES (1)");
        return (await c.query("SHOW transaction_isolation")).rows[0].transaction_isolation as string;
      },
      { isolation: "serializable" },
    );
    assert.equal(level, "serializable");
    await assert.rejects(
      withTransaction(pool, async (c) => {
        await c.query("INSERT INTO tx VALUES (2)");
        throw new Error("boom");
      }),
      /boom/,
    );
    const rows = await pool.query("SELECT v FROM tx");
    assert.deepEqual(rows.rows, [{ v: 1 }]);
    assert.equal(pool.totalCount, pool.idleCount, "no client left checked out");
  });

  it("survives the server ending a connection a transaction holds between queries (57P01): the holder's next query fails, the process lives on, the pool recovers", async () => {
    const { pool } = await freshPool();
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown): void => void uncaught.push(err);
    // mocha's own handler would fail the run anyway; this one lets the test say what happened.
    process.prependListener("uncaughtException", onUncaught);
    try {
      await assert.rejects(
        withTransaction(pool, async (c) => {
          const pid = (await c.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]?.pid;
          // Another session ends this one while the transaction awaits other work, as a PostgreSQL restart does.
          await withClient(server.url, (o) => o.query("SELECT pg_terminate_backend($1)", [pid]));
          await new Promise((r) => setTimeout(r, 300));
          await c.query("SELECT 1");
        }),
      );
      assert.deepEqual(uncaught, [], "no unhandled 'error' event reached the process");
      assert.equal((await pool.query<{ one: number }>("SELECT 1 AS one")).rows[0]?.one, 1, "the pool serves again with a new connection");
    } finally {
      process.removeListener("uncaughtException", onUncaught);
    }
  });
});

describe("openDatabase", function () {
  this.timeout(60_000);

  it("runs the embedded server under <stateDir>/postgres, migrates, and close() stops it", async () => {
    const stateDir = await tempStateDir();
    const dir = await migrationsDir({ "001_init.sql": "CREATE TABLE hosts (name text PRIMARY KEY);" });
    const savedUrl = process.env.DATABASE_URL;
    delete process.env.DATABASE_URL;
    const db = await openDatabase({ stateDir, fsync: false, migrationsDir: dir }).finally(() => {
      if (savedUrl !== undefined) process.env.DATABASE_URL = savedUrl;
    });
    try {
      assert.equal(db.embedded, true);
      await db.pool.query("INSERT INTO hosts VALUES ('h1')");
      assert.equal((await processesMentioning(path.join(stateDir, "postgres"))).length, 1);
    } finally {
      await db.close();
      await db.close();
    }
    assert.deepEqual(await processesMentioning(path.join(stateDir, "postgres")), []);

    // An external URL is used as is and left running on close.
    const server = await startEmbeddedPostgres({ dataDir: path.join(stateDir, "postgres"), fsync: false });
    try {
      const ext = await openDatabase({ stateDir: "/nonexistent", databaseUrl: server.url, migrationsDir: dir });
      assert.equal(ext.embedded, false);
      const rows = await ext.pool.query("SELECT name FROM hosts");
      assert.deepEqual(rows.rows, [{ name: "h1" }]);
      await ext.close();
      await withClient(server.url, (c) => c.query("SELECT 1"));
    } finally {
      await server.stop();
      await fs.rm(stateDir, { recursive: true, force: true });
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
