/**
 * Workload updates of one membership: for every channel-bound workload of
 * the verified snapshot (SnapshotWorkload.releaseChannel), an UpdateMachine
 * (machine.ts) under `<membership dir>/updates/<workload>/` driven towards
 * the assignment payload.releaseUpdates names for it, with the real steps:
 *
 * - check: verifyEnvelope (lib/release) against the snapshot's trust set,
 *   for the workload's component, with the machine's lastTrustedVersion (a
 *   version already installed in a local slot is exempt: returning to
 *   stable is not a rollback attack), and the artifact for this host's OS
 *   and architecture must be the one the assignment names;
 * - download: fetchArtifact (GET /v1/artifacts/<sha256>, Range resume,
 *   length cap) into `<membership dir>/updates/downloads/`, from the
 *   update caches the snapshot lists first (cache-client.ts), then from the
 *   control plane;
 * - verify: the file is hashed again against the signed length and sha256;
 * - migrate: the new executable run with the manifest's preflight, backup,
 *   run or rollback argument, in the workload's environment (stepEnv: the
 *   supervisor's allow-list and the workload's env) plus FABRIC_DATA_DIR
 *   and FABRIC_BACKUP_DIR;
 * - run: the supervisor is re-applied with the workload's command replaced
 *   by the slot's executable (its args kept), which restarts it;
 * - healthy: the supervisor reports the new process ready (its readiness
 *   probe, or running without one) within the deadline (manifest
 *   healthCheck.timeoutSeconds, default 60 s).
 *
 * Migration steps and the health command run as step children
 * (step-child.ts): a leftover of a killed agent is killed and reaped when
 * the workload's machine is loaded, whatever state it resumes in.
 *
 * A channel-bound workload runs only from a slot: until its first release is
 * installed (or while fenced) it is withheld from the supervisor. Nothing is
 * fetched that the verified snapshot does not name. States are reported as
 * status kind `updates` (UpdateReporter).
 */
import { createReadStream, readFileSync, readlinkSync } from "node:fs";
import { arch as hostArch, platform } from "node:os";
import { join } from "node:path";
import type { Logger } from "../../lib/log.js";
import { ReleaseError, verifyArtifactStream, verifyEnvelope } from "../../lib/release/index.js";
import type { SnapshotPayload, SnapshotReleaseAssignment, SnapshotReleaseTrust, SnapshotUpdateCacheEndpoint, SnapshotWorkload } from "../../lib/snapshot/format.js";
import { AgentApiClient, AgentApiRequestError } from "../http/client.js";
import { loadIdentity } from "../enroll/identity-store.js";
import { baseEnv, type WorkloadSupervisor } from "../workloads/supervisor.js";
import { UpdateCacheClient } from "./cache-client.js";
import { fetchArtifact } from "./fetch.js";
import { UpdateMachine, UpdateRefused, type Assignment, type HoldPoint, type StepOutcome, type StepRunner, type VerifiedRelease } from "./machine.js";
import { EXECUTABLE, slotName } from "./slots.js";
import { reapLeftover, runStepChild } from "./step-child.js";
import { STATE_FILE, type Migration, type UpdateRecord, type UpdateTarget } from "./state.js";

const ARCH: Record<string, string> = { x64: "amd64", arm64: "arm64", arm: "arm" };
/** Retry period of a step that failed transiently (network, 403 before the assignment reached the agent API). */
const RETRY_MS = 2000;
const MIGRATION_TIMEOUT_MS = 10 * 60_000;

export interface UpdateManagerOptions {
  /** The membership's state directory. */
  dir: string;
  supervisor: () => WorkloadSupervisor;
  /** Re-applies the last snapshot's workloads (through rewrite()). */
  reapply: () => void;
  onReport: (items: UpdateRecord[]) => void;
  log: Logger;
  /** The fetch client (default: the membership's mTLS identity, re-read per download). */
  client?: () => Promise<Pick<AgentApiClient, "stream">>;
  host?: { os: string; arch: string };
  /**
   * Crash tests only: a hold point (`<state>` or `after:<state>`, machine.ts)
   * at which every machine of this agent logs "update test hold reached"
   * and stops for good, waiting to be killed. Unset in production.
   */
  testHold?: string;
}

/** The environment variable wire.ts reads `testHold` from. */
export const UPDATE_TEST_HOLD_ENV = "FABRIC_UPDATE_TEST_HOLD";

interface Entry {
  machine: UpdateMachine;
  /** The workload's own env (snapshot), which its step children get too. */
  env: Record<string, string>;
  exe: string | undefined;
  startedPid?: number;
  assignment?: Assignment;
  trust?: SnapshotReleaseTrust;
  running?: Promise<void>;
  again: boolean;
  timer?: NodeJS.Timeout;
}

/** See the module comment. */
export class UpdateManager {
  private readonly entries = new Map<string, Entry>();
  private stopped = false;
  private readonly host: { os: string; arch: string };
  /** The update caches of the snapshot in force. */
  private caches: SnapshotUpdateCacheEndpoint[] = [];

  constructor(private readonly o: UpdateManagerOptions) {
    this.host = o.host ?? { os: platform(), arch: ARCH[hostArch()] ?? hostArch() };
  }

  /** The desired workloads as the supervisor gets them: channel-bound ones run their slot's executable, or not at all. */
  rewrite(desired: readonly SnapshotWorkload[]): SnapshotWorkload[] {
    return desired.flatMap((w) => {
      if (w.releaseChannel === undefined) return [w];
      const e = this.entries.get(w.name);
      const exe = e !== undefined ? e.exe : this.restingExecutable(w.name);
      return exe === undefined ? [] : [{ ...w, command: [exe], releaseChannel: w.releaseChannel }];
    });
  }

  /**
   * Before a workload's machine is loaded (the first snapshot after a
   * restart): what its `current` link names, unless its state is fenced, so
   * an adopted process is never stopped for lack of a machine.
   */
  private restingExecutable(name: string): string | undefined {
    const dir = join(this.o.dir, "updates", name);
    try {
      if ((JSON.parse(readFileSync(join(dir, STATE_FILE), "utf8")) as { state?: unknown }).state === "fenced") return undefined;
    } catch {
      // No or unreadable state: the link decides (the machine moves a corrupt file aside when it loads).
    }
    try {
      const target = readlinkSync(join(dir, "current"));
      return target.startsWith("releases/") ? join(dir, target, EXECUTABLE) : undefined;
    } catch {
      return undefined;
    }
  }

  /** A verified snapshot arrived: (re)drive every channel-bound workload. Resolves once machines are loaded. */
  async apply(p: SnapshotPayload): Promise<void> {
    const byWorkload = new Map((p.releaseUpdates?.assignments ?? []).map((a) => [a.workload, a] as const));
    this.caches = p.releaseUpdates?.caches ?? [];
    for (const w of p.workloads) {
      if (w.releaseChannel === undefined) continue;
      let e = this.entries.get(w.name);
      const a = byWorkload.get(w.name);
      if (e === undefined) {
        const dir = join(this.o.dir, "updates", w.name);
        // A step child of a killed agent dies now, whatever state the machine resumes in (fenced and resting ones start no step that would reap it).
        const killed = await reapLeftover(dir);
        if (killed !== undefined) this.o.log.info("killed the update step a previous agent left running", { workload: w.name, pid: killed });
        const machine = new UpdateMachine(
          dir,
          { workload: w.name, channel: w.releaseChannel },
          this.runner(w.name),
          undefined,
          this.o.testHold === undefined ? undefined : this.holdAt(w.name, this.o.testHold),
        );
        await machine.load();
        e = { machine, exe: undefined, env: w.env, again: false };
        // What runs until the machine says otherwise: what `current` names (consistent with the persisted state).
        const cur = await machine.slots.link("current");
        e.exe = machine.record.state === "fenced" || cur === undefined ? undefined : machine.slots.executable(cur);
        this.entries.set(w.name, e);
      }
      e.env = w.env;
      e.assignment = a === undefined ? undefined : toAssignment(a);
      e.trust = p.releaseUpdates?.trust;
      this.kick(w.name);
    }
    this.o.reapply();
  }

  /** The update states of every channel-bound workload. */
  records(): UpdateRecord[] {
    return [...this.entries.values()].map((e) => e.machine.record).filter((r) => r !== undefined);
  }

  stop(): void {
    this.stopped = true;
    for (const e of this.entries.values()) if (e.timer !== undefined) clearTimeout(e.timer);
  }

  private holdAt(workload: string, at: string): (point: HoldPoint) => Promise<void> {
    return (point) => {
      if (point !== at) return Promise.resolve();
      this.o.log.warn("update test hold reached", { workload, point });
      return new Promise<void>(() => undefined);
    };
  }

  private kick(name: string): void {
    const e = this.entries.get(name);
    if (e === undefined || this.stopped) return;
    if (e.running !== undefined) {
      e.again = true;
      return;
    }
    e.running = (async () => {
      do {
        e.again = false;
        try {
          await e.machine.drive(e.assignment);
        } catch (err) {
          this.o.log.warn("workload update step failed; will retry", { workload: name, state: e.machine.record.state, err });
          if (e.timer === undefined && !this.stopped) {
            e.timer = setTimeout(() => {
              e.timer = undefined;
              this.kick(name);
            }, RETRY_MS);
            e.timer.unref();
          }
        }
        this.o.onReport(this.records());
      } while (e.again && !this.stopped);
    })().finally(() => {
      e.running = undefined;
    });
  }

  private runner(name: string): StepRunner {
    const entry = (): Entry => this.entries.get(name) as Entry;
    const downloads = join(this.o.dir, "updates", "downloads");
    return {
      check: async (a, lastTrusted): Promise<VerifiedRelease> => {
        const e = entry();
        if (e.trust === undefined) throw new UpdateRefused("the snapshot carries no release trust set", "NoTrust");
        const installed = await e.machine.slots.isComplete(slotName(a.version, a.artifact.sha256));
        try {
          const v = verifyEnvelope(a.envelope, e.trust, { component: a.component, lastTrustedVersion: installed ? undefined : lastTrusted });
          const m = v.manifest;
          const art = m.artifacts.find((x) => x.os === this.host.os && x.arch === this.host.arch);
          if (art === undefined) throw new UpdateRefused(`no artifact for ${this.host.os}/${this.host.arch}`, "ArtifactMissing");
          if (art.sha256 !== a.artifact.sha256 || art.length !== a.artifact.length) throw new UpdateRefused("the assignment's artifact is not the signed one for this host", "MismatchedArtifact");
          const timeout = m.healthCheck?.timeoutSeconds;
          return { version: m.version, sha256: art.sha256, length: art.length, migration: m.migration, healthTimeoutMs: timeout === undefined ? undefined : timeout * 1000, healthCommand: m.healthCheck?.command };
        } catch (err) {
          if (err instanceof ReleaseError) throw new UpdateRefused(err.message, err.code);
          throw err;
        }
      },
      download: async (t: UpdateTarget): Promise<string> => {
        const client = await (this.o.client ?? (() => this.defaultClient()))();
        const caches = await this.cacheClients();
        try {
          return await fetchArtifact(client, { sha256: t.sha256, length: t.length }, downloads, {
            caches,
            onCacheFailure: (i, err) => this.o.log.info("update cache failed; next source", { workload: name, cache: caches[i]?.cache.node, err }),
          });
        } catch (err) {
          if (err instanceof ReleaseError) throw new UpdateRefused(err.message, err.code);
          if (err instanceof AgentApiRequestError) this.o.log.info("artifact not served yet", { workload: name, status: err.status });
          throw err;
        } finally {
          for (const c of caches) c.close();
        }
      },
      verifyFile: async (path: string, t: UpdateTarget): Promise<void> => {
        try {
          await verifyArtifactStream(createReadStream(path), { sha256: t.sha256, length: t.length });
        } catch (err) {
          if (err instanceof ReleaseError) throw new UpdateRefused(err.message, err.code);
          throw err;
        }
      },
      migrate: (step, exe, dataDir, m): Promise<StepOutcome> => runMigrationStep(step, exe, dataDir, m, entry().env),
      run: async (exe: string | undefined): Promise<void> => {
        const e = entry();
        e.exe = exe;
        this.o.reapply();
        const sup = this.o.supervisor();
        await sup.settle();
        e.startedPid = sup.status().find((s) => s.name === name)?.pid;
      },
      healthy: async (deadlineMs: number, t: UpdateTarget): Promise<boolean> => {
        const sup = this.o.supervisor();
        const until = Date.now() + deadlineMs;
        let ready = false;
        while (Date.now() < until && !this.stopped) {
          const s = sup.status().find((x) => x.name === name);
          const e = entry();
          if (s?.pid !== undefined && e.startedPid === undefined) e.startedPid = s.pid;
          ready ||= s?.ready === true && s.pid !== undefined && s.pid === e.startedPid;
          if (ready && (t.healthCommand === undefined || (await runHealthCommand(t.healthCommand, e.machine.slots.dir, e.machine.slots.slotDir(t.slot), stepEnv(e.env, { FABRIC_DATA_DIR: e.machine.slots.dataDir }), until - Date.now())))) return true;
          await new Promise((r) => setTimeout(r, 200));
        }
        return false;
      },
    };
  }

  private async cacheClients(): Promise<UpdateCacheClient[]> {
    if (this.caches.length === 0) return [];
    const id = await loadIdentity(this.o.dir);
    return this.caches.map((c) => new UpdateCacheClient(c, { cluster: id.info.cluster, caPem: id.caPem, certPem: id.certPem, keyPem: id.keyPem }));
  }

  private async defaultClient(): Promise<Pick<AgentApiClient, "stream">> {
    const id = await loadIdentity(this.o.dir);
    return new AgentApiClient(id.info.server, { ca: id.serverCaPem, cert: id.certPem, key: id.keyPem }, { maxSockets: 1 });
  }
}

function toAssignment(a: SnapshotReleaseAssignment): Assignment {
  return { workload: a.workload, channel: a.channel, component: a.component, version: a.version, envelope: a.envelope, artifact: a.artifact };
}

/**
 * The environment of a step child: what a workload process gets (the
 * supervisor's allow-list of the agent's environment, then the workload's
 * own env), then the step's FABRIC_* directories; never the rest of the
 * agent's environment (its tokens, MALLOC_ARENA_MAX, test switches).
 */
export function stepEnv(workloadEnv: Record<string, string>, dirs: { FABRIC_DATA_DIR: string; FABRIC_BACKUP_DIR?: string }): NodeJS.ProcessEnv {
  return { ...baseEnv(), ...workloadEnv, ...dirs };
}

/** Runs the manifest's health command in the slot directory; true on exit 0 within `timeoutMs`. */
async function runHealthCommand(command: readonly string[], workloadDir: string, cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<boolean> {
  const [cmd, ...args] = command;
  if (cmd === undefined || timeoutMs <= 0) return false;
  const r = await runStepChild(workloadDir, cmd, args, { cwd, env, timeoutMs });
  return "code" in r && r.code === 0;
}

/** Runs `<exe> <argument of the step> <from> <to>`; exit 0 is success; a spawn error is thrown (retried). */
async function runMigrationStep(step: "preflight" | "backup" | "run" | "restore", exe: string, dataDir: string, m: Migration, workloadEnv: Record<string, string>): Promise<StepOutcome> {
  const arg = step === "restore" ? m.rollback : step === "run" ? "migrate" : m[step];
  const workloadDir = join(dataDir, "..");
  const r = await runStepChild(workloadDir, exe, [arg, m.from, m.to], { env: stepEnv(workloadEnv, { FABRIC_DATA_DIR: dataDir, FABRIC_BACKUP_DIR: join(workloadDir, "backup") }), timeoutMs: MIGRATION_TIMEOUT_MS });
  if ("error" in r) throw r.error;
  return r.code === 0 ? { ok: true } : { ok: false, message: `${step} ${r.code !== null ? `exited with ${r.code}` : `killed by ${String(r.signal)}`}` };
}
