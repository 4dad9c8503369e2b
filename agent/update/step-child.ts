/**
 * The child processes of update steps (migration steps, the manifest's
 * health command), run so that a crash of the agent never leaves one
 * running beside the step's retry: the child's pid and start time are
 * written to `<workload dir>/step.pid` before it runs its course, and a
 * leftover the file still names (same pid, same start time in /proc: not
 * a recycled pid) is SIGKILLed and awaited when the restarted agent loads
 * the workload (manager.ts), whatever state the update resumes in, and
 * again before any step child starts. A step restarted after a crash thus never races the
 * half-run step of the previous agent (a migration run restored from its
 * backup while the old run still writes would be half-migrated data).
 */
import { spawn } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const STEP_PID_FILE = "step.pid";
const REAP_WAIT_MS = 10_000;

/** How a step child ended: its exit code, or the signal that killed it, or a spawn error. */
export type StepExit = { code: number | null; signal: NodeJS.Signals | null } | { error: Error };

/** Start time of a process (field 22 of /proc/<pid>/stat), undefined when it is gone or a zombie. */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (rest[0] === "Z" || rest[0] === "X") return undefined;
    return rest[19];
  } catch {
    return undefined;
  }
}

/** Kills the step child a previous agent left running (if `step.pid` still names a live one) and waits until it is gone. */
export async function reapLeftover(workloadDir: string): Promise<number | undefined> {
  const file = join(workloadDir, STEP_PID_FILE);
  let pid: number;
  let started: string;
  try {
    const [p = "", s = ""] = readFileSync(file, "utf8").trim().split(" ");
    pid = Number(p);
    started = s;
  } catch {
    return undefined;
  }
  let killed: number | undefined;
  if (Number.isSafeInteger(pid) && pid > 1 && startTime(pid) === started) {
    try {
      process.kill(pid, "SIGKILL");
      killed = pid;
    } catch {
      // gone meanwhile
    }
    const until = Date.now() + REAP_WAIT_MS;
    while (startTime(pid) === started && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    if (startTime(pid) === started) throw new Error(`step child ${pid} of a previous agent did not die`);
  }
  rmSync(file, { force: true });
  return killed;
}

/** Runs one step child (after reaping a leftover), killed after `timeoutMs`. */
export async function runStepChild(workloadDir: string, cmd: string, args: readonly string[], o: { cwd?: string; env: NodeJS.ProcessEnv; timeoutMs: number }): Promise<StepExit> {
  await reapLeftover(workloadDir);
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: o.cwd, stdio: "ignore", env: o.env });
    const file = join(workloadDir, STEP_PID_FILE);
    if (child.pid !== undefined) {
      const started = startTime(child.pid);
      if (started !== undefined) writeFileSync(file, `${child.pid} ${started}\n`, { mode: 0o600 });
    }
    const timer = setTimeout(() => child.kill("SIGKILL"), Math.max(0, o.timeoutMs));
    const done = (r: StepExit): void => {
      clearTimeout(timer);
      rmSync(file, { force: true });
      resolve(r);
    };
    child.on("error", (error) => done({ error }));
    child.on("exit", (code, signal) => done({ code, signal }));
  });
}
