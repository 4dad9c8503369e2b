/**
 * Mesh status through the real control plane: nodes enrolled with the
 * agent's own join code, a mesh role granted by a RoleAssignment, real
 * heartbeats and kind `mesh` status reports over mTLS. Hostile reports get
 * a clean 4xx and store nothing; valid ones reach FabricNode status.mesh
 * (read with kubectl, the PEERS column included) and FabricCluster
 * status.mesh (read with @kubernetes/client-node), where a partition of the
 * reported active graph sets MeshPartitioned with a warning event and a
 * bridging link clears it.
 */
import assert from "node:assert/strict";
import https from "node:https";
import { rmSync } from "node:fs";
import type { StoredIdentity } from "../../agent/enroll/identity-store.js";
import { join } from "../../agent/enroll/join.js";
import { MAX_STATUS_REPORT_BYTES } from "../../lib/agent-protocol.js";
import type { FabricClusterStatus, FabricNodeStatus } from "../../lib/api/types.generated.js";
import { eventually, kubectl, tempStateDir } from "../support/controlplane.js";
import { createToken, startEnrollmentPlane, type EnrollmentPlane } from "../support/enrollment.js";

const CLUSTER = "mst";
const name = (n: string): string => `${CLUSTER}.${n}`;

interface Answer {
  status: number;
  body: { stored?: boolean; error?: { code?: string; message?: string } };
}

describe("mesh status: kind mesh reports over mTLS into FabricNode and FabricCluster status", function () {
  this.timeout(240_000);
  let p: EnrollmentPlane;
  const ids = new Map<string, StoredIdentity>();
  const dirs: string[] = [];
  let version = 1;

  const apply = async (obj: Record<string, unknown>): Promise<void> => {
    const r = await kubectl(p.kubeconfig, ["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "accessfabric.io/v1alpha1", ...obj }) });
    assert.equal(r.code, 0, r.stderr);
  };
  const id = (n: string): StoredIdentity => {
    const x = ids.get(n);
    assert.ok(x !== undefined, n);
    return x;
  };
  const raw = (n: string, path: string, payload: string | Buffer): Promise<Answer> =>
    new Promise((resolve, reject) => {
      const req = https.request(new URL(path, p.server), { method: "POST", agent: false, ca: id(n).serverCaPem, cert: id(n).certPem, key: id(n).keyPem, headers: { "Content-Type": "application/json" } }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => {
          let body: Answer["body"] = {};
          try {
            body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Answer["body"];
          } catch {
            // not JSON: the caller asserts on the status
          }
          resolve({ status: res.statusCode ?? 0, body });
        });
      });
      // A refused oversized body may be cut off while still being written.
      req.on("error", (err: NodeJS.ErrnoException) => (err.code === "EPIPE" || err.code === "ECONNRESET" ? resolve({ status: 413, body: {} }) : reject(err)));
      req.end(payload);
    });
  const heartbeat = (n: string): Promise<Answer> => raw(n, "/v1/heartbeat", JSON.stringify({ seq: version++, agentVersion: "0.1.0", capabilities: ["can_accept_client_ingress"], facts: {}, health: { status: "Healthy" } }));
  const since = new Date().toISOString();
  const row = (peer: string, state = "up"): Record<string, unknown> => ({ peer, state, direction: "outbound", rttMs: 0.42, jitterMs: 0.05, loss: 0, path: state === "up" ? "direct" : "none", since });
  const report = (n: string, up: string[], extra: Record<string, unknown>[] = []): Promise<Answer> =>
    raw(n, "/v1/status/mesh", JSON.stringify({ version: version++, body: { enabled: true, endpoints: ["10.9.0.1:4433"], active: up.map(name), peers: [...up.map((x) => row(name(x))), ...extra] } }));
  const stored = async (): Promise<Record<string, unknown>> => {
    const r = await p.cp.db.pool.query<{ node: string; body: unknown }>("SELECT node, body FROM node_status_reports WHERE kind = 'mesh' AND cluster = $1 ORDER BY node", [CLUSTER]);
    return Object.fromEntries(r.rows.map((x) => [x.node, x.body]));
  };
  const nodeStatus = async (n: string): Promise<FabricNodeStatus | undefined> => {
    const r = await kubectl(p.kubeconfig, ["get", "fabricnode", name(n), "-o", "json"]);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { status?: FabricNodeStatus }).status;
  };
  const clusterStatus = async (): Promise<FabricClusterStatus | undefined> =>
    ((await p.api.getClusterCustomObject({ group: "accessfabric.io", version: "v1alpha1", plural: "fabricclusters", name: CLUSTER })) as { status?: FabricClusterStatus }).status;

  before(async () => {
    p = await startEnrollmentPlane();
    await apply({ kind: "FabricCluster", metadata: { name: CLUSTER }, spec: { enrollmentPolicy: { approval: "TokenAutoApprove" }, peerPolicy: { standard: { min: 2, max: 3 } } } });
    const w = await kubectl(p.kubeconfig, ["wait", "--for=condition=Ready", `fabriccluster/${CLUSTER}`, "--timeout=60s"]);
    assert.equal(w.code, 0, w.stderr);
    const token = await createToken(p.kubeconfig, "mst-join", { cluster: CLUSTER, maxUses: 10, autoApprove: true });
    for (const n of ["a", "b", "c", "d"]) {
      const dir = tempStateDir("fabric-agent-");
      dirs.push(dir);
      ids.set(n, await join({ server: p.server, token, caHash: p.caHash, stateDir: dir, nodeName: n, cluster: CLUSTER, capabilities: ["can_accept_client_ingress"], pollIntervalMs: 200, timeoutMs: 60_000 }));
    }
    // a, b, c hold a mesh role; d does not.
    await apply({ kind: "RoleAssignment", metadata: { name: "mst-mesh" }, spec: { cluster: CLUSTER, role: "entry-node", nodeNames: ["a", "b", "c"].map(name) } });
    await eventually(async () => Number((await p.cp.db.pool.query<{ n: string }>("SELECT count(*) AS n FROM node_roles WHERE cluster = $1 AND role = 'entry-node'", [CLUSTER])).rows[0]?.n) === 3, 30_000, 100);
    for (const n of ids.keys()) assert.equal((await heartbeat(n)).status, 202);
  });
  after(async () => {
    await p?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("refuses hostile mesh reports with a clean 4xx and stores nothing", async () => {
    const good = { enabled: true, endpoints: ["10.9.0.1:4433", "[fd00::1]:4433"], active: [name("b")], peers: [row(name("b"))] };
    const cases: Array<[string, string | Buffer, number]> = [
      ["not JSON", "{", 400],
      ["body an array", JSON.stringify({ version: 1, body: [] }), 400],
      ["missing fields", JSON.stringify({ version: 1, body: { enabled: true } }), 400],
      ["unknown field", JSON.stringify({ version: 1, body: { ...good, topology: {} } }), 400],
      ["unknown peer field", JSON.stringify({ version: 1, body: { ...good, peers: [{ ...row(name("b")), extra: 1 }] } }), 400],
      ["too many peers", JSON.stringify({ version: 1, body: { ...good, peers: Array.from({ length: 65 }, (_, i) => row(name(`p${i}`))) } }), 400],
      ["too many active", JSON.stringify({ version: 1, body: { ...good, active: Array.from({ length: 65 }, (_, i) => name(`p${i}`)) } }), 400],
      ["peer name an object", JSON.stringify({ version: 1, body: { ...good, peers: [{ ...row(name("b")), peer: { $ne: 1 } }] } }), 400],
      ["peer name not a node name", JSON.stringify({ version: 1, body: { ...good, peers: [row("B; drop table")] } }), 400],
      ["peer of another cluster", JSON.stringify({ version: 1, body: { ...good, peers: [row("other.b")] } }), 400],
      ["peer is the reporter", JSON.stringify({ version: 1, body: { ...good, peers: [row(name("a"))] } }), 400],
      ["repeated peer", JSON.stringify({ version: 1, body: { ...good, peers: [row(name("b")), row(name("b"))] } }), 400],
      ["state outside the set", JSON.stringify({ version: 1, body: { ...good, peers: [row(name("b"), "hacked")] } }), 400],
      ["path outside the set", JSON.stringify({ version: 1, body: { ...good, peers: [{ ...row(name("b")), path: "teleport" }] } }), 400],
      ["rtt a string", JSON.stringify({ version: 1, body: { ...good, peers: [{ ...row(name("b")), rttMs: "1" }] } }), 400],
      ["rtt infinite (1e999)", `{"version":1,"body":{"enabled":true,"endpoints":[],"active":[],"peers":[{"peer":"${name("b")}","state":"up","path":"direct","since":"${since}","rttMs":1e999}]}}`, 400],
      ["rtt negative", JSON.stringify({ version: 1, body: { ...good, peers: [{ ...row(name("b")), rttMs: -1 }] } }), 400],
      ["loss above 1", JSON.stringify({ version: 1, body: { ...good, peers: [{ ...row(name("b")), loss: 1.5 }] } }), 400],
      ["failures fractional", JSON.stringify({ version: 1, body: { ...good, peers: [{ ...row(name("b")), failures: 1.5 }] } }), 400],
      ["since not a time", JSON.stringify({ version: 1, body: { ...good, peers: [{ ...row(name("b")), since: "yesterday" }] } }), 400],
      ["endpoint a host name", JSON.stringify({ version: 1, body: { ...good, endpoints: ["evil.example:4433"] } }), 400],
      ["endpoint port out of range", JSON.stringify({ version: 1, body: { ...good, endpoints: ["10.0.0.1:70000"] } }), 400],
      ["enabled a string", JSON.stringify({ version: 1, body: { ...good, enabled: "true" } }), 400],
      ["deeply nested", `{"version":1,"body":{"enabled":true,"endpoints":[],"active":[],"peers":[],"reason":${"[".repeat(100)}${"]".repeat(100)}}}`, 400],
      ["nested within the limit", JSON.stringify({ version: 1, body: { ...good, reason: { a: { b: { c: 1 } } } } }), 400],
      ["another node as reporter", JSON.stringify({ version: 1, body: { ...good, node: name("b") } }), 403],
      ["oversized", Buffer.alloc(MAX_STATUS_REPORT_BYTES + 1024, 0x20), 413],
    ];
    for (const [what, payload, code] of cases) {
      const r = await raw("a", "/v1/status/mesh", payload);
      assert.equal(r.status, code, `${what}: ${JSON.stringify(r.body)}`);
      if (code !== 413) assert.ok(typeof r.body.error?.message === "string" && r.body.error.message.length > 0, what);
    }
    assert.deepEqual(await stored(), {}, "nothing stored");
    // The same report, well formed, is stored as checked (the reporter's name filled in).
    assert.deepEqual(await raw("a", "/v1/status/mesh", JSON.stringify({ version: 1, body: good })), { status: 202, body: { stored: true } });
    assert.deepEqual(await stored(), { [name("a")]: { node: name("a"), ...good } });
  });

  it("shows active peers, bounds and health in FabricNode status (kubectl, PEERS column) and the cluster's graph in FabricCluster status", async () => {
    // a-b and a-c: a has 2 (Healthy, min 2), b and c one each (BelowMinimum); one component.
    assert.equal((await report("a", ["b", "c"])).status, 202);
    assert.equal((await report("b", ["a"])).status, 202);
    assert.equal((await report("c", ["a"], [row(name("b"), "failed")])).status, 202);
    const a = await eventually(async () => {
      const s = await nodeStatus("a");
      return s?.mesh?.activePeers === 2 ? s : undefined;
    }, 60_000, 200);
    assert.deepEqual(a.mesh, { nodeClass: "standard", minPeers: 2, maxPeers: 3, activePeers: 2, peers: [name("b"), name("c")], health: "Healthy" });
    await eventually(async () => (await nodeStatus("c"))?.mesh?.health === "BelowMinimum", 60_000, 200);
    assert.equal((await nodeStatus("d"))?.mesh, undefined, "no mesh role, no mesh status");
    const wide = await kubectl(p.kubeconfig, ["get", "fabricnodes", "-o", "wide"]);
    assert.equal(wide.code, 0, wide.stderr);
    // Cells are aligned under their headers (empty ones are blank): cut each line at the PEERS column's offsets.
    const lines = wide.stdout.trim().split("\n");
    const head = lines[0] ?? "";
    const from = head.indexOf("PEERS");
    assert.ok(from >= 0, head);
    const to = head.indexOf(" ", from + "PEERS".length) === -1 ? head.length : head.slice(from + "PEERS".length).search(/\S/) + from + "PEERS".length;
    const peersOf = (n: string): string => (lines.find((l) => l.startsWith(`${name(n)} `)) ?? "").slice(from, to).trim();
    assert.deepEqual(["a", "b", "c", "d"].map(peersOf), ["2", "1", "1", ""]);
    const narrow = await kubectl(p.kubeconfig, ["get", "fabricnodes"]);
    assert.ok(!narrow.stdout.includes("PEERS"), "PEERS is a wide column (priority 1)");

    const c = await eventually(async () => {
      const s = await clusterStatus();
      return s?.mesh?.reportingNodes === 3 && s.mesh.belowMinimum === 2 ? s : undefined;
    }, 60_000, 200);
    assert.deepEqual(c.mesh, { reportingNodes: 3, belowMinimum: 2, belowMinimumNodes: [name("b"), name("c")], components: 1, connected: true });
    assert.equal(c.conditions?.find((x) => x.type === "MeshPartitioned")?.status, "False");
  });

  it("sets MeshPartitioned with a warning event when the reported graph splits, and clears it when a link bridges it", async () => {
    // c drops its link to a (and a to c): {a, b} and {c}.
    assert.equal((await report("c", [])).status, 202);
    assert.equal((await report("a", ["b"])).status, 202);
    const s = await eventually(async () => {
      const x = await clusterStatus();
      return x?.mesh?.connected === false ? x : undefined;
    }, 60_000, 200);
    assert.equal(s.mesh?.components, 2);
    const cond = s.conditions?.find((x) => x.type === "MeshPartitioned");
    assert.equal(cond?.status, "True");
    assert.match(cond?.message ?? "", /2 components over 3 reporting nodes/);
    await eventually(async () => (await nodeStatus("c"))?.mesh?.health === "Isolated", 60_000, 200);
    const events = async (): Promise<Array<{ reason?: string; type?: string; message?: string }>> => {
      const r = await kubectl(p.kubeconfig, ["get", "events", "-o", "json", "--field-selector", `involvedObject.kind=FabricCluster,involvedObject.name=${CLUSTER}`]);
      assert.equal(r.code, 0, r.stderr);
      return (JSON.parse(r.stdout) as { items: Array<{ reason?: string; type?: string; message?: string }> }).items;
    };
    const warned = await eventually(async () => (await events()).find((e) => e.reason === "MeshPartitioned"), 30_000, 200);
    assert.equal(warned.type, "Warning");
    // b reports a link to c: one component again.
    assert.equal((await report("b", ["a", "c"])).status, 202);
    await eventually(async () => (await clusterStatus())?.conditions?.find((x) => x.type === "MeshPartitioned")?.status === "False", 60_000, 200);
    assert.equal((await clusterStatus())?.mesh?.components, 1);
    await eventually(async () => (await events()).find((e) => e.reason === "MeshConnected"), 30_000, 200);
  });
});
