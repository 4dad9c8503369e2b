/**
 * The ReleaseChannel controller against a real control plane (API server,
 * controllers, PostgreSQL, agent API), with two enrolled nodes and no agent
 * process: only verified releases are assigned (a release signed by an
 * unknown key leaves the ring WaitingForRelease, nothing written); a
 * verified one is assigned with the node's artifact, reaches the node's own
 * snapshot as `releaseUpdates` and its download right
 * (`node_release_assignments`); garbage `updates` reports are taken (202)
 * and ignored; deleting the channel withdraws every assignment and right.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { join as joinCluster } from "../../agent/enroll/join.js";
import { AgentApiClient } from "../../agent/http/client.js";
import { generateSigningKey, signRelease, spkiBase64, type ReleaseManifest, type SigningKey } from "../../lib/release/index.js";
import { eventually, kubectl, repoRoot, tempStateDir } from "../support/controlplane.js";
import { applyCluster, createToken, startEnrollmentPlane, type EnrollmentPlane } from "../support/enrollment.js";

const CLUSTER = "rc";
const key = generateSigningKey();
const stranger = generateSigningKey();

function fabricctl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(join(repoRoot, "bin", "fabricctl"), args, { timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === "number" ? err.code : 1, stdout, stderr });
    });
  });
}

describe("ReleaseChannel controller: verified-only assignments in PostgreSQL and snapshots", function () {
  this.timeout(240_000);
  let p: EnrollmentPlane;
  let work: string;
  const dirs: string[] = [];
  const clients: AgentApiClient[] = [];
  const apply = async (obj: Record<string, unknown>): Promise<void> => {
    const r = await kubectl(p.kubeconfig, ["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "accessfabric.io/v1alpha1", ...obj }) });
    assert.equal(r.code, 0, r.stderr);
  };
  const channelStatus = async (): Promise<Record<string, unknown>> => {
    const r = await kubectl(p.kubeconfig, ["get", "releasechannel", "ch", "-o", "json"]);
    return r.code === 0 ? ((JSON.parse(r.stdout) as { status?: Record<string, unknown> }).status ?? {}) : {};
  };
  const rows = async (): Promise<Array<{ node: string; version: string }>> =>
    (await p.cp.db.pool.query<{ node: string; version: string }>("SELECT node, version FROM rollout_assignments WHERE channel = 'ch' ORDER BY node")).rows;
  const rights = async (): Promise<Array<{ node_id: string; release_name: string }>> =>
    (await p.cp.db.pool.query<{ node_id: string; release_name: string }>("SELECT node_id, release_name FROM node_release_assignments ORDER BY node_id")).rows;
  /** Signs and pushes a release; returns its artifact's sha256. */
  async function publish(name: string, version: string, signer: SigningKey): Promise<string> {
    const script = `#!/bin/sh\n# ${version}\nwhile :; do sleep 1; done\n`;
    const artifact = join(work, `${name}.bin`);
    writeFileSync(artifact, script, { mode: 0o755 });
    const sha256 = createHash("sha256").update(script).digest("hex");
    const m: ReleaseManifest = {
      _type: "release",
      specVersion: 1,
      component: "svc",
      version,
      expires: "2099-01-01T00:00:00Z",
      artifacts: [{ os: "linux", arch: "amd64", length: Buffer.byteLength(script), sha256 }],
    };
    const file = join(work, `${name}.json`);
    writeFileSync(file, JSON.stringify({ apiVersion: "accessfabric.io/v1alpha1", kind: "Release", metadata: { name }, spec: { cluster: CLUSTER, component: "svc", version, envelope: signRelease(m, [signer]) } }));
    const r = await fabricctl(["release", "push", file, artifact, "--kubeconfig", p.kubeconfig]);
    assert.equal(r.code, 0, r.stderr);
    return sha256;
  }

  before(async () => {
    work = tempStateDir("afo-rc-");
    p = await startEnrollmentPlane();
    await applyCluster(p.kubeconfig, CLUSTER, "TokenAutoApprove");
    await apply({ kind: "FabricCluster", metadata: { name: CLUSTER }, spec: { enrollmentPolicy: { approval: "TokenAutoApprove" }, releaseTrust: { keys: [{ keyId: key.keyId, publicKey: spkiBase64(key.publicKey) }], threshold: 1 } } });
    const token = await createToken(p.kubeconfig, "rc-join", { cluster: CLUSTER, maxUses: 2, autoApprove: true });
    for (const n of ["a", "b"]) {
      const dir = tempStateDir("afo-rc-agent-");
      dirs.push(dir);
      const id = await joinCluster({ server: p.server, token, caHash: p.caHash, stateDir: dir, nodeName: n, cluster: CLUSTER, capabilities: ["can_run_rdp_worker"], pollIntervalMs: 200, timeoutMs: 60_000 });
      const c = new AgentApiClient(p.server, { ca: id.serverCaPem, cert: id.certPem, key: id.keyPem });
      clients.push(c);
      // The node's OS and architecture come with heartbeats (artifact selection).
      await c.request("POST", "/v1/heartbeat", { seq: 1, agentVersion: "0.0.0-test", capabilities: ["can_run_rdp_worker"], facts: { os: "linux", arch: "x64" }, health: { status: "Healthy" } });
    }
    await apply({ kind: "RoleAssignment", metadata: { name: "svc" }, spec: { cluster: CLUSTER, role: "rdp-worker", nodeNames: [`${CLUSTER}.a`, `${CLUSTER}.b`] } });
    await apply({ kind: "ServiceWorkload", metadata: { name: "svc" }, spec: { cluster: CLUSTER, role: "rdp-worker", runtime: "Native", releaseChannel: "ch", args: ["x"] } });
  });
  after(async () => {
    for (const c of clients) c.close();
    await p?.stop();
    for (const d of [...dirs, work]) rmSync(d, { recursive: true, force: true });
  });

  it("assigns nothing from a release signed by an unknown key", async () => {
    await publish("svc-1-0-0", "1.0.0", stranger);
    await eventually(async () => {
      const r = await kubectl(p.kubeconfig, ["get", "release", "svc-1-0-0", "-o", "jsonpath={.status.verified}"]);
      return r.stdout === "false";
    }, 60_000, 300);
    await apply({ kind: "ReleaseChannel", metadata: { name: "ch" }, spec: { cluster: CLUSTER, component: "svc", current: "1.0.0", maxUnavailable: "100%", rings: [{ name: "all", nodeSelector: {}, soakTime: "0s" }] } });
    const s = await eventually(async () => {
      const st = await channelStatus();
      return (st.rings as Array<{ phase: string; total: number }> | undefined)?.[0]?.phase === "WaitingForRelease" ? st : undefined;
    }, 60_000, 300);
    assert.equal((s.rings as Array<{ total: number }>)[0]?.total, 2);
    assert.deepEqual(await rows(), []);
    assert.deepEqual(await rights(), []);
  });

  it("assigns a verified release with the node's artifact, in its own snapshot and download rights", async () => {
    const sha = await publish("svc-1-0-1", "1.0.1", key);
    await apply({ kind: "ReleaseChannel", metadata: { name: "ch" }, spec: { cluster: CLUSTER, component: "svc", current: "1.0.1", maxUnavailable: "100%", rings: [{ name: "all", nodeSelector: {}, soakTime: "0s" }] } });
    await eventually(async () => (await rows()).length === 2, 60_000, 300);
    assert.deepEqual(await rows(), [
      { node: `${CLUSTER}.a`, version: "1.0.1" },
      { node: `${CLUSTER}.b`, version: "1.0.1" },
    ]);
    assert.deepEqual(await rights(), [
      { node_id: `${CLUSTER}.a`, release_name: "svc-1-0-1" },
      { node_id: `${CLUSTER}.b`, release_name: "svc-1-0-1" },
    ]);
    const snap = await eventually(async () => {
      const r = await clients[0]!.requestBytes("GET", "/v1/snapshot?after=0&wait=0");
      const s = JSON.parse(Buffer.from(r.body).toString("utf8")) as { payload: { releaseUpdates?: { trust: { threshold: number }; assignments: Array<{ workload: string; version: string; artifact: { sha256: string } }> } } };
      return s.payload.releaseUpdates?.assignments.length === 1 ? s.payload.releaseUpdates : undefined;
    }, 60_000, 300);
    assert.equal(snap.trust.threshold, 1);
    assert.deepEqual(snap.assignments.map((a) => [a.workload, a.version, a.artifact.sha256]), [["svc", "1.0.1", sha]]);
    const st = await channelStatus();
    assert.equal((st.rings as Array<{ targetVersion: string; phase: string }>)[0]?.phase, "Progressing");
  });

  it("takes garbage update reports without breaking the channel", async () => {
    for (const body of [{ workloads: "junk" }, { workloads: [{ workload: 1 }, null, { workload: "svc", channel: "ch", state: "x".repeat(5000) }] }]) {
      const r = await clients[1]!.request("POST", "/v1/status/updates", { version: Date.now(), body });
      assert.equal(r.status, 202);
    }
    const ok = await clients[0]!.request("POST", "/v1/status/updates", { version: Date.now(), body: { workloads: [{ workload: "svc", channel: "ch", state: "running", version: "1.0.1", since: new Date().toISOString() }] } });
    assert.equal(ok.status, 202);
    const st = await eventually(async () => {
      const s = await channelStatus();
      return (s.rings as Array<{ updated: number }> | undefined)?.[0]?.updated === 1 ? s : undefined;
    }, 60_000, 300);
    assert.deepEqual(st.nodeStates, [{ state: "running", nodes: 1 }]);
  });

  it("withdraws every assignment and download right when the channel is deleted", async () => {
    const r = await kubectl(p.kubeconfig, ["delete", "releasechannel", "ch"]);
    assert.equal(r.code, 0, r.stderr);
    await eventually(async () => (await rows()).length === 0 && (await rights()).length === 0, 60_000, 300);
    const audit = await p.cp.db.pool.query<{ action: string }>("SELECT action FROM audit_events WHERE object_kind = 'ReleaseChannel' AND object_name = 'ch' ORDER BY id");
    const actions = audit.rows.map((x) => x.action);
    for (const a of ["rollout.promote", "rollout.assign", "rollout.assignments-changed", "rollout.channel-removed"]) assert.ok(actions.includes(a), `${a} in ${actions.join(", ")}`);
  });
});
