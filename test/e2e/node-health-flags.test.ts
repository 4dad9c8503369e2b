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
import { spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { AgentProcesses, type AgentProcess } from "../support/agent-process.js";
import { agentEnv, eventually, kubectl, repoRoot, spawnControlPlane, tempStateDir, type ChildControlPlane } from "../support/controlplane.js";
import { applyCluster, createToken } from "../support/enrollment.js";

interface Condition {
  type: string;
  status: string;
  reason?: string;
}

describe("e2e: node-health flags of fabric-controlplane", function () {
  this.timeout(180_000);
  let cp: ChildControlPlane | undefined;
  const agents = new AgentProcesses();
  const cpDir = tempStateDir();
  const agentDir = tempStateDir("fabric-agent-");

  after(async () => {
    await agents.stopAll();
    await cp?.stop();
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
    const joined = agents.start(["join", "--once", "--server", server, "--token", token, "--ca-hash", caHash, "--node-name", "h1", "--cluster", "hf", "--poll-interval", "300ms"], { stateDir: agentDir });
    assert.equal(await joined.exited, 0, joined.output());

    const run = (): AgentProcess => agents.start(["run", "--heartbeat-interval", "500ms"], { stateDir: agentDir });
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
    await agent.stop("SIGKILL");
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
