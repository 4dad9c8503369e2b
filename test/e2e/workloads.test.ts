/**
 * Real fabric-agent processes run the service workloads of their roles,
 * against a real control plane process: a ServiceWorkload on a role granted
 * by a RoleAssignment starts a real native process on the node (found by its
 * command line), which the agent restarts with backoff when it is killed;
 * status (ready counts, per-node detail, FabricNode status.workloads) comes
 * back over the agent's mTLS status endpoint; a container workload on this
 * host (no container engine) is reported Unsupported with the reason; a node
 * refused the role for a missing capability runs none of its workloads; with
 * the control plane stopped and the agent restarted the workload keeps
 * running and is adopted, not duplicated; removing the RoleAssignment stops
 * the process.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { AgentProcesses, agentStatusOf } from "../support/agent-process.js";
import { eventually, kubectl, spawnControlPlane, tempStateDir, type ChildControlPlane } from "../support/controlplane.js";
import { applyCluster, createToken } from "../support/enrollment.js";
import { killAllWith, processesWith } from "../support/processes.js";
import { freePort } from "../support/tcp-proxy.js";

interface Obj {
  metadata: { name: string; generation?: number };
  status?: Record<string, unknown>;
}

describe("e2e: fabric-agent supervises the service workloads of its roles", function () {
  this.timeout(300_000);
  let cp: ChildControlPlane | undefined;
  const agents = new AgentProcesses();
  const cpDir = tempStateDir();
  const dirA = tempStateDir("fabric-agent-a-");
  const dirB = tempStateDir("fabric-agent-b-");
  const marker = `wl-e2e-${randomBytes(6).toString("hex")}`;
  let agentPort = 0;

  const startAgent = (stateDir: string, args: string[]) => agents.start(args, { stateDir });
  const agentStatus = agentStatusOf;
  async function get(kind: string, name: string): Promise<Obj | undefined> {
    assert.ok(cp !== undefined);
    const r = await kubectl(cp.kubeconfig, ["get", kind, name, "-o", "json"]);
    return r.code === 0 ? (JSON.parse(r.stdout) as Obj) : undefined;
  }
  async function apply(obj: Record<string, unknown>): Promise<void> {
    assert.ok(cp !== undefined);
    const r = await kubectl(cp.kubeconfig, ["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "accessfabric.io/v1alpha1", ...obj }) });
    assert.equal(r.code, 0, r.stderr);
  }
  const recordOf = (stateDir: string, workload: string): { process?: { pid: number } } | undefined => {
    const p = join(stateDir, "clusters", "wl", "workloads", workload, "process.json");
    return existsSync(p) ? (JSON.parse(readFileSync(p, "utf8")) as { process?: { pid: number } }) : undefined;
  };

  before(async () => {
    agentPort = await freePort();
    cp = await spawnControlPlane(cpDir, ["--agent-port", String(agentPort), "--leader-elect", "false"]);
  });
  after(async () => {
    await agents.stopAll();
    killAllWith(marker);
    await cp?.stop();
    for (const d of [cpDir, dirA, dirB]) rmSync(d, { recursive: true, force: true });
  });

  it("runs, restarts, reports, adopts across an offline restart, refuses, degrades containers, and stops on withdrawal", async () => {
    assert.ok(cp !== undefined);
    const ready = /"agentApi":"([^"]+)","agentApiCaHash":"([^"]+)"/.exec(cp.output());
    assert.ok(ready, cp.output());
    const [, server = "", caHash = ""] = ready;
    await applyCluster(cp.kubeconfig, "wl", "TokenAutoApprove");
    const token = await createToken(cp.kubeconfig, "wl-join", { cluster: "wl", autoApprove: true, maxUses: 2 });
    const joinArgs = (name: string, caps: string[]): string[] => ["join", "--server", server, "--token", token, "--ca-hash", caHash, "--node-name", name, "--cluster", "wl", "--poll-interval", "300ms", "--backoff-cap", "1s", ...(caps.length > 0 ? ["--capabilities", caps.join(",")] : [])];
    // Node a can run the role, node b reports no capability for it.
    let a = startAgent(dirA, joinArgs("a", ["can_run_rdp_worker"]));
    const b = startAgent(dirB, joinArgs("b", []));
    for (const d of [dirA, dirB]) await eventually(() => agentStatus(d)?.snapshot !== undefined, 60_000, 300);

    // The workloads, then the assignment that makes them land.
    const port = await freePort();
    const script = "const s=require('http').createServer((q,r)=>r.end('ok'));s.listen(Number(process.env.PORT),'127.0.0.1');";
    await apply({
      kind: "ServiceWorkload",
      metadata: { name: "web" },
      spec: {
        cluster: "wl",
        role: "rdp-worker",
        runtime: "Native",
        command: [process.execPath, "-e", script, marker],
        env: [{ name: "PORT", value: String(port) }],
        healthProbe: { http: { port, path: "/" }, periodSeconds: 1, failureThreshold: 3 },
        restartPolicy: "Always",
      },
    });
    await apply({ kind: "ServiceWorkload", metadata: { name: "boxed" }, spec: { cluster: "wl", role: "rdp-worker", runtime: "Docker", image: "registry.example.com/boxed:1.0" } });
    await apply({ kind: "RoleAssignment", metadata: { name: "rdp" }, spec: { cluster: "wl", role: "rdp-worker", nodeNames: ["wl.a", "wl.b"] } });

    // 1. The process starts on node a, once (node b, refused, runs nothing).
    const first = await eventually(() => {
      const pids = processesWith(marker);
      return pids.length === 1 ? pids[0] : undefined;
    }, 60_000, 100);
    assert.equal(recordOf(dirA, "web")?.process?.pid, first, "the process is node a's, recorded for adoption");
    const ra = await eventually(async () => {
      const o = await get("roleassignment", "rdp");
      return o?.status?.observedGeneration === o?.metadata.generation && o?.status?.matchedCount === 1 ? o : undefined;
    }, 30_000);
    const refused = ra.status?.refusedNodes as Array<{ node: string; reason: string; message: string }>;
    assert.deepEqual(refused.map((r) => [r.node, r.reason]), [["wl.b", "MissingCapability"]]);
    assert.match(refused[0]?.message ?? "", /can_run_rdp_worker/);
    assert.equal(existsSync(join(dirB, "clusters", "wl", "workloads")) ? readdirSync(join(dirB, "clusters", "wl", "workloads")).length : 0, 0, "the refused node runs none of the role's workloads");

    // 2. Status reaches the ServiceWorkload (probe passed: ready) and the FabricNode.
    const web = await eventually(async () => {
      const o = await get("serviceworkload", "web");
      return o?.status?.ready === 1 ? o : undefined;
    }, 60_000, 300);
    assert.equal(web.status?.desired, 1);
    assert.deepEqual((web.status?.nodes as Array<{ node: string; state: string; ready: boolean }>).map((n) => [n.node, n.state, n.ready]), [["wl.a", "Running", true]]);
    // 3. The container workload cannot run here (no engine): Unsupported with the reason, nothing pretended.
    const boxed = await eventually(async () => {
      const o = await get("serviceworkload", "boxed");
      return o?.status?.degraded === 1 ? o : undefined;
    }, 60_000, 300);
    const boxedNode = (boxed.status?.nodes as Array<{ node: string; state: string; message: string }>)[0];
    assert.equal(boxedNode?.state, "Unsupported");
    assert.match(boxedNode?.message ?? "", /^(ContainerRuntimeMissing|ContainerEngineUnreachable): docker/);
    const nodeWorkloads = await eventually(async () => {
      const w = (await get("fabricnode", "wl.a"))?.status?.workloads as Array<{ name: string; state: string; message?: string }> | undefined;
      return w?.length === 2 && w.find((x) => x.name === "web")?.state === "Running" ? w : undefined;
    }, 60_000, 300);
    assert.equal(nodeWorkloads.find((x) => x.name === "boxed")?.state, "Unsupported");

    // 4. Killed twice: restarted each time, with a growing backoff.
    process.kill(first, "SIGKILL");
    const second = await eventually(() => {
      const pids = processesWith(marker);
      return pids.length === 1 && pids[0] !== first ? pids[0] : undefined;
    }, 30_000, 100);
    process.kill(second, "SIGKILL");
    const third = await eventually(() => {
      const pids = processesWith(marker);
      return pids.length === 1 && pids[0] !== second && pids[0] !== first ? pids[0] : undefined;
    }, 30_000, 100);
    assert.match(a.output(), /"msg":"workload process exited".*"workload":"web".*"signal":"SIGKILL".*"backoffMs":1000[,}]/);
    assert.match(a.output(), /"msg":"workload process exited".*"workload":"web".*"signal":"SIGKILL".*"backoffMs":2000[,}]/);
    await eventually(async () => {
      const w = (await get("fabricnode", "wl.a"))?.status?.workloads as Array<{ name: string; state: string; restartCount?: number }> | undefined;
      return w?.find((x) => x.name === "web" && x.restartCount === 2 && x.state === "Running") !== undefined;
    }, 60_000, 300);

    // 5. Control plane stopped, agent restarted: the workload keeps running and is adopted, not duplicated.
    await cp.stop();
    cp = undefined;
    await a.stop();
    assert.deepEqual(processesWith(marker), [third], "stopping the agent leaves its workloads running");
    a = startAgent(dirA, ["run", "--backoff-cap", "1s", "--heartbeat-interval", "1s"]);
    await a.waitFor('"msg":"workload supervisor has its first desired set"', 30_000);
    assert.match(a.output(), new RegExp(`"msg":"workload process adopted".*"workload":"web","pid":${third}[,}]`));
    assert.match(a.output(), /"msg":"workload supervisor has its first desired set".*"source":"checkpoint"/);
    const offline = await eventually(() => {
      const st = agentStatus(dirA);
      return st !== undefined && st.pid === a.pid && st.lastError !== undefined ? st : undefined;
    }, 30_000, 300);
    assert.equal(offline.snapshot?.source, "checkpoint");
    // Several supervisor ticks (1 s) later: still the one adopted process.
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 500));
      assert.deepEqual(processesWith(marker), [third]);
    }
    assert.ok(!a.output().includes('"msg":"workload process started"'), "nothing was started by the restarted agent");

    // 6. The control plane returns; removing the RoleAssignment stops the process on node a.
    cp = await spawnControlPlane(cpDir, ["--agent-port", String(agentPort), "--leader-elect", "false"]);
    const back = Date.now();
    await eventually(() => {
      const st = agentStatus(dirA);
      return st?.lastError === undefined && st?.lastContact !== undefined && Date.parse(st.lastContact) >= back;
    }, 90_000, 500);
    const del = await kubectl(cp.kubeconfig, ["delete", "roleassignment", "rdp"]);
    assert.equal(del.code, 0, del.stderr);
    await eventually(() => processesWith(marker).length === 0, 60_000, 100);
    await a.waitFor(/"msg":"stopping workload process".*"workload":"web"/, 10_000);
    // The record is removed right after the process is reaped: poll for it.
    await eventually(() => recordOf(dirA, "web") === undefined, 10_000, 100);
    const after = await eventually(async () => {
      const o = await get("serviceworkload", "web");
      return o?.status?.desired === 0 ? o : undefined;
    }, 60_000, 300);
    assert.equal(after.status?.ready, 0);
    await eventually(async () => {
      const w = (await get("fabricnode", "wl.a"))?.status?.workloads as unknown[] | undefined;
      return w === undefined || w.length === 0;
    }, 60_000, 300);
    assert.ok(!b.output().includes('"msg":"workload process started"'), "node b never started anything");
    await a.stop();
    await b.stop();
  });
});
