/**
 * Size-bounded output files. A workload's stdout and stderr go straight to
 * `<dir>/output.log` (an O_APPEND file descriptor handed to the child, not a
 * pipe through the agent: a pipe would break, and SIGPIPE the workload, when
 * the agent restarts, which would defeat adoption). The supervisor enforces
 * the bound on every sync (copy-truncate, like logrotate's copytruncate and
 * the kubelet's periodic container log rotation): when output.log exceeds
 * maxBytes its last maxBytes are copied to output.log.1 (older files shift
 * up to output.log.<keep>, the oldest is dropped) and it is truncated in
 * place. Rotated files are never larger than maxBytes, so on disk a workload
 * holds at most (keep + 1) x maxBytes plus what it writes between two syncs.
 * Output written between the copy and the truncation, and the head of a burst
 * larger than maxBytes, are lost (the tail is what diagnoses a crash).
 */
import { closeSync, existsSync, openSync, readSync, renameSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Limits of the output files of one workload. */
export interface LogLimits {
  /** Bytes of output.log before it rotates (default 1 MiB). */
  maxBytes: number;
  /** Rotated files kept (default 2). */
  keep: number;
}

/** Default limits. */
export const DEFAULT_LOG_LIMITS: LogLimits = { maxBytes: 1024 * 1024, keep: 2 };

/** Path of the current output file of a workload directory. */
export function outputPath(dir: string): string {
  return join(dir, "output.log");
}

/** Opens output.log for appending; the caller passes the fd to the child and closes its copy. */
export function openOutput(dir: string): number {
  return openSync(outputPath(dir), "a", 0o640);
}

/** Closes an fd, ignoring errors (the child holds its own copy). */
export function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}

/** Rotates output.log when it exceeds the limit; returns whether it rotated. */
export function rotateIfNeeded(dir: string, limits: LogLimits): boolean {
  const cur = outputPath(dir);
  let size: number;
  try {
    size = statSync(cur).size;
  } catch {
    return false;
  }
  if (size <= limits.maxBytes) return false;
  if (limits.keep <= 0) {
    truncateSync(cur, 0);
    return true;
  }
  const oldest = `${cur}.${limits.keep}`;
  if (existsSync(oldest)) rmSync(oldest, { force: true });
  for (let i = limits.keep - 1; i >= 1; i--) {
    const from = `${cur}.${i}`;
    if (existsSync(from)) renameSync(from, `${cur}.${i + 1}`);
  }
  const tail = Buffer.alloc(limits.maxBytes);
  const fd = openSync(cur, "r");
  let n: number;
  try {
    n = readSync(fd, tail, 0, limits.maxBytes, size - limits.maxBytes);
  } finally {
    closeSync(fd);
  }
  writeFileSync(`${cur}.1`, tail.subarray(0, n), { mode: 0o640 });
  truncateSync(cur, 0);
  return true;
}
