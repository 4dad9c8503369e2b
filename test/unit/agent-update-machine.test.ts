/**
 * The agent's update state machine (agent/update/machine.ts) on a real file
 * system with a fake step runner: slots and links, commit, rollback on a
 * failed health check (version blocked locally), refusals, migrations
 * (backup first, restore on failure, fenced when the restore fails), and a
 * crash at every point: before each state is persisted, and before and
 * after each side effect. After every crash the `current` link names a
 * complete slot consistent with the persisted state, and a restarted
 * machine ends with either the old or the new version running, never
 * anything in between.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, readdir, rm, writeFile, mkdir, cp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UpdateMachine, UpdateRefused, compareVersions, type Assignment, type StepOutcome, type StepRunner, type VerifiedRelease } from "../../agent/update/machine.js";
import { slotName } from "../../agent/update/slots.js";
import type { Migration, UpdateRecord, UpdateState, UpdateTarget } from "../../agent/update/state.js";

class Crash extends Error {}

const sha = (v: string): string => (v.replace(/\D/g, "") + "a".repeat(64)).slice(0, 64);

function assignment(version: string): Assignment {
  return { workload: "web", channel: "web-prod", component: "web", version, envelope: {}, artifact: { os: "linux", arch: "amd64", length: 20, sha256: sha(version) } };
}

interface Behaviour {
  unhealthy?: Set<string>;
  refuse?: Map<string, string>;
  migration?: Map<string, Migration>;
  failMigration?: Set<string>;
  failRestore?: boolean;
}

/** Side effects on a real directory; crashes on demand. */
class FakeRunner implements StepRunner {
  calls = 0;
  running: string | undefined;
  migrations: string[] = [];
  crashAtCall?: { n: number; after: boolean };
  constructor(
    readonly root: string,
    readonly b: Behaviour = {},
  ) {}
  private async effect<T>(fn: () => Promise<T>): Promise<T> {
    this.calls++;
    if (this.crashAtCall?.n === this.calls && !this.crashAtCall.after) throw new Crash(`crash before call ${this.calls}`);
    const out = await fn();
    if (this.crashAtCall?.n === this.calls && this.crashAtCall.after) throw new Crash(`crash after call ${this.calls}`);
    return out;
  }
  check(a: Assignment, lastTrusted: string | undefined): Promise<VerifiedRelease> {
    return this.effect(async () => {
      const why = this.b.refuse?.get(a.version);
      if (why !== undefined) throw new UpdateRefused(`refused ${a.version}`, why);
      if (lastTrusted !== undefined && compareVersions(a.version, lastTrusted) < 0 && !this.b.migration) {
        // Rollback to an older, already trusted version is allowed by the manifest check (stable); nothing to do here.
      }
      return { version: a.version, sha256: a.artifact.sha256, length: a.artifact.length, migration: this.b.migration?.get(a.version), healthTimeoutMs: 10 };
    });
  }
  download(t: UpdateTarget): Promise<string> {
    return this.effect(async () => {
      const dir = join(this.root, "downloads");
      await mkdir(dir, { recursive: true });
      const p = join(dir, t.sha256);
      await writeFile(p, `#!/bin/sh\necho ${t.version}\n`);
      return p;
    });
  }
  verifyFile(path: string, _t: UpdateTarget): Promise<void> {
    return this.effect(async () => {
      await readFile(path);
    });
  }
  migrate(step: "preflight" | "backup" | "run" | "restore", exe: string, dataDir: string, m: Migration): Promise<StepOutcome> {
    return this.effect(async () => {
      assert.ok(exe.endsWith("/executable"));
      this.migrations.push(step);
      if (step === "backup") await cp(join(dataDir), join(dataDir, "..", "backup"), { recursive: true });
      if (step === "run") {
        await writeFile(join(dataDir, "schema"), m.to);
        if (this.b.failMigration?.has(m.to)) return { ok: false, message: "migration exploded" };
      }
      if (step === "restore") {
        if (this.b.failRestore === true) return { ok: false, message: "backup unreadable" };
        await rm(dataDir, { recursive: true, force: true });
        await cp(join(dataDir, "..", "backup"), dataDir, { recursive: true });
      }
      return { ok: true };
    });
  }
  run(exe: string | undefined): Promise<void> {
    return this.effect(async () => {
      this.running = exe;
    });
  }
  healthy(_deadlineMs: number, _t: UpdateTarget): Promise<boolean> {
    return this.effect(async () => {
      const v = /releases\/([^/]+)-[0-9a-f]{12}\//.exec(this.running ?? "")?.[1];
      return v !== undefined && this.b.unhealthy?.has(v) !== true;
    });
  }
}

/** A clock that can crash before the k-th state write (enter() reads the clock once per write). */
function crashingClock(crashAtTick: number | undefined): { now: () => Date; arm: () => void } {
  let ticks = 0;
  let armed = false;
  return {
    arm: () => {
      armed = true;
    },
    now: () => {
      if (armed) ticks++;
      if (ticks === crashAtTick) throw new Crash(`crash before state write ${ticks}`);
      return new Date(1_700_000_000_000 + ticks * 1000);
    },
  };
}

const IDENT = { workload: "web", channel: "web-prod" };

async function machine(dir: string, runner: FakeRunner, clock?: () => Date): Promise<UpdateMachine> {
  const m = new UpdateMachine(dir, IDENT, runner, clock);
  await m.load();
  return m;
}

async function persisted(dir: string): Promise<UpdateRecord | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, "state.json"), "utf8")) as UpdateRecord;
  } catch {
    return undefined;
  }
}

/** Which slot `current` may name in each persisted state. */
function allowedCurrent(state: UpdateState, oldSlot: string, newSlot: string): string[] {
  if (["checking", "downloading", "verifying", "staging", "migrating", "rolled_back", "failed", "idle"].includes(state)) return [oldSlot];
  if (state === "starting" || state === "rolling_back") return [oldSlot, newSlot];
  if (state === "running") return [oldSlot, newSlot]; // running before the update started, or after it
  return [newSlot];
}

describe("agent update machine", function () {
  this.timeout(60_000);
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "afo-upd-"));
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  async function installed(dir: string, version: string, b: Behaviour = {}): Promise<FakeRunner> {
    const r = new FakeRunner(root, b);
    const m = await machine(dir, r);
    const out = await m.drive(assignment(version));
    assert.equal(out.state, "running", JSON.stringify(out));
    return r;
  }

  it("installs, commits and keeps 3 slots with current and previous links", async () => {
    const dir = join(root, "web");
    const r = await installed(dir, "1.0.0");
    assert.equal(r.running, join(dir, "releases", slotName("1.0.0", sha("1.0.0")), "executable"));
    const m = await machine(dir, r);
    for (const v of ["1.1.0", "1.2.0", "1.3.0", "1.4.0"]) assert.equal((await m.drive(assignment(v))).state, "running");
    assert.equal(await m.slots.link("current"), slotName("1.4.0", sha("1.4.0")));
    assert.equal(await m.slots.link("previous"), slotName("1.3.0", sha("1.3.0")));
    assert.equal((await readdir(join(dir, "releases"))).length, 3);
    assert.equal(m.record.lastTrustedVersion, "1.4.0");
    assert.equal(m.record.previous?.version, "1.3.0");
  });

  it("the record never carries an empty component: absent before the first assignment, the assignment's from then on", async () => {
    const dir = join(root, "web");
    const r = new FakeRunner(root);
    const m = await machine(dir, r);
    assert.equal((await m.drive(undefined)).state, "idle");
    assert.equal("component" in m.record, false, JSON.stringify(m.record));
    const states: Array<string | undefined> = [];
    const spy = new UpdateMachine(dir, IDENT, r, () => new Date(), async (point) => {
      if (point.startsWith("after:")) return; // `after:idle` comes before the first write
      const onDisk = await persisted(dir);
      states.push(onDisk === undefined ? undefined : `${onDisk.state}:${JSON.stringify(onDisk.component)}`);
    });
    await spy.load();
    assert.equal((await spy.drive(assignment("1.0.0"))).state, "running");
    assert.ok(states.length > 0);
    for (const s of states) assert.match(s ?? "missing", /:"web"$/, `every persisted record names the component: ${states.join(" ")}`);
    // A record an older agent wrote with "" loads without it.
    await writeFile(join(dir, "state.json"), JSON.stringify({ ...(await persisted(dir)), component: "" }));
    const old = await machine(dir, r);
    assert.equal("component" in old.record, false);
    await old.drive(assignment("2.0.0"));
    assert.equal((await persisted(dir))?.component, "web");
  });

  it("a version failing its health check rolls back to the previous slot and is blocked locally", async () => {
    const dir = join(root, "web");
    const r = await installed(dir, "1.0.0", { unhealthy: new Set(["2.0.0"]) });
    const m = await machine(dir, r);
    const out = await m.drive(assignment("2.0.0"));
    assert.equal(out.state, "rolled_back");
    assert.match(out.reason ?? "", /HealthCheckFailed/);
    assert.deepEqual(out.blocked, ["2.0.0"]);
    assert.equal(await m.slots.link("current"), slotName("1.0.0", sha("1.0.0")));
    assert.equal(r.running, m.slots.executable(slotName("1.0.0", sha("1.0.0"))));
    // Offered again: nothing is retried.
    const calls = r.calls;
    assert.equal((await m.drive(assignment("2.0.0"))).state, "rolled_back");
    assert.equal(r.calls, calls);
    // The controller returns the node to stable (1.0.0): running again without a download.
    assert.equal((await m.drive(assignment("1.0.0"))).state, "running");
  });

  it("a refused manifest fails the update; nothing is downloaded or run", async () => {
    const dir = join(root, "web");
    const r = await installed(dir, "1.0.0", { refuse: new Map([["2.0.0", "BadSignature"]]) });
    const m = await machine(dir, r);
    const out = await m.drive(assignment("2.0.0"));
    assert.equal(out.state, "failed");
    assert.match(out.reason ?? "", /^BadSignature/);
    assert.deepEqual(await readdir(join(dir, "releases")), [slotName("1.0.0", sha("1.0.0"))]);
    assert.equal(r.running, m.slots.executable(slotName("1.0.0", sha("1.0.0"))));
  });

  it("migration: backup first, run, commit", async () => {
    const dir = join(root, "web");
    const mig: Migration = { from: "1.0.0", to: "2.0.0", preflight: "check", backup: "dump", rollback: "restore", downgrade: false };
    const r = await installed(dir, "1.0.0", { migration: new Map([["2.0.0", mig]]) });
    await writeFile(join(dir, "data", "schema"), "1.0.0");
    const m = await machine(dir, r);
    assert.equal((await m.drive(assignment("2.0.0"))).state, "running");
    assert.deepEqual(r.migrations, ["preflight", "backup", "run"]);
    assert.equal(await readFile(join(dir, "data", "schema"), "utf8"), "2.0.0");
  });

  it("a failed migration restores the backup and reports rolled_back; a failed restore fences", async () => {
    const mig: Migration = { from: "1.0.0", to: "2.0.0", preflight: "check", backup: "dump", rollback: "restore", downgrade: false };
    for (const failRestore of [false, true]) {
      const dir = join(root, `web-${failRestore}`);
      const r = await installed(dir, "1.0.0", { migration: new Map([["2.0.0", mig]]), failMigration: new Set(["2.0.0"]), failRestore });
      await writeFile(join(dir, "data", "schema"), "1.0.0");
      const m = await machine(dir, r);
      const out = await m.drive(assignment("2.0.0"));
      if (!failRestore) {
        assert.equal(out.state, "rolled_back");
        assert.equal(await readFile(join(dir, "data", "schema"), "utf8"), "1.0.0");
        assert.equal(r.running, m.slots.executable(slotName("1.0.0", sha("1.0.0"))));
      } else {
        assert.equal(out.state, "fenced");
        assert.match(out.reason ?? "", /RestoreFailed/);
        assert.equal(r.running, undefined, "a fenced workload does not run");
      }
    }
  });

  for (const unhealthy of [false, true]) {
    for (const withMigration of [false, true]) {
      it(`crash at every point of a ${unhealthy ? "failing" : "good"} update${withMigration ? " with a migration" : ""}: restart ends old-or-new, never half-updated`, async () => {
        const mig: Migration = { from: "1.0.0", to: "2.0.0", preflight: "check", backup: "dump", rollback: "restore", downgrade: false };
        const b: Behaviour = { unhealthy: unhealthy ? new Set(["2.0.0"]) : undefined, migration: withMigration ? new Map([["2.0.0", mig]]) : undefined };
        const oldSlot = slotName("1.0.0", sha("1.0.0"));
        const newSlot = slotName("2.0.0", sha("2.0.0"));
        // Count the points on a clean run first.
        const probeDir = join(root, "probe");
        const probe = await installed(probeDir, "1.0.0", b);
        probe.calls = 0;
        let ticks = 0;
        let counting = false;
        const pm = await machine(probeDir, probe, () => new Date(1_700_000_000_000 + (counting ? ++ticks : 0)));
        counting = true;
        await pm.drive(assignment("2.0.0"));
        const points = [
          ...Array.from({ length: probe.calls }, (_, i) => ({ call: { n: i + 1, after: false } })),
          ...Array.from({ length: probe.calls }, (_, i) => ({ call: { n: i + 1, after: true } })),
          ...Array.from({ length: ticks }, (_, i) => ({ tick: i + 1 })),
        ];
        const seenStates = new Set<string>();
        for (const [i, p] of points.entries()) {
          const dir = join(root, `c${i}`);
          const base = await installed(dir, "1.0.0", b);
          await writeFile(join(dir, "data", "schema"), "1.0.0");
          base.calls = 0;
          if ("call" in p) base.crashAtCall = p.call;
          const clock = crashingClock("tick" in p ? p.tick : undefined);
          const m = await machine(dir, base, clock.now);
          clock.arm();
          await assert.rejects(m.drive(assignment("2.0.0")), Crash, `point ${JSON.stringify(p)} of ${probe.calls} calls should crash`);
          const rec = await persisted(dir);
          assert.ok(rec !== undefined);
          seenStates.add(rec.state);
          const cur = await m.slots.link("current");
          assert.ok(allowedCurrent(rec.state, oldSlot, newSlot).includes(cur ?? ""), `state ${rec.state}: current ${cur} at ${JSON.stringify(p)}`);
          assert.ok(await m.slots.isComplete(cur ?? ""), "current names a complete slot");
          // Restart: a new runner (nothing runs until the machine says so), the same directory.
          const after = new FakeRunner(root, b);
          const m2 = await machine(dir, after);
          const out = await m2.drive(assignment("2.0.0"));
          const want = unhealthy ? { state: "rolled_back", slot: oldSlot } : { state: "running", slot: newSlot };
          assert.equal(out.state, want.state, `after ${JSON.stringify(p)} (crashed in ${rec.state})`);
          assert.equal(await m2.slots.link("current"), want.slot);
          assert.equal(after.running, m2.slots.executable(want.slot), `runs after ${JSON.stringify(p)} (crashed in ${rec.state}): ${JSON.stringify(out)}`);
          if (withMigration) assert.equal(await readFile(join(dir, "data", "schema"), "utf8"), unhealthy ? "1.0.0" : "2.0.0");
          await rm(dir, { recursive: true, force: true });
        }
        const expected = ["checking", "downloading", "verifying", "staging", "starting", "health_checking", ...(withMigration ? ["migrating"] : []), ...(unhealthy ? ["rollback_required", "rolling_back"] : ["promoting"])];
        for (const s of expected) assert.ok(seenStates.has(s), `a crash in ${s} was exercised (${[...seenStates].join(", ")})`);
      });
    }
  }
});
