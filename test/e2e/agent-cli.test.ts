/**
 * The command lines a new user types first, run as real processes:
 * `fabric-agent --help` (exit 0), `join --help` listing --state-dir,
 * `status` on a state directory that does not exist (says so, exit 1), and
 * one log format per process: a real join against a real control plane logs
 * only JSON lines by default and only text lines with --log-format text (or
 * FABRIC_LOG_FORMAT=text); the control plane follows --log-format too.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { AgentProcesses, agentBin } from "../support/agent-process.js";
import { agentEnv, repoRoot, tempStateDir } from "../support/controlplane.js";
import { applyCluster, createToken, startEnrollmentPlane, type EnrollmentPlane } from "../support/enrollment.js";

const agent = (args: string[], env: NodeJS.ProcessEnv = {}) => spawnSync(agentBin, args, { encoding: "utf8", env: agentEnv(env), timeout: 60_000 });
const lines = (out: string): string[] => out.split("\n").filter((l) => l.trim() !== "");
const isJson = (l: string): boolean => {
  try {
    return typeof JSON.parse(l) === "object";
  } catch {
    return false;
  }
};
const textLine = /^\d{4}-\d\d-\d\dT\S+Z (DEBUG|INFO|WARN|ERROR) \[[a-z.-]+\] /;

describe("e2e: fabric-agent command line and log format", function () {
  this.timeout(120_000);
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("fabric-agent --help and -h print the usage and exit 0; no command at all is a usage error", () => {
    for (const flag of ["--help", "-h"]) {
      const r = agent([flag]);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /fabric-agent join --server URL/);
    }
    const none = agent([]);
    assert.equal(none.status, 2);
    assert.match(none.stderr, /usage:/);
  });

  it("fabric-agent join --help lists --state-dir and --log-format", () => {
    const r = agent(["join", "--help"]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /--state-dir DIR/);
    assert.match(r.stdout, /--log-format json\|text/);
  });

  it("fabric-agent status on a state directory that does not exist says so and exits 1", () => {
    const missing = join(tempStateDir("fabric-agent-none-"), "nothing-here");
    const r = agent(["status", "--state-dir", missing]);
    assert.equal(r.status, 1);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, new RegExp(`no agent state in ${missing.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`));
    assert.equal(agent(["status", "--json", "--state-dir", missing]).status, 1);
  });

  describe("one log format per process", () => {
    let p: EnrollmentPlane;
    const agents = new AgentProcesses();
    before(async () => {
      p = await startEnrollmentPlane();
      await applyCluster(p.kubeconfig, "logs", "TokenAutoApprove");
    });
    after(async () => {
      await agents.stopAll();
      await p?.stop();
    });

    const joinOnce = async (node: string, extra: string[], env: NodeJS.ProcessEnv = {}) => {
      const token = await createToken(p.kubeconfig, `logs-${node}`, { cluster: "logs", autoApprove: true });
      const dir = tempStateDir("fabric-agent-logs-");
      dirs.push(dir);
      // Not spawnSync: the in-process control plane must keep answering.
      const r = agents.start(["join", "--server", p.server, "--token", token, "--ca-hash", p.caHash, "--node-name", node, "--cluster", "logs", "--poll-interval", "200ms", "--once", "--state-dir", dir, ...extra], { env });
      assert.equal(await r.exited, 0, r.output());
      return [...lines(r.stdout()), ...lines(r.stderr())];
    };

    it("a join logs only JSON lines by default, join progress included", async () => {
      const out = await joinOnce("j1", []);
      assert.ok(out.some((l) => l.includes("joined cluster logs as logs.j1")), out.join("\n"));
      for (const l of out) assert.ok(isJson(l), `not a JSON line: ${l}`);
    });

    it("a join logs only text lines with --log-format text, and with FABRIC_LOG_FORMAT=text", async () => {
      for (const [node, extra, env] of [["t1", ["--log-format", "text"], {}], ["t2", [], { FABRIC_LOG_FORMAT: "text" }]] as const) {
        const out = await joinOnce(node, [...extra], env);
        assert.ok(out.some((l) => l.includes(`joined cluster logs as logs.${node}`)), out.join("\n"));
        for (const l of out) assert.match(l, textLine);
      }
    });

    it("an unknown --log-format is refused", () => {
      const r = agent(["status", "--log-format", "yaml", "--state-dir", tempStateDir()]);
      assert.equal(r.status, 2);
      assert.match(r.stderr, /invalid log format "yaml": want json or text/);
    });
  });

  it("fabric-controlplane --log-format text logs text lines, the ready line included", async () => {
    const dir = tempStateDir();
    dirs.push(dir);
    const child = spawn(join(repoRoot, "bin", "fabric-controlplane"), ["--state-dir", dir, "--port", "0", "--metrics-port", "0", "--agent-port=-1", "--controllers", "false", "--no-fsync", "--log-format", "text"], {
      env: { ...process.env, FABRIC_LOG_LEVEL: "info", FABRIC_LOG_FORMAT: "json" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (b: Buffer) => (out += b.toString()));
    child.stderr.on("data", (b: Buffer) => (out += b.toString()));
    const exited = new Promise((r) => child.once("exit", r));
    const deadline = Date.now() + 60_000;
    while (!out.includes("control plane ready") && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 100));
    child.kill("SIGTERM");
    await exited;
    assert.match(out, /INFO \[controlplane\] control plane ready /);
    for (const l of lines(out)) assert.match(l, textLine);
  });
});
