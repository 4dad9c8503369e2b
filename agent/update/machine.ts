/**
 * The update state machine of one channel-bound workload. States (seed):
 * idle, checking, downloading, verifying, staging, migrating, starting,
 * health_checking, promoting, running, rollback_required, rolling_back,
 * rolled_back, failed, fenced.
 *
 * A state is persisted (state.ts) BEFORE its side effect runs; after a crash
 * the machine resumes in the persisted state and redoes its effect, which is
 * idempotent (links are set to slots named in the record, never toggled).
 * What runs is what `current` names, and `current` only ever names a
 * complete slot:
 *   checking .. migrating, rolled_back, failed, fenced -> the old version
 *   starting, rolling_back                             -> old or new (the step finishes on resume)
 *   health_checking, promoting, running, rollback_required -> the new version
 * The side effects go through a StepRunner (download, verify, migration
 * steps, start through the supervisor, health check), so tests can crash
 * the machine in every state with a real file system.
 */
import type { SnapshotReleaseAssignment } from "../../lib/snapshot/format.js";
import { slotName, WorkloadSlots } from "./slots.js";
import { freshRecord, loadRecord, MAX_BLOCKED, saveRecord, type Migration, type UpdateRecord, type UpdateState, type UpdateTarget } from "./state.js";

/** The assignment the snapshot names for this workload (its envelope still to verify). */
export type Assignment = SnapshotReleaseAssignment;

/** What a verified manifest gives the machine. */
export interface VerifiedRelease {
  version: string;
  sha256: string;
  length: number;
  migration?: Migration;
  healthTimeoutMs?: number;
  /** The manifest's health command, run in the slot directory after the workload is ready. */
  healthCommand?: string[];
}

/** A refusal that no retry fixes (bad signature, wrong hash, expired...): the update fails. */
export class UpdateRefused extends Error {
  constructor(
    message: string,
    readonly reason: string,
  ) {
    super(message);
    this.name = "UpdateRefused";
  }
}

/** Outcome of a migration step. */
export type StepOutcome = { ok: true } | { ok: false; message: string };

/** The side effects; every one idempotent. */
export interface StepRunner {
  /** Verifies the assignment's envelope against the snapshot's trust; throws UpdateRefused. */
  check(a: Assignment, lastTrustedVersion: string | undefined): Promise<VerifiedRelease>;
  /** Downloads (resuming) the artifact; returns the verified file's path. Transient errors throw anything else. */
  download(t: UpdateTarget): Promise<string>;
  /** Re-hashes the downloaded file against the manifest; throws UpdateRefused. */
  verifyFile(path: string, t: UpdateTarget): Promise<void>;
  /** One migration step with the new release's executable: its outcome; throws only when it could not tell (retried). */
  migrate(step: "preflight" | "backup" | "run" | "restore", exe: string, dataDir: string, m: Migration): Promise<StepOutcome>;
  /** Makes the supervisor run `exe` (undefined: nothing) for the workload and waits until it started it. */
  run(exe: string | undefined): Promise<void>;
  /** True once the new version is healthy (readiness probe, then the manifest's health command) within `deadlineMs`. */
  healthy(deadlineMs: number, t: UpdateTarget): Promise<boolean>;
}

/**
 * A pause point for crash tests: `<state>` right after the state is persisted
 * (its side effect not run yet), `after:<state>` right before the next state
 * is written (the side effect done). See UPDATE_TEST_HOLD_ENV in manager.ts.
 */
export type HoldPoint = `${UpdateState}` | `after:${UpdateState}`;

/** Where the machine rests (until the next assignment). */
export const RESTING: ReadonlySet<UpdateState> = new Set(["idle", "running", "rolled_back", "failed", "fenced"]);
const DEFAULT_HEALTH_MS = 60_000;

/** Compares dotted versions numerically (semver core; a pre-release sorts before its release). */
export function compareVersions(a: string, b: string): number {
  const [ca = "", pa] = a.split("-", 2);
  const [cb = "", pb] = b.split("-", 2);
  const xa = ca.split(".").map(Number);
  const xb = cb.split(".").map(Number);
  for (let i = 0; i < Math.max(xa.length, xb.length); i++) {
    const d = (xa[i] ?? 0) - (xb[i] ?? 0);
    if (d !== 0) return d;
  }
  if (pa === pb) return 0;
  if (pa === undefined) return 1;
  if (pb === undefined) return -1;
  return pa < pb ? -1 : 1;
}

/** See the module comment. */
export class UpdateMachine {
  private rec!: UpdateRecord;
  readonly slots: WorkloadSlots;

  constructor(
    private readonly dir: string,
    private readonly ident: { workload: string; channel: string },
    private readonly runner: StepRunner,
    private readonly clock: () => Date = () => new Date(),
    /** Awaited at every hold point (crash tests only; production passes none). */
    private readonly hold?: (point: HoldPoint) => Promise<void>,
  ) {
    this.slots = new WorkloadSlots(dir);
  }

  /** The persisted record (after load()). */
  get record(): Readonly<UpdateRecord> {
    return this.rec;
  }

  /** Loads the record (or starts fresh from the slot layout). */
  async load(): Promise<void> {
    await this.slots.init();
    const r = await loadRecord(this.dir, this.clock());
    if (r !== undefined) {
      this.rec = r;
      return;
    }
    this.rec = freshRecord(this.ident.workload, this.ident.channel, this.clock());
    const cur = await this.slots.link("current");
    if (cur !== undefined && (await this.slots.isComplete(cur))) {
      this.rec.current = { version: cur.replace(/-[0-9a-f]{12}$/, ""), slot: cur };
      this.rec.state = "running";
    }
  }

  /** The executable that runs at rest, or undefined. */
  currentExecutable(): string | undefined {
    return this.rec.current === undefined ? undefined : this.slots.executable(this.rec.current.slot);
  }

  private async enter(state: UpdateState, patch: Partial<UpdateRecord> = {}): Promise<void> {
    if (this.hold !== undefined && this.rec.state !== state) await this.hold(`after:${this.rec.state}`);
    this.rec = { ...this.rec, ...patch, state, since: this.clock().toISOString() };
    if (!("reason" in patch) && !RESTING.has(state)) delete this.rec.reason;
    await saveRecord(this.dir, this.rec);
    if (this.hold !== undefined) await this.hold(state);
  }

  /**
   * Drives the machine towards `a` (undefined: no assignment; the workload
   * keeps what it runs) until it rests. Transient errors (network, a crash
   * of a step) propagate with the state persisted: call again later.
   */
  async drive(a: Assignment | undefined): Promise<UpdateRecord> {
    for (let i = 0; i < 32; i++) {
      if (!(await this.step(a))) return this.rec;
    }
    throw new Error(`update of ${this.rec.workload} did not settle`);
  }

  /** One transition; false when resting. */
  private async step(a: Assignment | undefined): Promise<boolean> {
    const r = this.rec;
    const t = r.target;
    switch (r.state) {
      case "idle":
      case "running":
      case "rolled_back":
      case "failed":
      case "fenced": {
        // Make sure what should run runs (after a restart, or the first time).
        if (r.state === "fenced") return false;
        if (a === undefined || a.version === r.current?.version) {
          if (r.current !== undefined) await this.slots.setLink("current", r.current.slot);
          await this.runner.run(this.currentExecutable());
          if (a !== undefined && r.state !== "running" && r.current !== undefined) await this.enter("running", { component: a.component, target: undefined, reason: undefined });
          return false;
        }
        if (r.blocked.includes(a.version)) return false;
        if (r.state === "failed" && t?.version === a.version && t.sha256 === a.artifact.sha256) return false;
        await this.enter("checking", { component: a.component, target: undefined, reason: undefined });
        return true;
      }
      case "checking": {
        if (a === undefined) {
          await this.enter(r.current === undefined ? "idle" : "running");
          return true;
        }
        let v: VerifiedRelease;
        try {
          v = await this.runner.check(a, r.lastTrustedVersion);
          if (v.version !== a.version || v.sha256 !== a.artifact.sha256 || v.length !== a.artifact.length) {
            throw new UpdateRefused(`the manifest names ${v.version} (${v.sha256}) but the assignment ${a.version} (${a.artifact.sha256})`, "MismatchedAssignment");
          }
        } catch (err) {
          if (!(err instanceof UpdateRefused)) throw err;
          await this.enter("failed", { target: { version: a.version, sha256: a.artifact.sha256, length: a.artifact.length, slot: slotName(a.version, a.artifact.sha256) }, reason: `${err.reason}: ${err.message}` });
          return false;
        }
        const migration = v.migration !== undefined && v.migration.to === v.version && v.migration.from === r.current?.version ? v.migration : undefined;
        await this.enter("downloading", {
          target: { version: v.version, sha256: v.sha256, length: v.length, slot: slotName(v.version, v.sha256), migration, healthTimeoutMs: v.healthTimeoutMs, healthCommand: v.healthCommand },
        });
        return true;
      }
      case "downloading": {
        const target = t as UpdateTarget;
        const path = await this.runner.download(target);
        await this.enter("verifying", { target: { ...target, artifactPath: path } });
        return true;
      }
      case "verifying": {
        const target = t as UpdateTarget;
        try {
          await this.runner.verifyFile(target.artifactPath as string, target);
        } catch (err) {
          if (!(err instanceof UpdateRefused)) throw err;
          await this.enter("failed", { reason: `${err.reason}: ${err.message}` });
          return false;
        }
        await this.enter("staging");
        return true;
      }
      case "staging": {
        const target = t as UpdateTarget;
        await this.slots.stage(target.slot, target.artifactPath as string);
        await this.enter(target.migration !== undefined ? "migrating" : "starting", target.migration !== undefined ? { target: { ...target, migrationStep: "preflight" } } : {});
        return true;
      }
      case "migrating":
        return this.migrating(t as UpdateTarget);
      case "starting": {
        const target = t as UpdateTarget;
        if (r.current !== undefined && r.current.slot !== target.slot) await this.slots.setLink("previous", r.current.slot);
        await this.slots.setLink("current", target.slot);
        await this.runner.run(this.slots.executable(target.slot));
        await this.enter("health_checking");
        return true;
      }
      case "health_checking": {
        const target = t as UpdateTarget;
        // After a restart the new version is started again (idempotent) before it is judged.
        await this.slots.setLink("current", target.slot);
        await this.runner.run(this.slots.executable(target.slot));
        if (await this.runner.healthy(target.healthTimeoutMs ?? DEFAULT_HEALTH_MS, target)) {
          await this.enter("promoting");
        } else {
          await this.enter("rollback_required", { reason: `HealthCheckFailed: ${target.version} did not pass its readiness probe in time` });
        }
        return true;
      }
      case "promoting": {
        const target = t as UpdateTarget;
        const previous = r.current !== undefined && r.current.slot !== target.slot ? r.current : r.previous;
        const trusted = r.lastTrustedVersion === undefined || compareVersions(target.version, r.lastTrustedVersion) > 0 ? target.version : r.lastTrustedVersion;
        await this.enter("running", { current: { version: target.version, slot: target.slot }, previous, target: undefined, lastTrustedVersion: trusted, reason: undefined });
        await this.slots.prune();
        return true; // the resting step (re)starts what current names
      }
      case "rollback_required":
        await this.enter("rolling_back", { reason: r.reason });
        return true;
      case "rolling_back": {
        const target = t as UpdateTarget;
        // Data migrated (or half-migrated) for the new version is restored, unless the manifest says the old version runs on it.
        const restore = target.migrationStep === "run" || target.migrationStep === "restore" || (target.migrationStep === "done" && target.migration?.downgrade !== true);
        if (target.migration !== undefined && restore) {
          await this.enter("rolling_back", { target: { ...target, migrationStep: "restore" }, reason: r.reason });
          const restored = await this.runner.migrate("restore", this.slots.executable(target.slot), this.slots.dataDir, target.migration);
          if (!restored.ok) return this.fence(restored.message);
        }
        if (r.current !== undefined) await this.slots.setLink("current", r.current.slot);
        else await this.slots.clearLink("current");
        await this.runner.run(this.currentExecutable());
        await this.enter("rolled_back", { blocked: [target.version, ...r.blocked.filter((v) => v !== target.version)].slice(0, MAX_BLOCKED), reason: r.reason });
        return false;
      }
    }
  }

  private async migrating(target: UpdateTarget): Promise<boolean> {
    const m = target.migration as Migration;
    const exe = this.slots.executable(target.slot);
    const order = ["preflight", "backup", "run"] as const;
    // Resuming in "run" means a crash during it: restore the backup before running it again.
    let stepIdx = order.indexOf((target.migrationStep ?? "preflight") as (typeof order)[number]);
    if (target.migrationStep === "restore" || target.migrationStep === "run") {
      await this.enter("migrating", { target: { ...target, migrationStep: "restore" } });
      const restored = await this.runner.migrate("restore", exe, this.slots.dataDir, m);
      if (!restored.ok) return this.fence(restored.message);
      stepIdx = 2;
    }
    for (let i = Math.max(0, stepIdx); i < order.length; i++) {
      const step = order[i] as (typeof order)[number];
      await this.enter("migrating", { target: { ...target, migrationStep: step } });
      const done = await this.runner.migrate(step, exe, this.slots.dataDir, m);
      if (!done.ok) {
        const why = `MigrationFailed: ${step}: ${done.message}`;
        if (step === "preflight" || step === "backup") {
          // Nothing changed yet: the old version keeps running.
          await this.enter("rolled_back", { blocked: [target.version, ...this.rec.blocked].slice(0, MAX_BLOCKED), reason: why });
          return false;
        }
        await this.enter("rollback_required", { target: { ...target, migrationStep: "restore" }, reason: why });
        return true;
      }
    }
    await this.enter("starting", { target: { ...target, migrationStep: "done" } });
    return true;
  }

  /** The backup could not be restored: nothing of this workload runs until an operator looks. */
  private async fence(message: string): Promise<false> {
    await this.enter("fenced", { reason: `RestoreFailed: ${message}` });
    await this.runner.run(undefined);
    return false;
  }
}
