/**
 * A workload whose command re-executes itself (a shell wrapper that execs the
 * real server, like a pyenv shim or `env`) is adopted by a restarted agent:
 * its pid and start time survive the exec, its cmdline does not. A real
 * fabric-agent runs it against an in-process control plane, is stopped and
 * started again, and must adopt the running server instead of starting a
 * duplicate that would crash-loop on the port the first one holds.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { AgentProcesses, agentStatusOf } from "../support/agent-process.js";
import { eventually, kubectl, tempStateDir } from "../support/controlplane.js";
import { applyCluster, createToken, startEnrollmentPlane, type EnrollmentPlane } from "../support/enrollment.js";
import { killAllWith, processesWith } from "../support/processes.js";
import { freePort } from "../support/tcp-proxy.js";

describe("e2e: adoption of a workload that re-executes itself", function () {
  this.timeout(180_000);
  let plane: EnrollmentPlane | undefined;
  const agents = new AgentProcesses();
  const dir = tempStateDir("fabric-agent-exec-");
  const marker = `wl-exec-${randomBytes(6).toString("hex")}`;

  const startAgent = (args: string[]) => agents.start(args, { stateDir: dir });
  const agentStatus = () => agentStatusOf(dir);
  const cmdlineOf = (pid: number): string[] => readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0$/, "").split("\0");

  before(async () => {
    plane = await startEnrollmentPlane();
  });
  after(async () => {
    await agents.stopAll();
    killAllWith(marker);
    await plane?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("adopts the exec'd process after an agent restart and starts no duplicate", async () => {
    assert.ok(plane !== undefined);
    const { kubeconfig, server, caHash } = plane;
    await applyCluster(kubeconfig, "ex", "TokenAutoApprove");
    const token = await createToken(kubeconfig, "ex-join", { cluster: "ex", autoApprove: true, maxUses: 1 });
    let a = startAgent(["join", "--server", server, "--token", token, "--ca-hash", caHash, "--node-name", "a", "--cluster", "ex", "--poll-interval", "300ms", "--backoff-cap", "1s", "--capabilities", "can_run_rdp_worker"]);
    await eventually(() => agentStatus()?.snapshot !== undefined, 60_000, 300);

    // The shell is still the process when the agent records it right after the
    // spawn (the sleep sees to that), then execs into node under the same pid.
    const port = await freePort();
    const script = "const s=require('http').createServer((q,r)=>r.end('ok'));s.listen(Number(process.env.PORT),'127.0.0.1');";
    const apply = async (obj: Record<string, unknown>) => {
      const r = await kubectl(kubeconfig, ["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "accessfabric.io/v1alpha1", ...obj }) });
      assert.equal(r.code, 0, r.stderr);
    };
    await apply({
      kind: "ServiceWorkload",
      metadata: { name: "shim" },
      spec: {
        cluster: "ex",
        role: "rdp-worker",
        runtime: "Native",
        command: ["/bin/sh", "-c", 'sleep 0.5; exec "$@"', "sh", process.execPath, "-e", script, marker],
        env: [{ name: "PORT", value: String(port) }],
        healthProbe: { http: { port, path: "/" }, periodSeconds: 1, failureThreshold: 3 },
        restartPolicy: "Always",
      },
    });
    await apply({ kind: "RoleAssignment", metadata: { name: "rdp" }, spec: { cluster: "ex", role: "rdp-worker", nodeNames: ["ex.a"] } });

    const pid = await eventually(() => {
      const pids = processesWith(marker);
      return pids.length === 1 && cmdlineOf(pids[0] ?? 0)[0] === process.execPath ? pids[0] : undefined;
    }, 60_000, 100);
    const recordPath = join(dir, "clusters", "ex", "workloads", "shim", "process.json");
    assert.ok(existsSync(recordPath));
    const recorded = (JSON.parse(readFileSync(recordPath, "utf8")) as { process?: { pid: number; cmdline: string } }).process;
    assert.equal(recorded?.pid, pid);
    assert.ok(recorded?.cmdline.startsWith("/bin/sh"), `recorded before the exec: ${String(recorded?.cmdline)}`);
    await eventually(() => agentStatus() !== undefined && a.output().includes('"msg":"workload process started"'), 10_000);

    // Agent restarted: the exec'd server is adopted, nothing new starts.
    await a.stop();
    assert.deepEqual(processesWith(marker), [pid], "stopping the agent leaves its workload running");
    a = startAgent(["run", "--backoff-cap", "1s", "--heartbeat-interval", "1s"]);
    await a.waitFor('"msg":"workload supervisor has its first desired set"', 30_000);
    assert.match(a.output(), new RegExp(`"msg":"workload process adopted".*"workload":"shim","pid":${String(pid)}[,}]`));
    for (let i = 0; i < 6; i++) {
      await new Promise((r) => setTimeout(r, 500));
      assert.deepEqual(processesWith(marker), [pid]);
    }
    assert.ok(!a.output().includes('"msg":"workload process started"'), `nothing was started by the restarted agent:\n${a.output()}`);
    await a.stop();
  });
});
