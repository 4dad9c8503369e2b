/**
 * The persisted update state of one channel-bound workload
 * (`<stateDir>/updates/<workload>/state.json`), written with
 * writeFileAtomic (temp + fsync + rename + directory fsync) before every
 * side effect of the update machine. A missing file is a fresh workload; an
 * unreadable one is moved aside and the workload starts fresh from what its
 * `current` link names (the slot layout is the truth about what can run).
 */
import { readFile } from "node:fs/promises";
import type { ReleaseMigration } from "../../lib/release/manifest.js";
import { moveAside, writeFileAtomic } from "../state/atomic-file.js";

export const STATE_FILE = "state.json";
/** Versions blocked locally after a rollback, newest first. */
export const MAX_BLOCKED = 32;

/** Update states (seed). */
export type UpdateState =
  | "idle"
  | "checking"
  | "downloading"
  | "verifying"
  | "staging"
  | "migrating"
  | "starting"
  | "health_checking"
  | "promoting"
  | "running"
  | "rollback_required"
  | "rolling_back"
  | "rolled_back"
  | "failed"
  | "fenced";

/** A node-local migration declared by a verified manifest. */
export type Migration = ReleaseMigration;

/** The version an update moves to, from a verified manifest. */
export interface UpdateTarget {
  version: string;
  sha256: string;
  length: number;
  slot: string;
  /** Where the verified download lies, once downloaded. */
  artifactPath?: string;
  migration?: Migration;
  /** Migration progress: the last step started. */
  migrationStep?: "preflight" | "backup" | "run" | "restore" | "done";
  /** Health-check deadline for this version, ms. */
  healthTimeoutMs?: number;
  /** The manifest's health command (run in the slot directory). */
  healthCommand?: string[];
}

/** What state.json holds. */
export interface UpdateRecord {
  workload: string;
  channel: string;
  /** The released component, from the first assignment (absent until one arrived). */
  component?: string;
  state: UpdateState;
  /** RFC 3339 time of the last state change. */
  since: string;
  /** The version that runs at rest (what `current` names outside an update). */
  current?: { version: string; slot: string };
  /** The rollback target (what `previous` names). */
  previous?: { version: string; slot: string };
  /** The update in progress, or the one that failed. */
  target?: UpdateTarget;
  reason?: string;
  /** Highest manifest version accepted for this component (rollback-attack guard). */
  lastTrustedVersion?: string;
  /** Versions rolled back on this node: never retried. */
  blocked: string[];
}

/** A fresh record (its component is filled in by the first assignment). */
export function freshRecord(workload: string, channel: string, now: Date): UpdateRecord {
  return { workload, channel, state: "idle", since: now.toISOString(), blocked: [] };
}

/** Reads state.json; undefined when missing; a corrupt file is moved aside (and undefined returned). */
export async function loadRecord(dir: string, now: Date): Promise<UpdateRecord | undefined> {
  let text: string;
  try {
    text = await readFile(`${dir}/${STATE_FILE}`, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  try {
    const r = JSON.parse(text) as UpdateRecord;
    if (typeof r !== "object" || r === null || typeof r.state !== "string" || !Array.isArray(r.blocked)) throw new Error("not an update record");
    // Records written before the component was filled in by the first assignment held "".
    if (r.component === "") delete r.component;
    return r;
  } catch {
    await moveAside(dir, STATE_FILE, now);
    return undefined;
  }
}

/** Writes state.json durably. */
export async function saveRecord(dir: string, r: UpdateRecord): Promise<void> {
  await writeFileAtomic(dir, STATE_FILE, Buffer.from(`${JSON.stringify(r, null, 2)}\n`));
}
