/**
 * The workload supervisor: converges this host's service workloads to the
 * `workloads` of the node's last verified snapshot, level-triggered like the
 * kubelet's sync loop.
 *
 * Use (the agent's snapshot loop owns the calls):
 *
 *   const sup = new WorkloadSupervisor({ stateDir, log });
 *   // on every verified snapshot (and once at start from the checkpointed one):
 *   sup.apply(snapshot.payload.workloads, snapshot.payload.identity.membership);
 *   sup.status();        // one WorkloadStatus per desired workload (send with WorkloadReporter)
 *   await sup.stop();    // agent shutdown: stops the loop, LEAVES workloads running
 *
 * - Desired: the last apply(). Before the first apply the supervisor does
 *   nothing destructive: it adopts and watches what it finds, starts and
 *   stops nothing (kubelet's SeenAllSources).
 * - Actual: the processes it supervises. One sync pass runs at a time; it is
 *   woken by apply(), by a periodic tick (default 1 s) and by a child exiting
 *   or a probe finishing.
 * - Start: native workloads run `command + args` as a process of their own
 *   session (process group), with PATH/HOME/LANG of the agent plus the
 *   workload's env, stdout and stderr appended to
 *   `<stateDir>/workloads/<name>/output.log` (size-bounded, log-file.ts).
 *   Container workloads run as the `docker|podman run --rm` CLI process
 *   (container.ts) once `<engine> info` answers; otherwise they are reported
 *   Unsupported with the reason and nothing is started.
 * - Stop: SIGTERM to the process group, SIGKILL after the grace period
 *   (default 10 s). Removed workloads are stopped and their directory deleted.
 * - Restart: per restartPolicy (Always; OnFailure: not after exit 0; Never),
 *   after an exponential backoff (initial 1 s, doubling, max 5 min; reset
 *   once a run lasted 60 s), like the kubelet's CrashLoopBackOff. A spec
 *   change (command, args, env, image, ...) replaces the process at once.
 * - Health: without a probe a running process is ready. With one (exec, HTTP,
 *   TCP), it is ready after a success; failureThreshold consecutive failures
 *   make it Degraded (ProbeFailed) and restart it (with backoff).
 * - Adoption (adoption.ts): every start, exit and stop is recorded in
 *   `<dir>/process.json`. A new supervisor (agent restart) takes over a
 *   recorded process that is still the same process instead of starting a
 *   duplicate, and watches it by looking at /proc since it is not its child;
 *   a process whose spec hash no longer matches the first desired set is
 *   replaced like any spec change.
 * - Membership other than Active (Disabled, Revoked) stops every workload.
 */
import { spawn as nodeSpawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../../lib/log.js";
import type { MembershipState, SnapshotWorkload } from "../../lib/snapshot/format.js";
import { findRecordedWorkloads, identityAtStart, isRecordedProcess, writeProcessRecord } from "./adoption.js";
import { EngineChecker, containerRunArgs, removeContainer } from "./container.js";
import { DEFAULT_LOG_LIMITS, closeQuietly, openOutput, rotateIfNeeded, type LogLimits } from "./log-file.js";
import { isAlive, type ProcessIdentity } from "./proc.js";
import { runProbe } from "./probes.js";
import { isWorkloadName, type DesiredWorkload, type Spawner, type WorkloadClock, type WorkloadState, type WorkloadStatus } from "./types.js";

/** Restart backoff (milliseconds). */
export interface BackoffSettings {
  initialMs: number;
  maxMs: number;
  /** A run at least this long resets the backoff to initialMs. */
  resetAfterMs: number;
}

/** Options of WorkloadSupervisor. */
export interface WorkloadSupervisorOptions {
  /** The agent's state directory; workloads live under `<stateDir>/workloads/`. */
  stateDir: string;
  log: Logger;
  clock?: WorkloadClock;
  /** Replaces child_process.spawn (tests). */
  spawner?: Spawner;
  /** Sync period (default 1000 ms). */
  tickMs?: number;
  /** SIGTERM → SIGKILL grace (default 10 000 ms). */
  stopGraceMs?: number;
  backoff?: Partial<BackoffSettings>;
  logLimits?: Partial<LogLimits>;
  /** Checks container engines (default: `<engine> info`, cached 30 s). */
  engines?: EngineChecker;
  /** Called after a sync pass changed status(). */
  onStatusChange?: (status: WorkloadStatus[]) => void;
}

interface Running {
  identity: ProcessIdentity;
  child?: ChildProcess;
  startedAt: number;
  specHash: string;
  adopted: boolean;
  exit?: { code: number | null; signal: NodeJS.Signals | null; at: number };
}

interface Instance {
  name: string;
  dir: string;
  desired?: DesiredWorkload;
  running?: Running;
  restartCount: number;
  backoffMs: number;
  nextStartAt: number;
  /** Last exit of a run, kept until the next start. */
  lastExit?: { code: number | null; signal: NodeJS.Signals | null; at: number; byProbe: boolean };
  started: boolean;
  probe: { failures: number; ok: boolean; inFlight: boolean; nextAt: number; message: string };
  stopping?: Promise<void>;
  unsupported?: { reason: string; message: string };
  startError?: string;
  status: WorkloadStatus;
}

const DEFAULT_BACKOFF: BackoffSettings = { initialMs: 1000, maxMs: 300_000, resetAfterMs: 60_000 };

/** Hash of what a running process depends on (a change replaces the process; probe changes do not). */
export function workloadSpecHash(w: DesiredWorkload): string {
  const env = Object.entries(w.env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const body = JSON.stringify([w.runtime, w.containerEngine ?? "", w.image ?? "", w.command, w.args, env, w.workingDir ?? ""]);
  return createHash("sha256").update(body).digest("hex").slice(0, 16);
}

/** What a workload process gets of the agent's environment (PATH, HOME, LANG, TZ, TMPDIR), nothing else. */
export function baseEnv(): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const k of ["PATH", "HOME", "LANG", "TZ", "TMPDIR"]) {
    const v = process.env[k];
    if (v !== undefined) out[k] = v;
  }
  return out;
}

function signalGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    try {
      process.kill(pid, sig);
    } catch {
      // gone
    }
  }
}

function describeExit(e: { code: number | null; signal: NodeJS.Signals | null }): string {
  return e.code !== null ? `exited with code ${e.code}` : e.signal !== null ? `killed by ${e.signal}` : "exited (not our child: status unknown)";
}

/** See the module comment. */
export class WorkloadSupervisor {
  private readonly root: string;
  private readonly log: Logger;
  private readonly clock: WorkloadClock;
  private readonly spawner: Spawner;
  private readonly tickMs: number;
  private readonly graceMs: number;
  private readonly backoff: BackoffSettings;
  private readonly limits: LogLimits;
  private readonly engines: EngineChecker;
  private readonly instances = new Map<string, Instance>();
  private desired: DesiredWorkload[] | undefined;
  private membership: MembershipState = "Active";
  private timer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private lastStatusJson = "";

  constructor(private readonly o: WorkloadSupervisorOptions) {
    this.root = join(o.stateDir, "workloads");
    this.log = o.log;
    this.clock = o.clock ?? { now: () => Date.now() };
    this.spawner = o.spawner ?? { spawn: (c, a, opts) => nodeSpawn(c, [...a], opts) };
    this.tickMs = o.tickMs ?? 1000;
    this.graceMs = o.stopGraceMs ?? 10_000;
    this.backoff = { ...DEFAULT_BACKOFF, ...o.backoff };
    this.limits = { ...DEFAULT_LOG_LIMITS, ...o.logLimits };
    this.engines = o.engines ?? new EngineChecker();
    mkdirSync(this.root, { recursive: true, mode: 0o750 });
    this.adoptAll();
    this.timer = setInterval(() => this.wake(), this.tickMs);
    this.timer.unref();
    this.wake();
  }

  /**
   * Sets the desired workloads (the verified snapshot's `workloads`) and the
   * membership, and wakes the sync loop. Level-triggered: the whole set, every time.
   */
  apply(desired: readonly SnapshotWorkload[], membership: MembershipState): void {
    if (this.stopped) throw new Error("workload supervisor is stopped");
    const seen = new Set<string>();
    const list: DesiredWorkload[] = [];
    for (const w of desired) {
      if (!isWorkloadName(w.name) || seen.has(w.name)) {
        this.log.warn("desired workload ignored: invalid or duplicate name", { workload: w.name });
        continue;
      }
      seen.add(w.name);
      list.push(w as DesiredWorkload);
    }
    this.desired = list;
    this.membership = membership;
    this.wake();
  }

  /** One status per desired workload (empty before the first apply), sorted by name. */
  status(): WorkloadStatus[] {
    return this.currentStatus();
  }

  /** Resolves after a sync pass that started after this call (tests, benchmarks). */
  async settle(): Promise<void> {
    this.wake();
    while (this.syncing !== undefined) await this.syncing;
  }

  /**
   * Stops the loop and timers. Workloads keep running (the next agent adopts
   * them); to stop them, apply a Disabled membership (or an empty set) first
   * and await settle() / stopAll().
   */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    while (this.syncing !== undefined) await this.syncing;
  }

  /** Stops every workload (SIGTERM, grace, SIGKILL), then the loop. */
  async stopAll(): Promise<void> {
    if (!this.stopped) {
      this.desired = [];
      await this.settle();
    }
    await Promise.all([...this.instances.values()].map((i) => this.stopInstance(i, "supervisor stopping")));
    await this.stop();
  }

  private wake(): void {
    if (this.stopped) return;
    if (this.syncing !== undefined) {
      this.again = true;
      return;
    }
    this.syncing = (async () => {
      try {
        do {
          this.again = false;
          await this.sync();
        } while (this.again && !this.stopped);
      } catch (err) {
        this.log.error("workload sync failed", { err });
      } finally {
        this.syncing = undefined;
      }
    })();
  }

  // ---- adoption (adoption.ts) -------------------------------------------

  private writeRecord(i: Instance): void {
    writeProcessRecord(i.dir, {
      name: i.name,
      specHash: i.running?.specHash ?? (i.desired ? workloadSpecHash(i.desired) : ""),
      generation: i.desired?.generation ?? 0,
      restartCount: i.restartCount,
      startedAt: i.running?.startedAt ?? 0,
      ...(i.running ? { process: i.running.identity } : {}),
      ...(i.desired?.runtime === "container" && i.desired.containerEngine ? { engine: i.desired.containerEngine } : {}),
    });
  }

  /** Takes over the processes a previous agent run recorded and left running. */
  private adoptAll(): void {
    for (const found of findRecordedWorkloads(this.root)) {
      const i = this.newInstance(found.name);
      i.restartCount = found.restartCount;
      if (found.adopt !== undefined) {
        i.running = { ...found.adopt, adopted: true };
        i.started = true;
        this.log.info("workload process adopted", { workload: found.name, pid: found.adopt.identity.pid });
      } else if (found.gonePid !== undefined) {
        this.log.info("recorded workload process is gone", { workload: found.name, pid: found.gonePid });
      }
      this.instances.set(found.name, i);
    }
  }

  private newInstance(name: string): Instance {
    const dir = join(this.root, name);
    mkdirSync(dir, { recursive: true, mode: 0o750 });
    return {
      name,
      dir,
      restartCount: 0,
      backoffMs: 0,
      nextStartAt: 0,
      started: false,
      probe: { failures: 0, ok: false, inFlight: false, nextAt: 0, message: "" },
      status: { name, observedGeneration: 0, state: "Starting", ready: false, reason: "Pending", message: "", restartCount: 0 },
    };
  }

  // ---- the sync pass ----------------------------------------------------

  private async sync(): Promise<void> {
    const now = this.clock.now();
    // Adopted processes are not our children: notice their exit by looking.
    for (const i of this.instances.values()) {
      const r = i.running;
      if (r !== undefined && r.adopted && r.exit === undefined && !isRecordedProcess(r.identity)) r.exit = { code: null, signal: null, at: now };
      // A stop in progress records its own outcome (a deliberate stop is not a crash).
      if (r?.exit !== undefined && i.stopping === undefined) this.recordExit(i, r, now);
    }
    if (this.desired === undefined) {
      this.publish();
      return; // nothing destructive before the first desired set
    }
    const active = this.membership === "Active";
    const want = new Map((active ? this.desired : []).map((w) => [w.name, w]));
    // Stop what is no longer wanted.
    const removals: Promise<void>[] = [];
    for (const i of [...this.instances.values()]) {
      if (want.has(i.name)) continue;
      i.desired = undefined;
      removals.push(
        this.stopInstance(i, active ? "workload removed" : `membership ${this.membership}`).then(() => {
          if (i.desired === undefined && this.instances.get(i.name) === i) {
            this.instances.delete(i.name);
            rmSync(i.dir, { recursive: true, force: true });
          }
        }),
      );
    }
    await Promise.all(removals);
    for (const w of want.values()) {
      let i = this.instances.get(w.name);
      if (i === undefined) {
        i = this.newInstance(w.name);
        this.instances.set(w.name, i);
      }
      const prev = i.desired;
      i.desired = w;
      if (prev === undefined || prev.generation !== w.generation) this.writeRecord(i);
      await this.converge(i, w, this.clock.now());
      rotateIfNeeded(i.dir, this.limits);
    }
    this.publish();
  }

  private recordExit(i: Instance, r: Running, _now: number): void {
    if (r.exit === undefined || i.running !== r) return;
    const ranMs = r.exit.at - r.startedAt;
    const byProbe = i.probe.failures >= (i.desired?.healthProbe?.failureThreshold ?? Infinity);
    i.lastExit = { ...r.exit, byProbe };
    i.running = undefined;
    i.probe = { failures: 0, ok: false, inFlight: false, nextAt: 0, message: i.probe.message };
    i.backoffMs = ranMs >= this.backoff.resetAfterMs || i.backoffMs === 0 ? this.backoff.initialMs : Math.min(this.backoff.maxMs, i.backoffMs * 2);
    i.nextStartAt = r.exit.at + i.backoffMs;
    this.log.info("workload process exited", { workload: i.name, pid: r.identity.pid, code: r.exit.code, signal: r.exit.signal, ranMs, backoffMs: i.backoffMs });
    if (i.desired !== undefined) this.writeRecord(i);
  }

  private async converge(i: Instance, w: DesiredWorkload, now: number): Promise<void> {
    const hash = workloadSpecHash(w);
    // Container runtime availability, checked before anything is started.
    if (w.runtime === "container") {
      const engine = w.containerEngine;
      if (engine === undefined || w.image === undefined || w.image === "") {
        i.unsupported = { reason: "InvalidWorkload", message: "a container workload needs containerEngine and image" };
      } else {
        const a = await this.engines.availability(engine, now);
        i.unsupported = a.available ? undefined : { reason: a.reason, message: a.message };
      }
      if (i.unsupported !== undefined) {
        if (i.running !== undefined) await this.stopInstance(i, "container runtime unavailable");
        this.setStatus(i, w, "Unsupported", false, i.unsupported.reason, i.unsupported.message);
        return;
      }
    } else i.unsupported = undefined;

    const r = i.running;
    if (r !== undefined && r.specHash !== hash) {
      this.log.info("workload spec changed: replacing process", { workload: i.name, pid: r.identity.pid });
      await this.stopInstance(i, "spec changed");
      i.backoffMs = 0;
      i.nextStartAt = 0;
      i.lastExit = undefined;
    }
    if (i.running !== undefined) {
      this.probeIfDue(i, w, now);
      const probe = w.healthProbe;
      if (probe === undefined) this.setStatus(i, w, "Running", true, "Running", `pid ${i.running.identity.pid}`);
      else if (i.probe.ok) this.setStatus(i, w, "Running", true, "Healthy", i.probe.message);
      else if (i.probe.failures > 0) this.setStatus(i, w, "Degraded", false, "ProbeFailed", i.probe.message);
      else this.setStatus(i, w, "Starting", false, "WaitingForProbe", `pid ${i.running.identity.pid}; waiting for the health probe`);
      // Failing probes past the threshold: restart (the exit is recorded with backoff).
      if (probe !== undefined && i.probe.failures >= probe.failureThreshold && i.stopping === undefined) {
        this.log.warn("workload failed its health probe: restarting", { workload: i.name, failures: i.probe.failures });
        void this.stopInstance(i, "health probe failed").then(() => this.wake());
      }
      return;
    }
    // Not running: start, wait out the backoff, or stay down per policy.
    const last = i.lastExit;
    if (last !== undefined && i.started) {
      const failed = last.byProbe || last.code !== 0;
      const restart = w.restartPolicy === "Always" || (w.restartPolicy === "OnFailure" && failed);
      if (!restart) {
        this.setStatus(i, w, failed ? "Failed" : "Stopped", false, failed ? "Failed" : "Completed", `${describeExit(last)}; restartPolicy ${w.restartPolicy}`);
        return;
      }
      if (now < i.nextStartAt) {
        const reason = last.byProbe ? "ProbeFailed" : "CrashLoopBackOff";
        this.setStatus(i, w, "Degraded", false, reason, `${i.startError ?? describeExit(last)}; restarting in ${Math.ceil((i.nextStartAt - now) / 100) / 10} s`);
        return;
      }
    }
    await this.start(i, w, hash, now);
  }

  private setStatus(i: Instance, w: DesiredWorkload, state: WorkloadState, ready: boolean, reason: string, message: string): void {
    i.status = {
      name: i.name,
      observedGeneration: w.generation,
      state,
      ready,
      reason,
      message: message.slice(0, 1024),
      restartCount: i.restartCount,
      ...(i.running !== undefined ? { pid: i.running.identity.pid } : {}),
    };
  }

  private currentStatus(): WorkloadStatus[] {
    if (this.desired === undefined) return [];
    if (this.membership !== "Active") {
      return this.desired.map((w) => ({ name: w.name, observedGeneration: w.generation, state: "Stopped" as const, ready: false, reason: "MembershipDisabled", message: `membership ${this.membership}: no work runs on this node`, restartCount: 0 }));
    }
    const out: WorkloadStatus[] = [];
    for (const w of this.desired) {
      const i = this.instances.get(w.name);
      out.push(i?.status ?? { name: w.name, observedGeneration: w.generation, state: "Starting", ready: false, reason: "Pending", message: "", restartCount: 0 });
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  private publish(): void {
    const s = this.currentStatus();
    const json = JSON.stringify(s.map((x) => ({ ...x, message: x.reason === "CrashLoopBackOff" ? "" : x.message })));
    if (json === this.lastStatusJson) return;
    this.lastStatusJson = json;
    this.o.onStatusChange?.(s);
  }

  // ---- processes --------------------------------------------------------

  private async start(i: Instance, w: DesiredWorkload, hash: string, now: number): Promise<void> {
    let command: string;
    let args: string[];
    if (w.runtime === "container") {
      const engine = w.containerEngine ?? "docker";
      await removeContainer(engine, w.name);
      command = engine;
      args = containerRunArgs(w);
    } else {
      const [cmd, ...rest] = w.command;
      if (cmd === undefined) {
        this.setStatus(i, w, "Failed", false, "InvalidWorkload", "a native workload needs a command");
        return;
      }
      command = cmd;
      args = [...rest, ...w.args];
    }
    if (i.started) i.restartCount++;
    i.started = true;
    const fd = openOutput(i.dir);
    let child: ChildProcess;
    try {
      child = this.spawner.spawn(command, args, {
        detached: true,
        stdio: ["ignore", fd, fd],
        env: { ...baseEnv(), ...(w.runtime === "native" ? w.env : {}) },
        cwd: w.runtime === "native" && w.workingDir ? w.workingDir : undefined,
      });
    } catch (err) {
      closeQuietly(fd);
      this.startFailed(i, w, `start failed: ${(err as Error).message}`, now);
      return;
    }
    closeQuietly(fd);
    const pid = child.pid;
    if (pid === undefined) {
      const err = await new Promise<Error>((resolve) => child.once("error", resolve));
      this.startFailed(i, w, `start failed: ${err.message}`, now);
      return;
    }
    child.on("error", (err) => this.log.warn("workload process error", { workload: i.name, err }));
    const identity = identityAtStart(pid);
    const r: Running = { identity, child, startedAt: now, specHash: hash, adopted: false };
    child.once("exit", (code, signal) => {
      r.exit = { code, signal, at: this.clock.now() };
      this.wake();
    });
    i.running = r;
    i.startError = undefined;
    i.probe = { failures: 0, ok: false, inFlight: false, nextAt: now + (w.initialDelaySeconds ?? 0) * 1000, message: "" };
    this.writeRecord(i);
    this.log.info("workload process started", { workload: i.name, pid, restartCount: i.restartCount });
    if (w.healthProbe === undefined) this.setStatus(i, w, "Running", true, "Running", `pid ${pid}`);
    else {
      this.setStatus(i, w, "Starting", false, "WaitingForProbe", `pid ${pid}; waiting for the health probe`);
      this.probeIfDue(i, w, now);
    }
  }

  private startFailed(i: Instance, w: DesiredWorkload, message: string, now: number): void {
    i.startError = message;
    i.lastExit = { code: null, signal: null, at: now, byProbe: false };
    i.backoffMs = i.backoffMs === 0 ? this.backoff.initialMs : Math.min(this.backoff.maxMs, i.backoffMs * 2);
    i.nextStartAt = now + i.backoffMs;
    this.log.warn("workload start failed", { workload: i.name, message });
    this.setStatus(i, w, "Degraded", false, "StartFailed", message);
  }

  private probeIfDue(i: Instance, w: DesiredWorkload, now: number): void {
    const p = w.healthProbe;
    const r = i.running;
    if (p === undefined || r === undefined || i.probe.inFlight || now < i.probe.nextAt || i.stopping !== undefined) return;
    i.probe.inFlight = true;
    const env = { ...baseEnv(), ...w.env };
    void runProbe(p, env, w.workingDir).then((res) => {
      if (i.running !== r) return;
      i.probe.inFlight = false;
      i.probe.nextAt = this.clock.now() + p.periodSeconds * 1000;
      i.probe.message = res.message;
      if (res.ok) {
        i.probe.failures = 0;
        i.probe.ok = true;
      } else {
        i.probe.failures++;
        if (i.probe.failures >= p.failureThreshold) i.probe.ok = false;
      }
      this.wake();
    });
  }

  /** Stops the instance's process (SIGTERM to its group, SIGKILL after the grace); idempotent. */
  private stopInstance(i: Instance, why: string): Promise<void> {
    if (i.stopping !== undefined) return i.stopping;
    const r = i.running;
    if (r === undefined) return Promise.resolve();
    const p = (async () => {
      const pid = r.identity.pid;
      this.log.info("stopping workload process", { workload: i.name, pid, why });
      const gone = (): boolean => (r.adopted ? !isRecordedProcess(r.identity) : r.exit !== undefined || !isAlive(pid));
      if (!gone()) {
        signalGroup(pid, "SIGTERM");
        const deadline = Date.now() + this.graceMs;
        while (!gone() && Date.now() < deadline) await new Promise((res) => setTimeout(res, 25));
        if (!gone()) {
          this.log.warn("workload process ignored SIGTERM: killing", { workload: i.name, pid, graceMs: this.graceMs });
          signalGroup(pid, "SIGKILL");
          while (!gone()) await new Promise((res) => setTimeout(res, 10));
        }
      }
      const engine = i.desired?.containerEngine;
      if (engine !== undefined && i.desired?.runtime === "container") await removeContainer(engine, i.name);
      r.exit ??= { code: null, signal: "SIGTERM", at: this.clock.now() };
      // A deliberate stop is not a crash: no backoff, unless the probe asked for it.
      const byProbe = why === "health probe failed";
      if (byProbe) this.recordExit(i, r, this.clock.now());
      else if (i.running === r) {
        i.running = undefined;
        i.lastExit = undefined;
      }
      if (i.desired !== undefined) this.writeRecord(i);
    })().finally(() => {
      i.stopping = undefined;
    });
    i.stopping = p;
    return p;
  }
}
