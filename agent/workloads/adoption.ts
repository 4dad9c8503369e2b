/**
 * Adoption: how a new agent takes over the workload processes a previous
 * agent run left behind, instead of starting duplicates. Workloads run in
 * their own sessions and keep running when the agent stops (supervisor.ts),
 * so after a restart they are no longer its children: it finds them through
 * what the previous run recorded and /proc (proc.ts).
 *
 * Contract with the supervisor:
 *
 * - Record: each workload directory (`<stateDir>/workloads/<name>/`) holds
 *   `process.json` (ProcessRecord): the spec hash, generation and restart
 *   count, and the identity of the running process, if any. The supervisor
 *   rewrites it with writeProcessRecord() whenever one of those changes
 *   (start, exit, stop, new generation); the write is atomic (rename).
 * - Identity: identityAtStart(pid) is what gets recorded right after a
 *   spawn: pid, /proc start time, cmdline and boot id. Pid, start time and
 *   boot id decide identity (they survive exec); the cmdline is kept for
 *   people only, since a command that re-executes itself changes it.
 * - Adopt: findRecordedWorkloads() runs once, when a supervisor starts. For
 *   every workload directory with a readable record it says whether the
 *   recorded process is still that very process (then the supervisor treats
 *   it as running, without a child handle) or is gone. Nothing is started,
 *   stopped or deleted here: whether an adopted process matches the desired
 *   spec is the supervisor's decision once it has a desired set.
 * - Watch: an adopted process sends no exit event, so the supervisor asks
 *   isRecordedProcess() on every sync and while stopping it. A pid reused by
 *   another process, or a process from before a reboot, is never "ours".
 */
import { readFileSync, readdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ContainerEngine } from "./container.js";
import { identify, isSameProcess, type ProcessIdentity } from "./proc.js";
import { isWorkloadName } from "./types.js";

/** File name of the record inside a workload directory. */
export const PROCESS_RECORD_FILE = "process.json";

/** What process.json holds. */
export interface ProcessRecord {
  name: string;
  /** workloadSpecHash of the spec the recorded process runs ("" when none). */
  specHash: string;
  generation: number;
  /** Restarts so far, kept across agent restarts. */
  restartCount: number;
  /** When the recorded process was started (ms since the epoch; 0 when none). */
  startedAt: number;
  /** The running process; absent when none runs. */
  process?: ProcessIdentity;
  engine?: ContainerEngine;
}

/** A workload directory with a record, found at supervisor start. */
export interface RecordedWorkload {
  name: string;
  dir: string;
  restartCount: number;
  /** The recorded process, still running: the supervisor adopts it. */
  adopt?: { identity: ProcessIdentity; startedAt: number; specHash: string };
  /** The pid of a recorded process that is gone (or is not ours any more). */
  gonePid?: number;
}

/** Atomically replaces `<dir>/process.json`. */
export function writeProcessRecord(dir: string, rec: ProcessRecord): void {
  const p = join(dir, PROCESS_RECORD_FILE);
  const tmp = `${p}.tmp`;
  writeFileSync(tmp, JSON.stringify(rec), { mode: 0o640 });
  renameSync(tmp, p);
}

/**
 * The identity to record for a process just spawned. When /proc has nothing
 * (the process already exited, or no /proc) the identity matches no process,
 * so it is never adopted.
 */
export function identityAtStart(pid: number): ProcessIdentity {
  return identify(pid) ?? { pid, startTime: "", cmdline: "", bootId: "" };
}

/** True while the recorded process is alive and is still that very process (see proc.ts). */
export function isRecordedProcess(id: ProcessIdentity): boolean {
  return isSameProcess(id);
}

/**
 * The workload directories under `root` that hold a readable record, in
 * directory order; directories whose name is no workload name, or without a
 * record, are skipped. Reads only (the directory and /proc).
 */
export function findRecordedWorkloads(root: string): RecordedWorkload[] {
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return [];
  }
  const out: RecordedWorkload[] = [];
  for (const name of names) {
    if (!isWorkloadName(name)) continue;
    const dir = join(root, name);
    let rec: ProcessRecord;
    try {
      rec = JSON.parse(readFileSync(join(dir, PROCESS_RECORD_FILE), "utf8")) as ProcessRecord;
    } catch {
      continue;
    }
    const found: RecordedWorkload = { name, dir, restartCount: rec.restartCount ?? 0 };
    if (rec.process !== undefined && isRecordedProcess(rec.process)) found.adopt = { identity: rec.process, startedAt: rec.startedAt, specHash: rec.specHash };
    else if (rec.process !== undefined) found.gonePid = rec.process.pid;
    out.push(found);
  }
  return out;
}
