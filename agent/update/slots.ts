/**
 * Release slots of one channel-bound workload, under
 * `<stateDir>/updates/<workload>/`:
 *
 *   releases/<version>-<sha256[0:12]>/executable   immutable, complete slots
 *   releases/<version>-<sha256[0:12]>/.complete    marker written last
 *   current -> releases/<slot>                      what the supervisor runs
 *   previous -> releases/<slot>                     the rollback target
 *   state.json                                      the update state (state.ts)
 *   data/                                           the workload's data (migrations back it up)
 *
 * The artifact is a single executable (docs/releases.md, "Agent updates").
 * A slot is staged in `releases/.staging-<slot>` and renamed into place
 * after its marker is fsynced, so `releases/<slot>` only ever names a
 * complete release. Symlinks are swapped by creating a temporary symlink and
 * renaming it over the old one, then fsyncing the directory: `current`
 * always names a complete slot, before and after a crash.
 */
import { randomBytes } from "node:crypto";
import { chmod, copyFile, mkdir, open, readdir, readlink, rename, rm, stat, symlink, unlink } from "node:fs/promises";
import { join } from "node:path";
import { syncDir } from "../state/atomic-file.js";

export const EXECUTABLE = "executable";
const MARKER = ".complete";
/** Slots kept per workload (current and previous always among them). */
export const KEEP_SLOTS = 3;

/** Directory name of a release slot. */
export function slotName(version: string, sha256: string): string {
  return `${version}-${sha256.slice(0, 12)}`;
}

/** Paths of one workload's update directory. */
export class WorkloadSlots {
  readonly releases: string;
  constructor(readonly dir: string) {
    this.releases = join(dir, "releases");
  }

  slotDir(slot: string): string {
    return join(this.releases, slot);
  }

  executable(slot: string): string {
    return join(this.releases, slot, EXECUTABLE);
  }

  get dataDir(): string {
    return join(this.dir, "data");
  }

  async init(): Promise<void> {
    await mkdir(this.releases, { recursive: true, mode: 0o750 });
    await mkdir(this.dataDir, { recursive: true, mode: 0o750 });
  }

  /** True when the slot exists with its completion marker. */
  async isComplete(slot: string): Promise<boolean> {
    return (await exists(join(this.releases, slot, MARKER))) && (await exists(this.executable(slot)));
  }

  /**
   * Stages `artifact` (a verified file) as slot `slot`. Idempotent: a
   * complete slot is kept; a half-staged one from a crash is redone.
   */
  async stage(slot: string, artifact: string): Promise<void> {
    if (await this.isComplete(slot)) return;
    const staging = join(this.releases, `.staging-${slot}`);
    await rm(staging, { recursive: true, force: true });
    await rm(this.slotDir(slot), { recursive: true, force: true });
    await mkdir(staging, { recursive: true, mode: 0o750 });
    const exe = join(staging, EXECUTABLE);
    await copyFile(artifact, exe);
    await chmod(exe, 0o755);
    await fsyncFile(exe);
    const marker = await open(join(staging, MARKER), "w", 0o640);
    try {
      await marker.writeFile(`${slot}\n`);
      await marker.sync();
    } finally {
      await marker.close();
    }
    await syncDir(staging);
    await rename(staging, this.slotDir(slot));
    await syncDir(this.releases);
  }

  /** The slot a link names, or undefined when the link is missing. */
  async link(name: "current" | "previous"): Promise<string | undefined> {
    try {
      const target = await readlink(join(this.dir, name));
      return target.startsWith("releases/") ? target.slice("releases/".length) : undefined;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
  }

  /** Points `name` at `slot` (a complete slot) atomically; idempotent. */
  async setLink(name: "current" | "previous", slot: string): Promise<void> {
    if ((await this.link(name)) === slot) return;
    if (!(await this.isComplete(slot))) throw new Error(`slot ${slot} is not complete: ${name} not moved`);
    const temp = join(this.dir, `.${name}.tmp-${randomBytes(6).toString("hex")}`);
    await symlink(`releases/${slot}`, temp);
    try {
      await rename(temp, join(this.dir, name));
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      throw err;
    }
    await syncDir(this.dir);
  }

  /** Removes a link (idempotent). */
  async clearLink(name: "current" | "previous"): Promise<void> {
    await rm(join(this.dir, name), { force: true });
    await syncDir(this.dir);
  }

  /**
   * Keeps `current`, `previous` and the newest others up to KEEP_SLOTS
   * complete slots; removes staging leftovers and temporary links.
   */
  async prune(): Promise<string[]> {
    const keep = new Set([await this.link("current"), await this.link("previous")].filter((s): s is string => s !== undefined));
    const removed: string[] = [];
    const entries = await readdir(this.releases);
    const slots: { name: string; mtime: number }[] = [];
    for (const e of entries) {
      if (e.startsWith(".staging-")) {
        await rm(join(this.releases, e), { recursive: true, force: true });
        removed.push(e);
      } else if (!keep.has(e)) slots.push({ name: e, mtime: (await stat(join(this.releases, e))).mtimeMs });
    }
    slots.sort((a, b) => b.mtime - a.mtime);
    for (const s of slots.slice(Math.max(0, KEEP_SLOTS - keep.size))) {
      await rm(join(this.releases, s.name), { recursive: true, force: true });
      removed.push(s.name);
    }
    for (const e of await readdir(this.dir)) if (/^\.(current|previous)\.tmp-/.test(e)) await rm(join(this.dir, e), { force: true });
    if (removed.length > 0) await syncDir(this.releases);
    return removed;
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}

async function fsyncFile(p: string): Promise<void> {
  const h = await open(p, "r");
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}
