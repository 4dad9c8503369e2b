/**
 * What `kubectl get` shows a new user, against a real agent process and the
 * real kubectl: the JoinToken EXPIRES column is the expiry timestamp (not an
 * age that kubectl prints as <invalid> for a future time); FabricCluster
 * NODES/HEALTHY and NodeGroup MEMBERS are counted (they were always blank);
 * a ServiceWorkload whose only node stops heartbeating (FabricNode
 * Ready=Unknown) is no longer READY, and the cluster no longer counts the
 * node healthy.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { runControlPlane, type ControlPlane } from "../../controlplane/controlplane.js";
import { logger } from "../../lib/log.js";
import { seedStateDir } from "../support/pg-template.js";
import { AgentProcesses } from "../support/agent-process.js";
import { eventually, kubectl, tempStateDir } from "../support/controlplane.js";
import { applyCluster, createToken } from "../support/enrollment.js";
import { killAllWith, processesWith } from "../support/processes.js";

describe("e2e: the status columns kubectl shows", function () {
  this.timeout(180_000);
  let cp: ControlPlane | undefined;
  const agents = new AgentProcesses();
  const stateDir = tempStateDir();
  const agentDir = tempStateDir("fabric-agent-cols-");
  const marker = `cols-e2e-${randomBytes(6).toString("hex")}`;

  /** The printer-column cells of one object, by header, as `kubectl get KIND NAME` prints them. */
  async function columns(kind: string, name: string): Promise<Record<string, string>> {
    assert.ok(cp !== undefined);
    const r = await kubectl(cp.api.kubeconfigPath, ["get", kind, name]);
    assert.equal(r.code, 0, r.stderr);
    const [header = "", row = ""] = r.stdout.split("\n");
    const starts = [...header.matchAll(/\S+/g)].map((m) => ({ name: m[0], at: m.index }));
    const out: Record<string, string> = {};
    starts.forEach((h, i) => (out[h.name] = row.slice(h.at, starts[i + 1]?.at ?? row.length).trim()));
    return out;
  }
  async function apply(obj: Record<string, unknown>): Promise<void> {
    assert.ok(cp !== undefined);
    const r = await kubectl(cp.api.kubeconfigPath, ["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "accessfabric.io/v1alpha1", ...obj }) });
    assert.equal(r.code, 0, r.stderr);
  }

  before(async () => {
    await seedStateDir(stateDir);
    cp = await runControlPlane({
      stateDir,
      host: "127.0.0.1",
      port: 0,
      metricsPort: 0,
      fsync: false,
      log: logger("test-controlplane"),
      controllers: { identity: "test-columns", sweepIntervalMs: 1000, nodeHealth: { gracePeriodMs: 2000, heartbeatPublishIntervalMs: 3_600_000, scanIntervalMs: 200 } },
      agentPort: 0,
      agentApi: { rateLimit: { burst: 100_000, perSecond: 100_000 } },
    });
  });
  after(async () => {
    await agents.stopAll();
    killAllWith(marker);
    await cp?.stop();
    rmSync(stateDir, { recursive: true, force: true });
    rmSync(agentDir, { recursive: true, force: true });
  });

  it("shows the token's expiry, node and member counts, and a workload not READY on a node that is not Ready", async () => {
    assert.ok(cp !== undefined && cp.agentApi !== undefined);
    const kubeconfig = cp.api.kubeconfigPath;
    await applyCluster(kubeconfig, "cols", "TokenAutoApprove");
    await apply({ kind: "NodeGroup", metadata: { name: "cols-web" }, spec: { cluster: "cols" } });
    await eventually(async () => (await columns("fabriccluster", "cols"))["NODES"] === "0", 30_000, 200);
    assert.equal((await columns("fabriccluster", "cols"))["HEALTHY"], "0");
    await eventually(async () => (await columns("nodegroup", "cols-web"))["MEMBERS"] === "0", 30_000, 200);

    // EXPIRES: the timestamp itself, in the future.
    const token = await createToken(kubeconfig, "cols-join", { cluster: "cols", autoApprove: true, nodeGroup: "cols-web", ttl: "30m" });
    const expires = (await columns("jointoken", "cols-join"))["EXPIRES"] ?? "";
    assert.match(expires, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    assert.ok(Date.parse(expires) > Date.now() + 25 * 60_000, expires);

    // A real agent joins into the group and heartbeats.
    const agent = agents.start(
      ["join", "--server", cp.agentApi.url, "--token", token, "--ca-hash", cp.agentApi.caHash, "--node-name", "n1", "--cluster", "cols", "--capabilities", "can_run_rdp_worker", "--poll-interval", "300ms", "--heartbeat-interval", "500ms"],
      { stateDir: agentDir },
    );
    await eventually(async () => {
      const c = await columns("fabriccluster", "cols");
      return c["NODES"] === "1" && c["HEALTHY"] === "1";
    }, 60_000, 300);
    await eventually(async () => (await columns("nodegroup", "cols-web"))["MEMBERS"] === "1", 30_000, 200);

    // A workload on the node becomes READY.
    await apply({
      kind: "ServiceWorkload",
      metadata: { name: "cols-wl" },
      spec: { cluster: "cols", role: "rdp-worker", runtime: "Native", command: [process.execPath, "-e", "setInterval(() => {}, 1000)", marker], restartPolicy: "Always" },
    });
    await apply({ kind: "RoleAssignment", metadata: { name: "cols-rdp" }, spec: { cluster: "cols", role: "rdp-worker", nodeNames: ["cols.n1"] } });
    await eventually(async () => (await columns("serviceworkload", "cols-wl"))["READY"] === "True", 60_000, 300);

    // The agent dies (its workload keeps running): the node goes Ready=Unknown, the workload is no longer READY.
    await agent.stop("SIGKILL");
    assert.equal(processesWith(marker).length, 1);
    await eventually(async () => {
      const r = await kubectl(kubeconfig, ["get", "fabricnode", "cols.n1", "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")].status}']);
      return r.stdout === "Unknown";
    }, 30_000, 200);
    await eventually(async () => (await columns("serviceworkload", "cols-wl"))["READY"] === "False", 30_000, 200);
    const r = await kubectl(kubeconfig, ["get", "serviceworkload", "cols-wl", "-o", "json"]);
    const status = (JSON.parse(r.stdout) as { status: { ready: number; conditions: Array<{ type: string; reason: string }> } }).status;
    assert.equal(status.ready, 0);
    assert.equal(status.conditions.find((c) => c.type === "Ready")?.reason, "NodesNotReady");
    await eventually(async () => {
      const c = await columns("fabriccluster", "cols");
      return c["NODES"] === "1" && c["HEALTHY"] === "0";
    }, 30_000, 200);
  });
});
