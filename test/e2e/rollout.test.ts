/**
 * A release rollout to 6 real fabric-agent processes in 3 rings (label
 * selected), against a real control plane process, with releases signed
 * here and pushed with the real fabricctl:
 *
 * - 1.0.0 then 2.0.0 reach every ring in order; each agent runs the
 *   channel-bound workload from its release slot (the process's executable
 *   path names the version), and the completed version becomes stable;
 * - during 2.0.0, one agent is SIGKILLed mid-update and restarted: at the
 *   kill the process that runs is the old or the new version, consistent
 *   with the persisted state, and the update finishes after the restart;
 * - 3.0.0, whose signed health command fails, halts in the first ring: its
 *   nodes roll back by themselves and are assigned stable (2.0.0) again
 *   without operator action; the later rings never receive it: no snapshot
 *   names it, no download of it exists, and the agent API refuses its
 *   artifact to them (403);
 * - `fabricctl rollout status --watch` prints a frame per refresh while the
 *   rings progress and exits by itself when the rollout settles (0 when
 *   Complete, 1 when Halted), or with 130 on Ctrl-C (SIGINT).
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { loadIdentity } from "../../agent/enroll/identity-store.js";
import { AgentApiClient, AgentApiRequestError } from "../../agent/http/client.js";
import type { AgentProcess } from "../support/agent-process.js";
import { eventually, fabricctl, kubectl, repoRoot } from "../support/controlplane.js";
import { processesWith } from "../support/processes.js";
import { startReleaseFixture, type ReleaseFixture, type SignedRelease } from "../support/release-fixture.js";

const fabricctlBin = join(repoRoot, "bin", "fabricctl");
const CLUSTER = "ro";
const NODES = ["n1", "n2", "n3", "n4", "n5", "n6"];
const RING_OF: Record<string, string> = { n1: "a", n2: "a", n3: "b", n4: "b", n5: "c", n6: "c" };

interface Obj {
  metadata: { name: string };
  status?: Record<string, unknown>;
}

describe("e2e: a release rolls out in rings to real agents and rolls back by itself", function () {
  this.timeout(300_000);
  let f: ReleaseFixture | undefined;
  let cp: ReleaseFixture["cp"] | undefined;
  let marker = "";
  let dirs: Record<string, string> = {};
  const agents = new Map<string, AgentProcess>();
  let joinArgs: (name: string) => string[] = () => [];

  const membership = (n: string): string => f?.membership(n) ?? "";
  function startAgent(n: string, args: string[]): void {
    agents.set(n, f!.procs.start(args, { stateDir: dirs[n] ?? "", env: { FABRIC_LOG_LEVEL: "warn" } }));
  }
  const agentStatus = (n: string) => f?.agentStatus(n);
  const apply = (obj: Record<string, unknown>): Promise<void> => f!.apply(obj);
  async function get(kind: string, name: string): Promise<Obj | undefined> {
    assert.ok(cp !== undefined);
    const r = await kubectl(cp.kubeconfig, ["get", kind, name, "-o", "json"]);
    return r.code === 0 ? (JSON.parse(r.stdout) as Obj) : undefined;
  }
  /** The version each node's workload process runs, from the executable path in its command line. */
  function runningVersions(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const pid of processesWith(marker)) {
      const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      const exe = argv.find((a) => a.includes("/updates/svc/releases/")) ?? "";
      const node = NODES.find((n) => exe.startsWith(dirs[n] ?? "?"));
      const v = /releases\/([0-9.]+)-[0-9a-f]{12}\/executable$/.exec(exe)?.[1];
      if (node !== undefined && v !== undefined) out[node] = out[node] === undefined ? v : `${out[node]}+${v}`;
    }
    return out;
  }
  const updateState = (n: string) => f?.updateState(n);
  /** `fabricctl rollout status svc --watch`: its output so far and its exit code. */
  function watchRollout(name: string): { out: () => string; err: () => string; code: Promise<number | null>; child: ChildProcess } {
    assert.ok(cp !== undefined);
    let out = "";
    let err = "";
    const child = spawn(fabricctlBin, ["rollout", "status", name, "--watch", "--interval", "300ms", "--kubeconfig", cp.kubeconfig], { stdio: ["ignore", "pipe", "pipe"] });
    child.stdout?.on("data", (b: Buffer) => (out += b.toString()));
    child.stderr?.on("data", (b: Buffer) => (err += b.toString()));
    const code = new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
    return { out: () => out, err: () => err, code, child };
  }
  /** Frames of a --watch output (not a TTY: each starts with `--- <time>`): the phase and the nodes updated over all rings. */
  function frames(out: string): Array<{ phase: string; updated: number }> {
    return out
      .split(/^--- .*$/m)
      .filter((f) => f.includes("phase:"))
      .map((f) => ({ phase: /phase: +(\w+)/.exec(f)?.[1] ?? "", updated: [...f.matchAll(/\] +(\d+)\/\d+ /g)].reduce((n, m) => n + Number(m[1]), 0) }));
  }
  async function channel(): Promise<Record<string, unknown>> {
    return (await get("releasechannel", "svc"))?.status ?? {};
  }
  async function setChannel(spec: Record<string, unknown>): Promise<void> {
    await apply({
      kind: "ReleaseChannel",
      metadata: { name: "svc" },
      spec: {
        cluster: CLUSTER,
        component: "svc",
        maxUnavailable: "100%",
        healthGate: { maxFailures: 1, minHealthyPercent: 100 },
        rings: ["a", "b", "c"].map((r) => ({ name: r, nodeSelector: { matchLabels: { ring: r } }, soakTime: "1s" })),
        ...spec,
      },
    });
  }
  /** Signs a release of `version` whose health command exits with `health`, after `delay` seconds; writes its files. */
  function release(version: string, health: number, delay = 0): SignedRelease {
    const script = `#!/bin/sh\n# svc ${version}\nif [ "$1" = health ]; then sleep ${delay}; exit ${health}; fi\nwhile :; do sleep 1; done\n`;
    return f!.release(version, script, { healthCheck: { command: ["./executable", "health"], timeoutSeconds: 8 } });
  }

  before(async () => {
    f = await startReleaseFixture({ cluster: CLUSTER, nodes: NODES, prefix: "afo-rollout" });
    ({ cp, marker, dirs } = f);
    const token = await f.token("ro-join", NODES.length);
    joinArgs = (name) => f!.joinArgs(token, name, "can_run_rdp_worker");
  });
  after(async () => {
    await f?.stop();
  });

  it("rolls good releases through every ring, survives SIGKILL mid-update, and halts a bad one in the first ring", async () => {
    assert.ok(cp !== undefined);
    const kc = cp.kubeconfig;
    for (const n of NODES) startAgent(n, joinArgs(n));
    for (const n of NODES) await eventually(() => agentStatus(n)?.snapshot !== undefined, 120_000, 500);
    for (const n of NODES) {
      const r = await kubectl(kc, ["label", "fabricnode", `${CLUSTER}.${n}`, `ring=${RING_OF[n]}`, "--overwrite"]);
      assert.equal(r.code, 0, r.stderr);
    }
    const rels = { v1: release("1.0.0", 0), v2: release("2.0.0", 0, 3), v3: release("3.0.0", 1) };
    for (const r of Object.values(rels)) {
      const out = await f!.push(r);
      assert.match(out.stdout, /svc/);
    }
    for (const name of ["svc-1-0-0", "svc-2-0-0", "svc-3-0-0"]) await eventually(async () => (await get("release", name))?.status?.verified === true, 60_000, 500);

    await setChannel({ current: "1.0.0" });
    await apply({ kind: "ServiceWorkload", metadata: { name: "svc" }, spec: { cluster: CLUSTER, role: "rdp-worker", runtime: "Native", releaseChannel: "svc", args: [marker], restartPolicy: "Always" } });
    await apply({ kind: "RoleAssignment", metadata: { name: "svc" }, spec: { cluster: CLUSTER, role: "rdp-worker", nodeNames: NODES.map((n) => `${CLUSTER}.${n}`) } });

    // 1. 1.0.0 everywhere, ring by ring; it becomes stable.
    const c1 = await eventually(async () => {
      const s = await channel();
      return s.phase === "Complete" && s.stable === "1.0.0" ? s : undefined;
    }, 150_000, 500);
    assert.deepEqual(
      (c1.rings as Array<{ name: string; phase: string; updated: number }>).map((r) => [r.name, r.phase, r.updated]),
      [["a", "Complete", 2], ["b", "Complete", 2], ["c", "Complete", 2]],
    );
    await eventually(() => Object.values(runningVersions()).filter((v) => v === "1.0.0").length === 6, 30_000, 300);
    const nodeStatus = await eventually(async () => {
      const u = (await get("fabricnode", `${CLUSTER}.n5`))?.status?.workloadUpdates as Array<{ workload: string; state: string; version: string }> | undefined;
      return u?.find((x) => x.workload === "svc" && x.state === "running" && x.version === "1.0.0");
    }, 30_000, 500);
    assert.ok(nodeStatus);

    // 2. 2.0.0; SIGKILL an agent of ring b in the middle of its update, restart it.
    await setChannel({ current: "2.0.0" });
    const watch2 = watchRollout("svc");
    const during = await eventually(() => {
      const s = updateState("n3");
      return s !== undefined && s.target?.version === "2.0.0" && ["starting", "health_checking", "staging", "verifying", "downloading"].includes(s.state) ? s : undefined;
    }, 150_000, 50);
    await agents.get("n3")?.stop("SIGKILL");
    const atKill = updateState("n3");
    const ran = runningVersions().n3;
    assert.ok(atKill !== undefined);
    const newSide = ["health_checking", "promoting", "running", "rollback_required"].includes(atKill.state);
    const oldSide = ["checking", "downloading", "verifying", "staging", "migrating"].includes(atKill.state);
    if (newSide) assert.equal(ran, "2.0.0", `killed in ${atKill.state} (first seen ${during.state})`);
    else if (oldSide) assert.equal(ran, "1.0.0", `killed in ${atKill.state}`);
    // "starting" stops the old version, then starts the new one: a kill between the two finds neither running;
    // what matters is what the restart makes of it (below: 2.0.0 running, state running), and never both at once.
    else assert.ok(ran === undefined || ran === "1.0.0" || ran === "2.0.0", `killed in ${atKill.state}: runs ${ran}`);
    startAgent("n3", ["run", "--backoff-cap", "1s", "--heartbeat-interval", "1s"]);
    await eventually(async () => {
      const s = await channel();
      return s.phase === "Complete" && s.stable === "2.0.0";
    }, 150_000, 500);
    await eventually(() => {
      const v = runningVersions();
      return NODES.every((n) => v[n] === "2.0.0");
    }, 30_000, 300);
    assert.equal(updateState("n3")?.state, "running");
    // The watch followed the rings and ended by itself once Complete (the previous Complete, of 1.0.0, did not end it).
    assert.equal(await watch2.code, 0, watch2.out());
    const f2 = frames(watch2.out());
    assert.ok(f2.length >= 2, watch2.out());
    assert.ok((f2[0]?.updated ?? 6) < 6, `the first frame shows the rollout in progress:\n${watch2.out()}`);
    assert.deepEqual(f2.at(-1), { phase: "Complete", updated: 6 });
    for (let i = 1; i < f2.length; i++) assert.ok((f2[i]?.updated ?? 0) >= (f2[i - 1]?.updated ?? 0), `progress never goes back:\n${watch2.out()}`);

    // 3. 3.0.0 fails its health command: halts in ring a, ring a back on 2.0.0 by itself, rings b and c never get it.
    await setChannel({ current: "3.0.0" });
    const watch3 = watchRollout("svc");
    const halted = await eventually(async () => {
      const s = await channel();
      return s.phase === "Halted" ? s : undefined;
    }, 150_000, 500);
    assert.deepEqual((halted.halted as { version: string; ring: string }).version, "3.0.0");
    assert.equal((halted.halted as { ring: string }).ring, "a");
    assert.equal(halted.stable, "2.0.0");
    assert.equal(await watch3.code, 1, `a halted rollout ends the watch with 1:\n${watch3.out()}`);
    assert.equal(frames(watch3.out()).at(-1)?.phase, "Halted");
    // A watch that never settles (its channel does not exist: each refresh fails and is reported) ends on Ctrl-C with 130.
    const watch4 = watchRollout("no-such-channel");
    await eventually(() => (watch4.err().match(/fabricctl: /g) ?? []).length >= 2, 60_000, 100);
    watch4.child.kill("SIGINT");
    assert.equal(await watch4.code, 130, watch4.err());
    for (const n of ["n1", "n2"]) {
      await eventually(() => updateState(n)?.state === "running" && updateState(n)?.current?.version === "2.0.0", 60_000, 300);
    }
    await eventually(() => {
      const v = runningVersions();
      return NODES.every((n) => v[n] === "2.0.0");
    }, 30_000, 300);
    const status = await fabricctl(["rollout", "status", "svc", "--kubeconfig", kc]);
    assert.equal(status.code, 0, status.stderr);
    const view = status.stdout;
    assert.match(view, /phase: +Halted/);
    assert.match(view, /halted: +3\.0\.0 in ring a/);
    assert.match(view, /\n +a +\[\.{24}\] +0\/2 +3\.0\.0 +Halted/, view);
    assert.match(view, /\n +c +\[\.{24}\] +0\/2 +3\.0\.0 +Blocked/, view);
    // Keep watching a while: nothing moves on.
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 500));
      assert.equal((await channel()).phase, "Halted");
    }
    for (const n of ["n3", "n4", "n5", "n6"]) {
      const downloads = join(membership(n), "updates", "downloads");
      const files = existsSync(downloads) ? readdirSync(downloads) : [];
      assert.ok(!files.some((f) => f.startsWith(rels.v3.sha256)), `${n} never downloaded 3.0.0`);
      assert.ok(!readdirSync(join(membership(n), "updates", "svc", "releases")).some((d) => d.startsWith("3.0.0-")), `${n} never staged 3.0.0`);
      const checkpoint = readdirSync(membership(n))
        .filter((f) => f.endsWith(".json"))
        .map((f) => readFileSync(join(membership(n), f), "utf8"))
        .join("");
      assert.ok(!checkpoint.includes(rels.v3.sha256), `${n}'s snapshot never named 3.0.0`);
      const id = await loadIdentity(membership(n));
      const client = new AgentApiClient(id.info.server, { ca: id.serverCaPem, cert: id.certPem, key: id.keyPem });
      await assert.rejects(
        client.stream(`/v1/artifacts/${rels.v3.sha256}`),
        (err: unknown) => err instanceof AgentApiRequestError && err.status === 403,
        `${n} may not download 3.0.0`,
      );
    }
  });
});
