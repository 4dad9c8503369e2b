/**
 * Linux /proc helpers used to adopt processes after an agent restart: a pid
 * alone can be reused, so a process is "ours" only when its start time (in
 * clock ticks since boot, /proc/<pid>/stat field 22) and the boot id match
 * what was recorded when it was started. The kernel never gives two live
 * processes of one boot the same pid and start time, and both survive
 * execve. The command line does not: a command that re-executes itself (a
 * pyenv shim, `env`, `sh -c 'exec ...'`) shows another cmdline once it has
 * exec'd into the real binary, so the cmdline is recorded for people to
 * read but never decides identity.
 */
import { readFileSync } from "node:fs";

/** What identifies a process across pid reuse. */
export interface ProcessIdentity {
  pid: number;
  /** /proc/<pid>/stat starttime (clock ticks after boot). */
  startTime: string;
  /** argv joined with NUL, as in /proc/<pid>/cmdline, when recorded; informational (changes on exec). */
  cmdline: string;
  /** /proc/sys/kernel/random/boot_id at start. */
  bootId: string;
}

let cachedBootId: string | undefined;

/** The kernel boot id ("" where /proc does not provide it). */
export function bootId(): string {
  if (cachedBootId !== undefined) return cachedBootId;
  try {
    cachedBootId = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    cachedBootId = "";
  }
  return cachedBootId;
}

/** The process's stat fields after the command name, or undefined when it is gone. */
function statFields(pid: number): string[] | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may itself contain ") ".
  const close = stat.lastIndexOf(")");
  if (close < 0) return undefined;
  return stat.slice(close + 2).split(" ");
}

/** Start time of pid, or undefined when it does not exist or is a zombie. */
export function processStartTime(pid: number): string | undefined {
  const f = statFields(pid);
  if (f === undefined) return undefined;
  // f[0] is field 3 (state); starttime is field 22, i.e. f[19].
  if (f[0] === "Z" || f[0] === "X") return undefined;
  return f[19];
}

/** /proc/<pid>/cmdline without the trailing NUL, or undefined. */
export function processCmdline(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0$/, "");
  } catch {
    return undefined;
  }
}

/** The identity of a live process, or undefined when it is gone. */
export function identify(pid: number): ProcessIdentity | undefined {
  const startTime = processStartTime(pid);
  const cmdline = processCmdline(pid);
  if (startTime === undefined || cmdline === undefined) return undefined;
  return { pid, startTime, cmdline, bootId: bootId() };
}

/**
 * True when pid is alive and is the very process `id` recorded: same boot,
 * same start time. The cmdline is not compared (it changes on exec).
 */
export function isSameProcess(id: ProcessIdentity): boolean {
  if (id.startTime === "" || id.bootId !== bootId()) return false;
  return processStartTime(id.pid) === id.startTime;
}

/** True while pid exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  return processStartTime(pid) !== undefined;
}
