/**
 * The agent's update manager (agent/update/manager.ts) around real child
 * processes:
 *
 * - a step child (migration step, health command) that a killed agent left
 *   running, named by `step.pid`, is killed and reaped as soon as the
 *   restarted agent loads the workload, whatever state the update resumes
 *   in (fenced, idle or resting), not only when the next step starts;
 * - a step child's environment is the workload's (the supervisor's
 *   allow-list and the workload's env) plus the FABRIC_* directories, never
 *   the agent's whole environment.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { logger } from "../../lib/log.js";
import type { SnapshotPayload, SnapshotWorkload } from "../../lib/snapshot/format.js";
import { stepEnv, UpdateManager } from "../../agent/update/manager.js";
import { STEP_PID_FILE } from "../../agent/update/step-child.js";
import type { WorkloadSupervisor } from "../../agent/workloads/supervisor.js";
import { eventually } from "../support/controlplane.js";

/** Start time of a process (field 22 of /proc/<pid>/stat), as step.pid records it. */
function startTime(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? "";
}

/** True while `pid` is a live (not zombie) process. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat[stat.lastIndexOf(")") + 2];
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

function workload(name: string): SnapshotWorkload {
  return { name, role: "rdp-worker", runtime: "native", command: ["/bin/false"], args: [], env: {}, restartPolicy: "Always", releaseChannel: name } as unknown as SnapshotWorkload;
}

describe("agent update manager: leftover step children and step environments", function () {
  this.timeout(60_000);
  let root: string;
  const children: ChildProcess[] = [];
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "afu-mgr-"));
  });
  afterEach(async () => {
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    await rm(root, { recursive: true, force: true });
  });

  /** A `sleep` started as if by a previous agent's step, recorded in the workload's step.pid. */
  function leftover(dir: string): number {
    const c = spawn("sleep", ["600"], { stdio: "ignore" });
    children.push(c);
    const pid = c.pid as number;
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, STEP_PID_FILE), `${pid} ${startTime(pid)}\n`);
    return pid;
  }

  function manager(): UpdateManager {
    const sup = { settle: async () => undefined, status: () => [] } as unknown as WorkloadSupervisor;
    return new UpdateManager({ dir: root, supervisor: () => sup, reapply: () => undefined, onReport: () => undefined, log: logger("test") });
  }

  for (const state of ["fenced", "idle", "rolled_back"] as const) {
    it(`kills the step child a killed agent left when the workload is loaded in state ${state}`, async () => {
      const dir = join(root, "updates", "svc");
      const pid = leftover(dir);
      writeFileSync(join(dir, "state.json"), JSON.stringify({ workload: "svc", channel: "svc", state, since: new Date().toISOString(), blocked: [] }));
      assert.ok(alive(pid));
      const m = manager();
      try {
        await m.apply({ workloads: [workload("svc")] } as unknown as SnapshotPayload);
        assert.equal(alive(pid), false, `the leftover step ${pid} was killed and reaped before apply() resolved`);
        assert.equal(existsSync(join(dir, STEP_PID_FILE)), false);
        assert.equal(m.records()[0]?.state, state);
      } finally {
        m.stop();
      }
    });
  }

  it("leaves a process alone whose pid was recycled (start time differs)", async () => {
    const dir = join(root, "updates", "svc");
    const pid = leftover(dir);
    writeFileSync(join(dir, STEP_PID_FILE), `${pid} 1\n`);
    const m = manager();
    try {
      await m.apply({ workloads: [workload("svc")] } as unknown as SnapshotPayload);
      assert.equal(alive(pid), true);
      await eventually(() => !existsSync(join(dir, STEP_PID_FILE)), 5_000, 50);
    } finally {
      m.stop();
    }
  });

  it("gives step children the workload's environment and the FABRIC_* directories, not the agent's", () => {
    const saved = { ...process.env };
    try {
      process.env.MALLOC_ARENA_MAX = "1";
      process.env.FABRIC_UPDATE_TEST_HOLD = "checking";
      process.env.AFU_SECRET_TOKEN = "s3cret";
      process.env.PATH = "/usr/bin:/bin";
      process.env.HOME = "/home/agent";
      const env = stepEnv({ DB_URL: "postgres://x", PATH: "/opt/w/bin" }, { FABRIC_DATA_DIR: "/d", FABRIC_BACKUP_DIR: "/b" });
      assert.deepEqual(
        Object.fromEntries(Object.entries(env).filter(([k]) => k !== "LANG" && k !== "TZ" && k !== "TMPDIR")),
        { PATH: "/opt/w/bin", HOME: "/home/agent", DB_URL: "postgres://x", FABRIC_DATA_DIR: "/d", FABRIC_BACKUP_DIR: "/b" },
      );
      for (const k of ["MALLOC_ARENA_MAX", "FABRIC_UPDATE_TEST_HOLD", "AFU_SECRET_TOKEN"]) assert.equal(k in env, false, k);
      // The workload's env cannot redirect the step's directories.
      assert.equal(stepEnv({ FABRIC_DATA_DIR: "/elsewhere" }, { FABRIC_DATA_DIR: "/d" }).FABRIC_DATA_DIR, "/d");
    } finally {
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
      Object.assign(process.env, saved);
    }
  });
});
