/**
 * Test support: find and kill host processes by one of their arguments
 * (workloads started by a real agent are not the test's children).
 */
import { readFileSync, readdirSync } from "node:fs";

/** Live (non-zombie) processes whose argv contains `marker` as one argument. */
export function processesWith(marker: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const argv = readFileSync(`/proc/${e}/cmdline`, "utf8").split("\0");
      if (!argv.includes(marker)) continue;
      const stat = readFileSync(`/proc/${e}/stat`, "utf8");
      const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
      if (state !== "Z" && state !== "X") out.push(Number(e));
    } catch {
      // gone meanwhile
    }
  }
  return out.sort((a, b) => a - b);
}

/** Kills every process carrying `marker` (and its group). */
export function killAllWith(marker: string): void {
  for (const pid of processesWith(marker)) {
    for (const target of [-pid, pid]) {
      try {
        process.kill(target, "SIGKILL");
      } catch {
        // gone
      }
    }
  }
}
