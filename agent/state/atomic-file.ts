/**
 * Crash-safe files in the agent's state directory. A reader after a crash or
 * power loss sees either the old complete file or the new complete file,
 * never a torn one: write a temporary file in the same directory (rename is
 * atomic only within one file system), fsync it, rename it over the target,
 * then fsync the directory so the rename itself is durable.
 *
 * Temporary files are named `.<name>.tmp-<pid>-<random>`; a crash leaves one
 * behind, readers never look at it, and {@link removeStaleTemps} sweeps them
 * at boot.
 */
import { randomBytes } from "node:crypto";
import { mkdir, open, readdir, rename, unlink } from "node:fs/promises";
import { join } from "node:path";

/** Mode of every state file: the snapshot and trust state are readable by the agent only. */
export const STATE_FILE_MODE = 0o600;
/** Mode of the state directory when this module creates it. */
export const STATE_DIR_MODE = 0o700;

function tempPrefix(name: string): string {
  return `.${name}.tmp-`;
}

/**
 * Writes `bytes` to `dir/name` atomically and durably, mode 0600. Creates `dir` (0700) if missing.
 * `durable: false` skips both fsyncs, for reports rewritten every few seconds (status.json,
 * mesh-status.json): readers still never see a torn file, but a power loss may keep the
 * previous report (or, on some file systems, an empty one) until the next write.
 */
export async function writeFileAtomic(dir: string, name: string, bytes: Uint8Array, o: { durable?: boolean } = {}): Promise<void> {
  const durable = o.durable ?? true;
  await mkdir(dir, { recursive: true, mode: STATE_DIR_MODE });
  const temp = join(dir, `${tempPrefix(name)}${process.pid}-${randomBytes(6).toString("hex")}`);
  const file = await open(temp, "wx", STATE_FILE_MODE);
  try {
    try {
      // The umask can only clear bits; chmod anyway so the mode never depends on it.
      await file.chmod(STATE_FILE_MODE);
      await file.writeFile(bytes);
      if (durable) await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, join(dir, name));
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw new Error(`writing ${name} in ${dir}`, { cause: err });
  }
  if (durable) await syncDir(dir);
}

/** fsyncs a directory so that renames and unlinks in it survive a power loss. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Renames `dir/name` to `dir/name.corrupt-<ts>` (ts from `now`, colons
 * removed so it is a portable file name) and returns the new name. Keeps the
 * evidence for an operator instead of deleting it.
 */
export async function moveAside(dir: string, name: string, now: Date): Promise<string> {
  const ts = now.toISOString().replace(/:/g, "");
  const aside = `${name}.corrupt-${ts}`;
  await rename(join(dir, name), join(dir, aside));
  await syncDir(dir);
  return aside;
}

/**
 * Removes temporary files of `name` left by a crash between create and
 * rename. Call at boot, before any concurrent write to the same file.
 * Returns the names removed.
 */
export async function removeStaleTemps(dir: string, name: string): Promise<string[]> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const stale = entries.filter((e) => e.startsWith(tempPrefix(name)));
  for (const e of stale) await unlink(join(dir, e)).catch(() => undefined);
  return stale;
}
