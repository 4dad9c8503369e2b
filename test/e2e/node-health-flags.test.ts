/**
 * The node-health flags of bin/fabric-controlplane reach the controllers: a
 * real agent process heartbeats every 500 ms; the control plane runs with
 * --node-grace-period 3s, so once the agent is SIGKILLed its FabricNode goes
 * Ready=Unknown well inside the wait below (with the 40 s default it would
 * not, and the test would fail), and comes back when the agent returns.
 * With --node-startup-grace-period 4s, a node whose agent has not started
 * goes Ready=Unknown (NodeStatusNeverUpdated) before its first heartbeat
 * (the 5 min default would keep it Ready). A malformed value is refused at
 * start with the flag's name.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { agentEnv, eventually, kubectl, repoRoot, spawnControlPlane, tempStateDir, type ChildControlPlane } from "../support/controlplane.js";
import { applyCluster, createToken } from "../support/enrollment.js";

const agentBin = join(repoRoot, "bin", "fabric-agent");

interface Condition {
  type: string;
  status: string;
  reason?: string;
}

describe("e2e: node-health flags of fabric-controlplane", function () {
  this.timeout(180_000);
  let cp: ChildControlPlane | undefined;
  const agents: ChildProcess[] = [];
  const cpDir = tempStateDir();
  const agentDir = tempStateDir("fabric-agent-");

  after(async () => {
    for (const a of agents) {
      if (a.exitCode === null && a.signalCode === null) {
        const exited = new Promise((r) => a.once("exit", r));
        a.kill("SIGKILL");
        await exited;
      }
    }
    if (cp !== undefined) {
      cp.child.kill("SIGTERM");
      await cp.exited;
    }
    rmSync(cpDir, { recursive: true, force: true });
    rmSync(agentDir, { recursive: true, force: true });
  });

  it("refuses a malformed --node-grace-period, naming the flag", () => {
    const dir = tempStateDir();
    try {
      const r = spawnSync(join(repoRoot, "bin", "fabric-controlplane"), ["--state-dir", dir, "--port", "0", "--node-grace-period", "soon"], {
        encoding: "utf8",
        env: agentEnv(),
        timeout: 60_000,
      });
      assert.notEqual(r.status, 0);
      assert.match(r.stdout + r.stderr, /node-grace-period/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("marks a node that never heartbeated Ready=Unknown after --node-startup-grace-period, a silent one after --node-grace-period, and Ready=True when it returns", async () => {
    cp = await spawnControlPlane(cpDir, ["--leader-elect", "false", "--node-grace-period", "3s", "--node-startup-grace-period", "4s"]);
    const ready = /"agentApi":"([^"]+)","agentApiCaHash":"([^"]+)"/.exec(cp.output());
    assert.ok(ready, cp.output());
    const [, server = "", caHash = ""] = ready;
    await applyCluster(cp.kubeconfig, "hf", "TokenAutoApprove");
    const token = await createToken(cp.kubeconfig, "hf-join", { cluster: "hf", autoApprove: true });
    const joined = spawnSync(agentBin, ["join", "--once", "--server", server, "--token", token, "--ca-hash", caHash, "--node-name", "h1", "--cluster", "hf", "--poll-interval", "300ms", "--state-dir", agentDir], {
      encoding: "utf8",
      env: agentEnv(),
      timeout: 60_000,
    });
    assert.equal(joined.status, 0, joined.stdout + joined.stderr);

    const run = (): ChildProcess => {
      const child = spawn(agentBin, ["run", "--heartbeat-interval", "500ms", "--state-dir", agentDir], { stdio: "ignore", env: agentEnv() });
      agents.push(child);
      return child;
    };
    // Ready and the health published from heartbeats (absent until the first one arrives).
    const nodeOf = async (): Promise<{ ready?: Condition; health?: string } | undefined> => {
      const r = await kubectl(cp?.kubeconfig ?? "", ["get", "fabricnode", "hf.h1", "-o", "json"]);
      if (r.code !== 0) return undefined;
      const obj = JSON.parse(r.stdout) as { status?: { conditions?: Condition[]; health?: string } };
      return { ready: obj.status?.conditions?.find((c) => c.type === "Ready"), health: obj.status?.health };
    };
    const readyOf = async (): Promise<Condition | undefined> => (await nodeOf())?.ready;

    // Enrolled, agent not started: Ready on the certificate alone, then Unknown once the startup grace ran out.
    const never = await eventually(async () => {
      const c = await readyOf();
      return c?.status === "Unknown" ? c : undefined;
    }, 30_000, 200);
    assert.equal(never.reason, "NodeStatusNeverUpdated");

    const agent = run();
    // Heartbeats arrive: the node is Ready and its health comes from the agent.
    await eventually(async () => {
      const n = await nodeOf();
      return n?.ready?.status === "True" && n.health === "Healthy";
    }, 30_000, 200);
    const exited = new Promise((r) => agent.once("exit", r));
    agent.kill("SIGKILL");
    await exited;
    // Well under the 40 s default: only the 3 s flag can make this pass.
    const silent = await eventually(async () => {
      const c = await readyOf();
      return c?.status === "Unknown" ? c : undefined;
    }, 20_000, 200);
    assert.equal(silent.reason, "NodeStatusUnknown");

    run();
    const back = await eventually(async () => {
      const n = await nodeOf();
      return n?.ready?.status === "True" && n.health === "Healthy" ? n.ready : undefined;
    }, 30_000, 200);
    assert.equal(back.reason, "Active");
  });
});
