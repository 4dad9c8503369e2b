/**
 * Workload updates against SIGKILL, with a real control plane process and
 * real fabric-agent processes, releases signed here and pushed with the
 * real fabricctl. The workload executable prints its own version into a
 * report file named by its pid, so the test reads what the running process
 * is, not what the agent says.
 *
 * 1. One agent is killed in every state of the update machine, one update
 *    per state, then restarted: at the kill exactly one process runs, the
 *    old or the new version as the persisted state.json says, `current`
 *    names a complete slot holding the signed bytes; after the restart the
 *    update finishes (or rolls back, for a release whose health fails).
 *    Held by real means where there is one: downloading (a TCP proxy in
 *    front of the agent API stalls the download mid-way; the resumed
 *    download fetches fewer bytes than the artifact, counted at the proxy),
 *    migrating (the migration waits on a gate file), health_checking (the
 *    health command waits on a gate file); the other states through the
 *    agent's test-only hold FABRIC_UPDATE_TEST_HOLD (agent/update/manager.ts),
 *    also `after:<state>` (the side effect done, the next state not written).
 * 2. The migration runner: success (data migrated, backup kept), a failed
 *    preflight (rolled_back, data untouched), a failed migrate (the backup
 *    restored, rolled_back), SIGKILL during the migrate step (the orphaned
 *    step is killed, the backup restored before the step runs again), a
 *    failed restore (fenced: nothing runs).
 * 3. A migrated release whose health check fails: the backup is restored
 *    and the old version runs (rolled_back); with `downgrade: true` the
 *    data stays as migrated and the old version runs on it. Migration steps
 *    and health commands see the workload's environment (its spec env, the
 *    supervisor's allow-list, FABRIC_DATA_DIR/FABRIC_BACKUP_DIR), never the
 *    agent's own (MALLOC_ARENA_MAX, other variables of the agent).
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { generateSigningKey, signRelease, spkiBase64, type ReleaseManifest, type ReleaseMigration } from "../../lib/release/index.js";
import { AgentProcesses, agentStatusOf, type AgentProcess } from "../support/agent-process.js";
import { eventually, fabricctl, kubectl, spawnControlPlane, tempStateDir, type ChildControlPlane } from "../support/controlplane.js";
import { applyCluster, createToken } from "../support/enrollment.js";
import { killAllWith, processesWith } from "../support/processes.js";
import { freePort, startTcpProxy, type TcpProxy } from "../support/tcp-proxy.js";

const CLUSTER = "uc";
const ARCH: Record<string, string> = { x64: "amd64", arm64: "arm64" };
const OLD_SIDE = new Set(["checking", "downloading", "verifying", "staging", "migrating", "running", "rolled_back", "failed"]);
const NEW_SIDE = new Set(["health_checking", "promoting", "rollback_required"]);

interface Rel {
  version: string;
  sha256: string;
  length: number;
  file: string;
  artifact: string;
}

interface UpdateRecordView {
  state: string;
  reason?: string;
  current?: { version: string; slot: string };
  target?: { version: string; migrationStep?: string };
  blocked: string[];
}

describe("e2e: workload updates survive SIGKILL in every state, and migrations run for real", function () {
  this.timeout(1_200_000);
  let cp: ChildControlPlane | undefined;
  let proxy: TcpProxy | undefined;
  const cpDir = tempStateDir();
  const work = tempStateDir("afu-work-");
  const reports = join(work, "reports");
  const gates = join(work, "gates");
  const marker = `afu-${randomBytes(6).toString("hex")}`;
  const key = generateSigningKey();
  const arch = ARCH[process.arch] ?? process.arch;
  const procs = new AgentProcesses();
  const agents = new Map<string, { dir: string; proc?: AgentProcess }>();
  /** In every agent's environment: a step child must never see it. */
  const agentSecret = `afu-secret-${randomBytes(6).toString("hex")}`;
  let joinArgs: (name: string) => string[] = () => [];

  const membership = (n: string): string => join(agents.get(n)?.dir ?? "?", "clusters", CLUSTER);
  const wdir = (n: string, w: string): string => join(membership(n), "updates", w);

  function startAgent(n: string, args: string[], hold?: string): void {
    const a = agents.get(n) ?? { dir: tempStateDir(`afu-agent-${n}-`) };
    agents.set(n, a);
    a.proc = procs.start(args, { stateDir: a.dir, env: { FABRIC_LOG_LEVEL: "warn", AFU_AGENT_SECRET: agentSecret, ...(hold !== undefined ? { FABRIC_UPDATE_TEST_HOLD: hold } : {}) } });
  }
  const restart = (n: string, hold?: string): void => startAgent(n, ["run", "--backoff-cap", "1s", "--heartbeat-interval", "1s"], hold);
  const stop = async (n: string, signal: NodeJS.Signals): Promise<void> => agents.get(n)?.proc?.stop(signal);
  const agentStatus = (n: string) => agentStatusOf(agents.get(n)?.dir ?? "");
  const agentLog = (n: string): string => agents.get(n)?.proc?.stderr() ?? "";
  async function apply(obj: Record<string, unknown>): Promise<void> {
    assert.ok(cp !== undefined);
    const r = await kubectl(cp.kubeconfig, ["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "accessfabric.io/v1alpha1", ...obj }) });
    assert.equal(r.code, 0, r.stderr);
  }
  async function channelPhase(name: string): Promise<string | undefined> {
    assert.ok(cp !== undefined);
    const r = await kubectl(cp.kubeconfig, ["get", "releasechannel", name, "-o", "jsonpath={.status.phase}"]);
    return r.code === 0 ? r.stdout : undefined;
  }
  async function setChannel(component: string, current: string): Promise<void> {
    await apply({
      kind: "ReleaseChannel",
      metadata: { name: component },
      spec: { cluster: CLUSTER, component, current, maxUnavailable: "100%", healthGate: { maxFailures: 1, minHealthyPercent: 100 }, rings: [{ name: "all", nodeSelector: { matchLabels: { afu: component } }, soakTime: "0s" }] },
    });
  }
  const record = (n: string, w: string): UpdateRecordView | undefined => {
    try {
      return JSON.parse(readFileSync(join(wdir(n, w), "state.json"), "utf8")) as UpdateRecordView;
    } catch {
      return undefined;
    }
  };
  /** Versions of the workload processes of agent n's workload w, as the processes printed them. */
  function running(n: string, w: string): string[] {
    const out: string[] = [];
    for (const pid of processesWith(marker)) {
      const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      if (!argv.some((a) => a.startsWith(`${wdir(n, w)}/releases/`))) continue;
      const f = join(reports, String(pid));
      out.push(existsSync(f) ? readFileSync(f, "utf8").trim() : "starting");
    }
    return out.sort();
  }
  /** Exactly one process, which printed its version (a fresh one may not have printed yet). */
  const runsOnly = (n: string, w: string): Promise<string> =>
    eventually(() => {
      const r = running(n, w);
      return r.length === 1 && r[0] !== "starting" ? r[0] : undefined;
    }, 30_000, 100);

  /**
   * The release artifact: a shell script that prints its version, runs the
   * signed health command and the migration steps; gates are files it waits for.
   */
  function release(component: string, version: string, o: { health?: "ok" | "fail" | "gate"; padding?: number; migration?: { from: string; preflight?: "ok" | "fail"; migrate?: "ok" | "fail" | "gate"; restore?: "ok" | "fail"; downgrade?: boolean } } = {}): Rel {
    const gate = join(gates, `${component}-${version}`);
    // Each step writes the environment it got beside its gate (`<gate>.<step>-env`).
    const health = `env > ${gate}.health-env; ${o.health === "fail" ? "exit 1" : o.health === "gate" ? `while [ ! -e ${gate}.health ]; do sleep 0.1; done; exit 0` : "exit 0"}`;
    const mg = o.migration;
    const lines = [
      "#!/bin/sh",
      `# ${component} ${version}`,
      'case "$1" in',
      `health) ${health} ;;`,
      `preflight) exit ${mg?.preflight === "fail" ? 1 : 0} ;;`,
      'backup) rm -rf "$FABRIC_BACKUP_DIR" && mkdir -p "$FABRIC_BACKUP_DIR" && cp -a "$FABRIC_DATA_DIR/." "$FABRIC_BACKUP_DIR/"; exit $? ;;',
      `migrate) env > ${gate}.migrate-env; echo "partial $3" >> "$FABRIC_DATA_DIR/db"; ${mg?.migrate === "gate" ? `while [ ! -e ${gate}.migrate ]; do sleep 0.1; done; ` : ""}${mg?.migrate === "fail" ? "exit 1" : 'echo "migrated $3" >> "$FABRIC_DATA_DIR/db"; exit 0'} ;;`,
      `restore) ${mg?.restore === "fail" ? "exit 1" : 'find "$FABRIC_DATA_DIR" -mindepth 1 -delete && cp -a "$FABRIC_BACKUP_DIR/." "$FABRIC_DATA_DIR/"; exit $?'} ;;`,
      "esac",
      `echo ${version} > "$2/$$"`,
      "while :; do sleep 1; done",
      "",
    ];
    let script = lines.join("\n");
    if (o.padding !== undefined) script += `# ${"x".repeat(o.padding)}\n`;
    const artifact = join(work, `${component}-${version}`);
    writeFileSync(artifact, script, { mode: 0o755 });
    const sha256 = createHash("sha256").update(script).digest("hex");
    const migration: ReleaseMigration | undefined = mg === undefined ? undefined : { from: mg.from, to: version, preflight: "preflight", backup: "backup", rollback: "restore", downgrade: mg.downgrade === true };
    const m: ReleaseManifest = {
      _type: "release",
      specVersion: 1,
      component,
      version,
      expires: new Date(Date.now() + 86_400_000).toISOString().replace(/\.\d+Z$/, "Z"),
      artifacts: [{ os: "linux", arch: arch as "amd64", length: Buffer.byteLength(script), sha256 }],
      healthCheck: { command: ["./executable", "health"], timeoutSeconds: o.health === "fail" ? 2 : 120 },
      ...(migration !== undefined ? { migration } : {}),
    };
    const file = join(work, `${component}-${version}.json`);
    writeFileSync(file, JSON.stringify({ apiVersion: "accessfabric.io/v1alpha1", kind: "Release", metadata: { name: `${component}-${version.replace(/\./g, "-")}` }, spec: { cluster: CLUSTER, component, version, envelope: signRelease(m, [key]) } }));
    return { version, sha256, length: Buffer.byteLength(script), file, artifact };
  }
  async function push(rels: Rel[]): Promise<void> {
    assert.ok(cp !== undefined);
    const kubeconfig = cp.kubeconfig;
    // In version order (a version offered after a newer one was verified is refused), then verified
    // together: one kubectl a poll for all of them.
    for (const r of rels) {
      const out = await fabricctl(["release", "push", r.file, r.artifact, "--kubeconfig", kubeconfig], { timeoutMs: 120_000 });
      assert.equal(out.code, 0, out.stderr);
    }
    const names = new Set(rels.map((r) => JSON.parse(readFileSync(r.file, "utf8")).metadata.name as string));
    await eventually(async () => {
      const r = await kubectl(kubeconfig, ["get", "releases", "-o", "jsonpath={range .items[*]}{.metadata.name}={.status.verified}{\"\\n\"}{end}"]);
      const verified = new Set(r.stdout.split("\n"));
      return [...names].every((n) => verified.has(`${n}=true`));
    }, 60_000, 300);
  }
  /** Joins agent n, labels its node for the channel, binds workload w (component w) to it, waits for `first` to run. */
  async function joinAndRun(n: string, w: string, first: Rel): Promise<void> {
    assert.ok(cp !== undefined);
    startAgent(n, joinArgs(n));
    await eventually(() => agentStatus(n)?.snapshot !== undefined, 120_000, 500);
    const r = await kubectl(cp.kubeconfig, ["label", "fabricnode", `${CLUSTER}.${n}`, `afu=${w}`, "--overwrite"]);
    assert.equal(r.code, 0, r.stderr);
    await setChannel(w, first.version);
    await apply({ kind: "ServiceWorkload", metadata: { name: w }, spec: { cluster: CLUSTER, role: "rdp-worker", nodeSelector: { matchLabels: { afu: w } }, runtime: "Native", releaseChannel: w, args: [marker, reports], env: [{ name: "AFU_WORKLOAD_VAR", value: w }], restartPolicy: "Always" } });
    await apply({ kind: "RoleAssignment", metadata: { name: w }, spec: { cluster: CLUSTER, role: "rdp-worker", nodeNames: [`${CLUSTER}.${n}`] } });
    await eventually(() => record(n, w)?.state === "running" && record(n, w)?.current?.version === first.version, 120_000, 200);
    assert.equal(await runsOnly(n, w), first.version);
  }
  /** Runs `wait`; on failure adds the agent's state.json, processes and log tail to the error. */
  async function diagnose<T>(n: string, w: string, label: string, wait: () => Promise<T>): Promise<T> {
    try {
      return await wait();
    } catch (err) {
      throw new Error(`${label}: ${String(err)}\nstate.json: ${JSON.stringify(record(n, w))}\nrunning: ${running(n, w).join(",")}\nagent log: ${agentLog(n).slice(-3000)}`);
    }
  }
  /** Pids of update step children (not workload processes) of a slot whose name starts with `slotPrefix`, running `step` (w "": any workload of n; step "": any step). */
  function stepChildren(n: string, w: string, slotPrefix: string, step: string): number[] {
    const out: number[] = [];
    for (const e of readdirSync("/proc")) {
      if (!/^\d+$/.test(e)) continue;
      try {
        const argv = readFileSync(`/proc/${e}/cmdline`, "utf8").split("\0");
        const under = w === "" ? `${membership(n)}/updates/` : `${wdir(n, w)}/releases/${slotPrefix}`;
        if ((step === "" || argv.includes(step)) && !argv.includes(marker) && argv.some((a) => a.startsWith(under))) out.push(Number(e));
      } catch {
        // gone
      }
    }
    return out;
  }
  /** `current` names a complete slot holding the signed bytes of the version it is named after. */
  function assertCurrentComplete(n: string, w: string, rels: Map<string, Rel>): string {
    const link = readlinkSync(join(wdir(n, w), "current"));
    const m = /^releases\/([0-9.]+)-([0-9a-f]{12})$/.exec(link);
    assert.ok(m, `current -> ${link}`);
    const rel = rels.get(m[1] ?? "");
    assert.ok(rel !== undefined && rel.sha256.startsWith(m[2] ?? "-"), `current names ${link}`);
    assert.ok(existsSync(join(wdir(n, w), link, ".complete")), `${link} is complete`);
    assert.equal(createHash("sha256").update(readFileSync(join(wdir(n, w), link, "executable"))).digest("hex"), rel.sha256, `${link} holds the signed bytes`);
    return rel.version;
  }

  before(async () => {
    mkdirSync(reports, { recursive: true });
    mkdirSync(gates, { recursive: true });
    const agentPort = await freePort();
    cp = await spawnControlPlane(cpDir, ["--agent-port", String(agentPort), "--leader-elect", "false"]);
    const ready = /"agentApi":"([^"]+)","agentApiCaHash":"([^"]+)"/.exec(cp.output());
    assert.ok(ready, cp.output());
    const [, server = "", caHash = ""] = ready;
    proxy = await startTcpProxy("127.0.0.1", agentPort);
    const viaProxy = server.replace(`:${agentPort}`, `:${proxy.port}`);
    assert.notEqual(viaProxy, server);
    await applyCluster(cp.kubeconfig, CLUSTER, "TokenAutoApprove");
    const trust = { keys: [{ keyId: key.keyId, publicKey: spkiBase64(key.publicKey) }], threshold: 1 };
    const p = await kubectl(cp.kubeconfig, ["patch", "fabriccluster", CLUSTER, "--type", "merge", "-p", JSON.stringify({ spec: { releaseTrust: trust } })]);
    assert.equal(p.code, 0, p.stderr);
    const token = await createToken(cp.kubeconfig, "uc-join", { cluster: CLUSTER, autoApprove: true, maxUses: 4 });
    joinArgs = (name) => ["join", "--server", viaProxy, "--token", token, "--ca-hash", caHash, "--node-name", name, "--cluster", CLUSTER, "--poll-interval", "300ms", "--backoff-cap", "1s", "--capabilities", "can_run_rdp_worker"];
  });
  after(async () => {
    await procs.stopAll();
    killAllWith(marker);
    // Step children (migration steps, health commands) a killed agent left, also when a test failed.
    for (const pid of [...agents.keys()].flatMap((n) => stepChildren(n, "", "", ""))) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone meanwhile
      }
    }
    await proxy?.close();
    if (cp !== undefined) {
      await cp.stop();
    }
    for (const d of [cpDir, work, ...[...agents.values()].map((a) => a.dir)]) rmSync(d, { recursive: true, force: true });
  });

  it("SIGKILL in every update state, then restart: the old or the new version runs as state.json says, and the update finishes", async () => {
    const n = "k1";
    const w = "cs";
    type Case = { at: string; expect: "old" | "new"; rel: Rel; bad?: boolean; real?: "downloading" | "migrating" | "health_checking" };
    let v = 1;
    const next = (o: Parameters<typeof release>[2] = {}): Rel => release(w, `${++v}.0.0`, o);
    const base = release(w, "1.0.0");
    const cases: Case[] = [];
    const add = (at: string, expect: "old" | "new", o: Parameters<typeof release>[2] = {}, extra: Partial<Case> = {}): void => {
      cases.push({ at, expect, rel: next(o), bad: o.health === "fail", ...extra });
    };
    add("checking", "old");
    add("downloading", "old", { padding: 6 << 20 }, { real: "downloading" });
    add("verifying", "old");
    add("staging", "old");
    add("after:staging", "old");
    add("migrating", "old", { migration: { from: `${v}.0.0`, migrate: "gate" } }, { real: "migrating" });
    add("starting", "old");
    add("after:starting", "new");
    add("health_checking", "new", { health: "gate" }, { real: "health_checking" });
    add("promoting", "new");
    add("after:promoting", "new");
    add("rollback_required", "new", { health: "fail" });
    add("rolling_back", "new", { health: "fail" });
    add("after:rolling_back", "old", { health: "fail" });
    const rels = new Map([base, ...cases.map((c) => c.rel)].map((r) => [r.version, r]));
    await push([base, ...cases.map((c) => c.rel)]);
    await joinAndRun(n, w, base);
    let good = base;
    const seen: string[] = [];
    for (const c of cases) {
      const label = `kill at ${c.at} (${good.version} -> ${c.rel.version})`;
      await stop(n, "SIGTERM");
      restart(n, c.real === undefined ? c.at : undefined);
      await eventually(() => agentStatus(n)?.snapshot !== undefined, 60_000, 300);
      if (c.real === "downloading") proxy?.stallAfter(1 << 20);
      await setChannel(w, c.rel.version);
      const partial = join(membership(n), "updates", "downloads", `${c.rel.sha256}.partial`);
      const gate = join(gates, `${w}-${c.rel.version}`);
      await diagnose(n, w, label, () => eventually(() => {
        const r = record(n, w);
        if (c.real === undefined) return agentLog(n).includes(`"point":"${c.at}"`);
        if (r?.target?.version !== c.rel.version) return false;
        switch (c.real) {
          case "downloading":
            return r.state === "downloading" && (proxy?.stalled() ?? 0) > 0 && existsSync(partial) && statSync(partial).size > 0;
          case "migrating":
            return r.state === "migrating" && r.target.migrationStep === "run" && readFileSync(join(wdir(n, w), "data", "db"), "utf8").includes(`partial ${c.rel.version}`);
          case "health_checking":
            return r.state === "health_checking" && running(n, w).includes(c.rel.version);
        }
      }, 120_000, 50));
      await stop(n, "SIGKILL");
      const rec = record(n, w);
      assert.ok(rec !== undefined, label);
      seen.push(rec.state);
      const ran = running(n, w);
      assert.equal(ran.length, 1, `${label}: exactly one process runs: ${ran.join(",")}`);
      const version = ran[0];
      assert.equal(version, c.expect === "old" ? good.version : c.rel.version, `${label}: state.json says ${rec.state}`);
      // Consistent with the persisted state, whatever the hold point.
      if (OLD_SIDE.has(rec.state)) assert.equal(version, rec.current?.version, `${label}: ${rec.state} runs the old version`);
      else if (NEW_SIDE.has(rec.state)) assert.equal(version, rec.target?.version, `${label}: ${rec.state} runs the new version`);
      else assert.ok(version === rec.current?.version || version === rec.target?.version, `${label}: ${rec.state} runs ${version}`);
      assert.equal(assertCurrentComplete(n, w, rels), version, `${label}: current names what runs`);

      // Restart without a hold; the update finishes (or rolls back).
      let partialBytes = 0;
      if (c.real === "downloading") {
        partialBytes = statSync(partial).size;
        assert.ok(partialBytes > 0 && partialBytes < c.rel.length, `${label}: a partial of ${partialBytes} bytes`);
        proxy?.stallAfter(undefined);
        proxy?.resetBytesDown();
      }
      if (c.real === "health_checking") writeFileSync(`${gate}.health`, "");
      const orphans = c.real === "migrating" ? stepChildren(n, w, `${c.rel.version}-`, "migrate") : [];
      if (c.real === "migrating") assert.equal(orphans.length, 1, `${label}: the killed agent's migrate step still runs`);
      restart(n);
      if (c.real === "migrating") {
        // The restarted agent kills the orphaned step, restores the backup, then runs the step again (which waits on its gate).
        await eventually(() => orphans.every((p) => !existsSync(`/proc/${p}`)) && readFileSync(join(wdir(n, w), "data", "db"), "utf8") === `partial ${c.rel.version}\n`, 60_000, 100);
        writeFileSync(`${gate}.migrate`, "");
      }
      const want = c.bad === true ? good.version : c.rel.version;
      const fin = await diagnose(n, w, `${label}, after the restart`, () => eventually(() => {
        const r = record(n, w);
        return r?.state === "running" && r.current?.version === want ? r : undefined;
      }, 180_000, 200));
      assert.equal(await runsOnly(n, w), want, `${label}: after the restart`);
      assert.equal(assertCurrentComplete(n, w, rels), want);
      if (c.bad === true) assert.ok(fin.blocked.includes(c.rel.version), `${label}: ${c.rel.version} blocked locally`);
      else good = c.rel;
      if (c.real === "downloading") {
        const after = proxy?.bytesDown() ?? 0;
        assert.ok(after < c.rel.length, `${label}: resumed: ${after} bytes sent after the restart for an artifact of ${c.rel.length} (partial ${partialBytes})`);
        assert.ok(after >= c.rel.length - partialBytes, `${label}: the rest was fetched (${after} bytes)`);
      }
      if (c.real === "migrating") assert.equal(readFileSync(join(wdir(n, w), "data", "db"), "utf8"), `partial ${c.rel.version}\nmigrated ${c.rel.version}\n`, `${label}: restored before the migration ran again`);
      await eventually(async () => ((await channelPhase(w)) === (c.bad === true ? "Halted" : "Complete") ? true : undefined), 60_000, 300);
    }
    assert.deepEqual(seen, cases.map((c) => c.at.replace(/^after:/, "")), "the kills happened in these persisted states");
  });

  it("runs a verified manifest's migration: success keeps the backup, failures restore and roll back, a kill restores before retrying, a failed restore fences", async () => {
    const n = "m1";
    const w = "ms";
    const v1 = release(w, "1.0.0");
    const ok = release(w, "2.0.0", { migration: { from: "1.0.0" } });
    const badPreflight = release(w, "3.0.0", { migration: { from: "2.0.0", preflight: "fail" } });
    const badMigrate = release(w, "4.0.0", { migration: { from: "2.0.0", migrate: "fail" } });
    const killed = release(w, "5.0.0", { migration: { from: "2.0.0", migrate: "gate" } });
    const fenced = release(w, "6.0.0", { migration: { from: "5.0.0", migrate: "fail", restore: "fail" } });
    await push([v1, ok, badPreflight, badMigrate, killed, fenced]);
    await joinAndRun(n, w, v1);
    const db = join(wdir(n, w), "data", "db");
    const backup = join(wdir(n, w), "backup", "db");
    writeFileSync(db, "base\n");
    const settled = (version: string, state = "running"): Promise<UpdateRecordView> =>
      diagnose(n, w, `${version} ${state}`, () =>
        eventually(() => {
          const r = record(n, w);
          return r?.state === state && (r.current?.version === version || state === "fenced") ? r : undefined;
        }, 180_000, 200),
      );
    const halted = (): Promise<true> => eventually(async () => ((await channelPhase(w)) === "Halted" ? true : undefined), 60_000, 300);
    // rolled_back lasts until the halted channel assigns stable again (a snapshot later): look often.
    const rolledBack = (version: string): Promise<UpdateRecordView> =>
      eventually(() => {
        const r = record(n, w);
        return r?.state === "rolled_back" && r.blocked.includes(version) ? r : undefined;
      }, 180_000, 20);

    // Success: data migrated by the new version's own migrate step, the backup of the old data kept.
    await setChannel(w, ok.version);
    await settled(ok.version);
    assert.equal(await runsOnly(n, w), ok.version);
    const migrated = "base\npartial 2.0.0\nmigrated 2.0.0\n";
    assert.equal(readFileSync(db, "utf8"), migrated);
    assert.equal(readFileSync(backup, "utf8"), "base\n", "the backup is kept");

    // A failed preflight: nothing changed, rolled back, the old version never stopped.
    const pidBefore = processesWith(marker).filter((p) => readFileSync(`/proc/${p}/cmdline`, "utf8").includes(wdir(n, w)));
    await setChannel(w, badPreflight.version);
    const rb = await diagnose(n, w, "preflight", () => rolledBack(badPreflight.version));
    assert.match(rb?.reason ?? "", /MigrationFailed: preflight/);
    await halted();
    await settled(ok.version);
    assert.equal(readFileSync(db, "utf8"), migrated, "a failed preflight changes no data");
    assert.deepEqual(processesWith(marker).filter((p) => readFileSync(`/proc/${p}/cmdline`, "utf8").includes(wdir(n, w))), pidBefore, "the old process kept running");

    // A failed migrate (it wrote half its change): the backup is restored, rolled back.
    await setChannel(w, badMigrate.version);
    const rb2 = await diagnose(n, w, "migrate", () => rolledBack(badMigrate.version));
    assert.match(rb2?.reason ?? "", /MigrationFailed: run/);
    await halted();
    await settled(ok.version);
    assert.equal(await runsOnly(n, w), ok.version);
    assert.equal(readFileSync(db, "utf8"), migrated, "the half-migrated data was restored");

    // SIGKILL of the agent during the migrate step: the old version runs; the restarted agent kills the
    // orphaned step, restores the backup, runs the step again.
    await setChannel(w, killed.version);
    await diagnose(n, w, "kill in migrate", () => eventually(() => record(n, w)?.target?.migrationStep === "run" && readFileSync(db, "utf8").endsWith("partial 5.0.0\n"), 180_000, 100));
    await stop(n, "SIGKILL");
    assert.equal(record(n, w)?.state, "migrating");
    assert.deepEqual(running(n, w), [ok.version]);
    const orphans = stepChildren(n, w, "5.0.0-", "migrate");
    assert.equal(orphans.length, 1, "the killed agent's migrate step still runs");
    restart(n);
    await diagnose(n, w, "restore after the kill", () => eventually(() => orphans.every((p) => !existsSync(`/proc/${p}`)) && readFileSync(db, "utf8") === `${migrated}partial 5.0.0\n` && stepChildren(n, w, "5.0.0-", "migrate").length === 1, 60_000, 100));
    writeFileSync(join(gates, `${w}-5.0.0.migrate`), "");
    await settled(killed.version);
    assert.equal(await runsOnly(n, w), killed.version);
    assert.equal(readFileSync(db, "utf8"), `${migrated}partial 5.0.0\nmigrated 5.0.0\n`, "restored once, migrated once");

    // The migrate step fails and so does the restore: fenced, nothing runs.
    await setChannel(w, fenced.version);
    const f = await settled(fenced.version, "fenced");
    assert.match(f.reason ?? "", /RestoreFailed/);
    await eventually(() => running(n, w).length === 0, 30_000, 200);
    await halted();
    // Still nothing after a restart of the agent (the fence is persisted).
    await stop(n, "SIGKILL");
    restart(n);
    await eventually(() => agentStatus(n)?.snapshot !== undefined, 60_000, 300);
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(running(n, w), [], "a fenced workload does not run");
      assert.equal(record(n, w)?.state, "fenced");
    }
  });

  it("a migrated release failing its health check: the backup restored and the old version runs, or with downgrade the data kept as migrated; steps see the workload's environment only", async () => {
    const n = "d1";
    const w = "hs";
    const v1 = release(w, "1.0.0");
    const restoring = release(w, "2.0.0", { health: "fail", migration: { from: "1.0.0" } });
    const downgrading = release(w, "3.0.0", { health: "fail", migration: { from: "1.0.0", downgrade: true } });
    await push([v1, restoring, downgrading]);
    await joinAndRun(n, w, v1);
    const db = join(wdir(n, w), "data", "db");
    writeFileSync(db, "base\n");
    /** Waits for the rollback of `version` (state rolled_back, the version blocked) and returns the record. */
    const rolledBack = (version: string): Promise<UpdateRecordView> =>
      diagnose(n, w, `${version} rolled back`, () =>
        eventually(() => {
          const r = record(n, w);
          return r?.state === "rolled_back" && r.blocked.includes(version) ? r : undefined;
        }, 180_000, 20),
      );
    const halted = (): Promise<true> => eventually(async () => ((await channelPhase(w)) === "Halted" ? true : undefined), 60_000, 300);

    // downgrade false: migrated, started, unhealthy -> the backup is restored, 1.0.0 runs on the old data.
    await setChannel(w, restoring.version);
    const r2 = await rolledBack(restoring.version);
    assert.match(r2.reason ?? "", /HealthCheckFailed/);
    assert.equal(r2.current?.version, v1.version);
    assert.ok(existsSync(join(gates, `${w}-${restoring.version}.health-env`)), "the new version ran and its health command was judged");
    assert.equal(readFileSync(db, "utf8"), "base\n", "the migrated data was restored from the backup");
    assert.equal(await runsOnly(n, w), v1.version);
    assert.equal(assertCurrentComplete(n, w, new Map([v1, restoring, downgrading].map((r) => [r.version, r]))), v1.version);
    await halted();

    // downgrade true: the old version is declared able to run on the migrated data -> kept as migrated, 1.0.0 runs on it.
    await setChannel(w, downgrading.version);
    const r3 = await rolledBack(downgrading.version);
    assert.match(r3.reason ?? "", /HealthCheckFailed/);
    assert.equal(r3.current?.version, v1.version);
    assert.equal(readFileSync(db, "utf8"), `base\npartial ${downgrading.version}\nmigrated ${downgrading.version}\n`, "the data stays as migrated");
    assert.equal(await runsOnly(n, w), v1.version);
    await halted();
    assert.equal(readFileSync(db, "utf8"), `base\npartial ${downgrading.version}\nmigrated ${downgrading.version}\n`);

    // What the steps saw: the workload's env and the FABRIC_* directories, nothing of the agent's own environment.
    for (const [step, dirs] of [
      ["migrate", { FABRIC_DATA_DIR: join(wdir(n, w), "data"), FABRIC_BACKUP_DIR: join(wdir(n, w), "backup") }],
      ["health", { FABRIC_DATA_DIR: join(wdir(n, w), "data") }],
    ] as const) {
      const env = Object.fromEntries(
        readFileSync(join(gates, `${w}-${restoring.version}.${step}-env`), "utf8")
          .split("\n")
          .filter((l) => l.includes("="))
          .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
      );
      assert.equal(env.AFU_WORKLOAD_VAR, w, `${step}: the workload's spec env`);
      for (const [k, v] of Object.entries(dirs)) assert.equal(env[k], v, `${step}: ${k}`);
      assert.ok(env.PATH !== undefined, `${step}: PATH`);
      for (const k of ["MALLOC_ARENA_MAX", "AFU_AGENT_SECRET", "FABRIC_LOG_LEVEL"]) assert.equal(env[k], undefined, `${step}: the agent's ${k} leaked`);
      assert.ok(!Object.values(env).includes(agentSecret), `${step}: the agent's secret leaked`);
    }
  });
});
