/**
 * RoleAssignment and ServiceWorkload controllers against a real control plane
 * (API server, PostgreSQL, controllers, agent API) with real enrolled nodes
 * and the real kubectl: capability refusal in status (and no workloads for
 * the refused node), organization need-to-know in the per-node rows and the
 * snapshot contributors' output, status counts from agent reports (stored
 * through the same function as POST /v1/status/workloads, then projected by
 * the database), role coverage on the FabricCluster, withdrawal, audit.
 */
import assert from "node:assert/strict";
import { CustomObjectsApi } from "@kubernetes/client-node";
import { verifyChain } from "../../lib/audit/chain.js";
import type { SnapshotPayload } from "../../lib/snapshot/format.js";
import { writeStatusReport } from "../../lib/state/heartbeats.js";
import { rolesContributor } from "../../controllers/roleassignment/snapshot.js";
import { workloadsContributor } from "../../controllers/serviceworkload/snapshot.js";
import { eventually, kubectl } from "../support/controlplane.js";
import { applyCluster, createToken, enrollOnce, pinnedClient, startEnrollmentPlane, type EnrollmentPlane } from "../support/enrollment.js";

const group = "accessfabric.io";
const version = "v1alpha1";

interface Obj {
  metadata: { name: string; generation?: number };
  status?: Record<string, unknown> & { conditions?: Array<{ type: string; status: string; reason: string; message: string }> };
}

describe("roles and workloads: controllers", function () {
  this.timeout(180_000);
  let p: EnrollmentPlane;
  let api: CustomObjectsApi;
  const get = async (plural: string, name: string): Promise<Obj> => (await api.getClusterCustomObject({ group, version, plural, name })) as Obj;
  const apply = async (obj: Record<string, unknown>): Promise<void> => {
    const r = await kubectl(p.kubeconfig, ["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: `${group}/${version}`, ...obj }) });
    assert.equal(r.code, 0, r.stderr);
  };
  const rows = async (sql: string, params: unknown[] = []): Promise<Array<Record<string, unknown>>> => (await p.cp.db.pool.query(sql, params)).rows as Array<Record<string, unknown>>;
  const payloadFor = async (node: string, membership: "Active" | "Disabled" = "Active"): Promise<SnapshotPayload> => {
    const payload = { roles: [], workloads: [], meshPeers: [], vpnAssignments: [], updates: [] } as unknown as SnapshotPayload;
    const c = await p.cp.db.pool.connect();
    try {
      for (const k of [rolesContributor, workloadsContributor]) await k.contribute(c, { cluster: "rw", node, membership }, payload);
    } finally {
      c.release();
    }
    return payload;
  };

  before(async () => {
    p = await startEnrollmentPlane();
    api = p.api;
    await applyCluster(p.kubeconfig, "rw", "TokenAutoApprove");
    const token = await createToken(p.kubeconfig, "rw-token", { cluster: "rw", maxUses: 10, autoApprove: true, allowedRoles: ["rdp-worker"] });
    const client = await pinnedClient(p);
    for (const [name, caps] of [
      ["n-a", ["can_run_rdp_worker"]],
      ["n-b", ["can_run_rdp_worker"]],
      ["n-c", []],
    ] as const) {
      const r = await enrollOnce(client, { token, nodeName: name, capabilities: [...caps], requestedRoles: caps.length > 0 ? ["rdp-worker"] : [] });
      assert.ok(r.ok, JSON.stringify(r));
    }
    client.close();
    for (const n of ["rw.n-a", "rw.n-b", "rw.n-c"]) {
      await eventually(async () => (await kubectl(p.kubeconfig, ["get", "fabricnode", n, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"])).stdout === "True", 60_000);
    }
  });
  after(async () => {
    await p?.stop();
  });

  it("hands the roles and workloads snapshot contributors to the snapshot builder", () => {
    const names = (p.cp.controllers?.snapshotContributors ?? []).map((c) => c.name);
    assert.ok(names.includes("roles") && names.includes("workloads"), names.join(","));
  });

  it("refuses a node lacking a capability, with the reason in status, and runs none of the role's workloads there", async () => {
    await apply({ kind: "RoleAssignment", metadata: { name: "rdp-org-a" }, spec: { cluster: "rw", role: "rdp-worker", nodeNames: ["rw.n-a", "rw.n-c", "rw.ghost"], organization: "org-a" } });
    await apply({ kind: "RoleAssignment", metadata: { name: "rdp-org-b" }, spec: { cluster: "rw", role: "rdp-worker", nodeNames: ["rw.n-b"], organization: "org-b" } });
    const ra = await eventually(async () => {
      const o = await get("roleassignments", "rdp-org-a");
      return o.status?.observedGeneration === o.metadata.generation && o.status?.matchedCount === 1 ? o : undefined;
    }, 30_000);
    assert.deepEqual(ra.status?.matchedNodes, ["rw.n-a"]);
    const refused = ra.status?.refusedNodes as Array<{ node: string; reason: string; message: string }>;
    assert.deepEqual(
      refused.map((r) => [r.node, r.reason]),
      [
        ["rw.ghost", "NotFound"],
        ["rw.n-c", "MissingCapability"],
      ],
    );
    assert.match(refused[1]?.message ?? "", /can_run_rdp_worker/);
    const ready = ra.status?.conditions?.find((c) => c.type === "Ready");
    assert.equal(ready?.status, "False");
    assert.equal(ready?.reason, "NodesRefused");
    // kubectl shows it too (printer columns).
    const k = await kubectl(p.kubeconfig, ["get", "roleassignment", "rdp-org-a", "-o", "jsonpath={.status.refusedNodes[?(@.node==\"rw.n-c\")].reason}"]);
    assert.equal(k.stdout, "MissingCapability");
    // Per-node roles in PostgreSQL and on the FabricNode.
    assert.deepEqual(await rows("SELECT node, role, organization FROM node_roles ORDER BY node"), [
      { node: "rw.n-a", role: "rdp-worker", organization: "org-a" },
      { node: "rw.n-b", role: "rdp-worker", organization: "org-b" },
    ]);
    await eventually(async () => JSON.stringify((await get("fabricnodes", "rw.n-a")).status?.assignedRoles) === '["rdp-worker"]', 20_000);
    // Role coverage on the cluster.
    await eventually(async () => {
      const cov = (await get("fabricclusters", "rw")).status?.roleCoverage as Array<{ role: string; assigned: number; ready: number }> | undefined;
      return cov !== undefined && cov.length === 1 && cov[0]?.role === "rdp-worker" && cov[0].assigned === 2 && cov[0].ready === 2;
    }, 20_000);
  });

  it("keeps one organization's workloads out of another organization's nodes (rows and snapshot contributions)", async () => {
    const wl = (name: string, org: string) => ({
      kind: "ServiceWorkload",
      metadata: { name },
      spec: { cluster: "rw", role: "rdp-worker", organization: org, runtime: "Native", command: ["sleep", "3600"], env: [{ name: "ORG", value: org }], healthProbe: { tcp: { port: 3389 }, periodSeconds: 5 } },
    });
    await apply(wl("rdp-a", "org-a"));
    await apply(wl("rdp-b", "org-b"));
    await apply({ kind: "ServiceWorkload", metadata: { name: "platform-agent" }, spec: { cluster: "rw", role: "rdp-worker", command: ["sleep", "3600"] } });
    await eventually(async () => (await rows("SELECT count(*)::int AS n FROM node_workloads"))[0]?.n === 4, 30_000);
    assert.deepEqual(await rows("SELECT workload, node FROM node_workloads ORDER BY workload, node"), [
      { workload: "platform-agent", node: "rw.n-a" },
      { workload: "platform-agent", node: "rw.n-b" },
      { workload: "rdp-a", node: "rw.n-a" },
      { workload: "rdp-b", node: "rw.n-b" },
    ]);
    const a = await payloadFor("rw.n-a");
    const b = await payloadFor("rw.n-b");
    const c = await payloadFor("rw.n-c");
    assert.deepEqual(a.workloads.map((w) => w.name), ["platform-agent", "rdp-a"]);
    assert.deepEqual(b.workloads.map((w) => w.name), ["platform-agent", "rdp-b"]);
    assert.deepEqual(c.workloads, [], "the refused node runs none of the role's workloads");
    assert.deepEqual(c.roles, []);
    assert.deepEqual(a.roles, [{ role: "rdp-worker", assignment: "rdp-org-a", organization: "org-a" }]);
    assert.ok(!JSON.stringify(b).includes("org-a"), "nothing of org-a reaches an org-b node");
    assert.ok(!JSON.stringify(a).includes("org-b"), "nothing of org-b reaches an org-a node");
    const rdpA = a.workloads.find((w) => w.name === "rdp-a");
    assert.deepEqual(rdpA?.healthProbe, { kind: "tcp", port: 3389, periodSeconds: 5, timeoutSeconds: 1, failureThreshold: 3 });
    assert.deepEqual(rdpA?.env, { ORG: "org-a" });
    // A Disabled membership gets nothing.
    assert.deepEqual((await payloadFor("rw.n-a", "Disabled")).workloads, []);
    // Every change was audited and marked the node dirty in its transaction.
    const audits = await rows("SELECT action, object_name FROM audit_events WHERE action LIKE 'role.%' OR action LIKE 'workload.%' ORDER BY id");
    assert.ok(audits.some((x) => x.action === "role.grants-changed" && x.object_name === "rdp-org-a"));
    assert.ok(audits.some((x) => x.action === "workload.desired-changed" && x.object_name === "rdp-b"));
  });

  it("rejects runtime-specific mistakes: a container workload without an image", async () => {
    await apply({ kind: "ServiceWorkload", metadata: { name: "bad-container" }, spec: { cluster: "rw", role: "rdp-worker", runtime: "Docker" } });
    const o = await eventually(async () => {
      const x = await get("serviceworkloads", "bad-container");
      const c = x.status?.conditions?.find((c) => c.type === "Ready");
      return c?.reason === "InvalidSpec" ? c : undefined;
    }, 20_000);
    assert.match(o.message, /spec\.image: required for the Docker runtime/);
    assert.deepEqual(await rows("SELECT node FROM node_workloads WHERE workload = 'bad-container'"), []);
  });

  it("summarises agent reports into ServiceWorkload counts, per-node detail and FabricNode workloads", async () => {
    const report = (node: string, version: number, workloads: unknown[]) => writeStatusReport(p.cp.db.pool, { node, cluster: "rw", kind: "workloads", version, body: { workloads } });
    const gen = (await get("serviceworkloads", "rdp-a")).metadata.generation ?? 1;
    assert.equal(await report("rw.n-a", 10, [
      { name: "rdp-a", observedGeneration: gen, state: "Running", ready: true, reason: "Healthy", message: "tcp port 3389 accepts connections", restartCount: 2 },
      { name: "platform-agent", observedGeneration: 1, state: "Running", ready: true, reason: "Running", message: "", restartCount: 0 },
    ]), true);
    assert.equal(await report("rw.n-b", 10, [
      { name: "rdp-b", observedGeneration: 1, state: "Degraded", ready: false, reason: "CrashLoopBackOff", message: "exited with code 1", restartCount: 4 },
      { name: "platform-agent", observedGeneration: 1, state: "Unsupported", ready: false, reason: "ContainerRuntimeMissing", message: "docker CLI not found", restartCount: 0 },
    ]), true);
    // A stale report changes nothing.
    assert.equal(await report("rw.n-b", 9, [{ name: "rdp-b", observedGeneration: 1, state: "Running", ready: true, reason: "", message: "", restartCount: 0 }]), false);
    const a = await eventually(async () => {
      const o = await get("serviceworkloads", "rdp-a");
      return o.status?.ready === 1 ? o : undefined;
    }, 20_000);
    assert.equal(a.status?.desired, 1);
    assert.equal(a.status?.degraded, 0);
    assert.equal(a.status?.conditions?.find((c) => c.type === "Ready")?.status, "True");
    assert.deepEqual(a.status?.nodes, [{ node: "rw.n-a", state: "Running", ready: true, restartCount: 2, message: "Healthy: tcp port 3389 accepts connections" }]);
    const pa = await eventually(async () => {
      const o = await get("serviceworkloads", "platform-agent");
      return o.status?.degraded === 1 && o.status?.ready === 1 ? o : undefined;
    }, 20_000);
    assert.equal(pa.status?.desired, 2);
    assert.equal(pa.status?.conditions?.find((c) => c.type === "Ready")?.reason, "Degraded");
    const nb = await eventually(async () => {
      const o = await get("fabricnodes", "rw.n-b");
      const w = o.status?.workloads as Array<{ name: string; state: string; restartCount?: number; message?: string }> | undefined;
      return w?.length === 2 ? w : undefined;
    }, 20_000);
    assert.deepEqual(nb, [
      { name: "platform-agent", state: "Unsupported", restartCount: 0, message: "ContainerRuntimeMissing: docker CLI not found" },
      { name: "rdp-b", state: "Degraded", restartCount: 4, message: "CrashLoopBackOff: exited with code 1" },
    ]);
  });

  it("withdraws the role and its workloads when the assignment is disabled or deleted", async () => {
    await apply({ kind: "RoleAssignment", metadata: { name: "rdp-org-a" }, spec: { cluster: "rw", role: "rdp-worker", nodeNames: ["rw.n-a", "rw.n-c", "rw.ghost"], organization: "org-a", enabled: false } });
    await eventually(async () => (await rows("SELECT count(*)::int AS n FROM node_workloads WHERE node = 'rw.n-a'"))[0]?.n === 0, 20_000);
    await eventually(async () => (await get("serviceworkloads", "rdp-a")).status?.desired === 0, 20_000);
    assert.deepEqual((await payloadFor("rw.n-a")).workloads, []);
    await eventually(async () => (await get("fabricnodes", "rw.n-a")).status?.assignedRoles === undefined, 20_000);
    const del = await kubectl(p.kubeconfig, ["delete", "roleassignment", "rdp-org-b"]);
    assert.equal(del.code, 0, del.stderr);
    await eventually(async () => (await rows("SELECT count(*)::int AS n FROM node_roles"))[0]?.n === 0, 20_000);
    await eventually(async () => (await rows("SELECT count(*)::int AS n FROM node_workloads"))[0]?.n === 0, 20_000);
    await eventually(async () => (await get("fabricclusters", "rw")).status?.roleCoverage === undefined, 20_000);
    const chain = await verifyChain(p.cp.db.pool);
    assert.equal(chain.ok, true, JSON.stringify(chain));
  });
});
