/**
 * The mesh directory sweep and the FabricNode projection through the real
 * API: nodes enrolled by the agent's own join code, region/zone labels and
 * nodeClass set on their FabricNodes with kubectl, mesh roles granted by a
 * RoleAssignment, endpoints reported in real heartbeats over mTLS. Then, with
 * the running leader's sweep and builder: a node granted a mesh role enters
 * others' candidate sets; a region label change moves it across failure
 * domains in every snapshot listing it; a revoked grant removes it from every
 * snapshot that listed it; and every time, snapshots whose candidate set did
 * not change keep their serial.
 */
import assert from "node:assert/strict";
import https from "node:https";
import { rmSync } from "node:fs";
import type { StoredIdentity } from "../../agent/enroll/identity-store.js";
import { join } from "../../agent/enroll/join.js";
import type { SignedSnapshot } from "../../lib/snapshot/format.js";
import { clusterSerials } from "../../lib/state/snapshots.js";
import { eventually, kubectl, tempStateDir } from "../support/controlplane.js";
import { createToken, startEnrollmentPlane, type EnrollmentPlane } from "../support/enrollment.js";

const CLUSTER = "mesh-api";
const N = 9; // n-0..n-7 mesh members from the start, n-8 joins the mesh later
const name = (i: number): string => `${CLUSTER}.n-${i}`;

describe("mesh peer directory through the API: sweep and FabricNode projection", function () {
  this.timeout(240_000);
  let p: EnrollmentPlane;
  const ids: StoredIdentity[] = [];
  const dirs: string[] = [];

  const apply = async (obj: Record<string, unknown>): Promise<void> => {
    const r = await kubectl(p.kubeconfig, ["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "accessfabric.io/v1alpha1", ...obj }) });
    assert.equal(r.code, 0, r.stderr);
  };
  const heartbeat = (id: StoredIdentity, i: number): Promise<number> =>
    new Promise((resolve, reject) => {
      const body = JSON.stringify({ seq: 1, agentVersion: "0.1.0", capabilities: ["can_accept_client_ingress"], facts: {}, health: { status: "Healthy" }, mesh: { endpoints: [{ address: `10.7.0.${i + 1}`, port: 4433 }], reachable: true, load: 0.1 } });
      const req = https.request(new URL("/v1/heartbeat", p.server), { method: "POST", agent: false, ca: id.serverCaPem, cert: id.certPem, key: id.keyPem, headers: { "Content-Type": "application/json" } }, (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      });
      req.on("error", reject);
      req.end(body);
    });
  const snapshots = async (): Promise<Map<string, SignedSnapshot>> => {
    const r = await p.cp.db.pool.query<{ node: string; bytes: Buffer }>("SELECT node, bytes FROM node_snapshots WHERE cluster = $1", [CLUSTER]);
    return new Map(r.rows.map((x) => [x.node, JSON.parse(x.bytes.toString("utf8")) as SignedSnapshot]));
  };
  // A snapshot's mesh part: its candidates and the nodes listing it one-sidedly (meshInbound).
  const peerNames = (snaps: Map<string, SignedSnapshot>): Map<string, string> =>
    new Map([...snaps].map(([n, s]) => [n, `${s.payload.meshPeers.map((x) => x.node).join(",")} <- ${(s.payload.meshInbound ?? []).map((x) => x.node).join(",")}`]));
  const settled = async (): Promise<void> => {
    // Quiet twice a sweep period apart: the sweep has nothing left to mark, the builder nothing to build.
    const quiet = async (): Promise<boolean> => (await p.cp.db.pool.query("SELECT 1 FROM snapshot_dirty WHERE cluster = $1", [CLUSTER])).rowCount === 0;
    await eventually(quiet, 60_000, 100);
    await new Promise((r) => setTimeout(r, 2500));
    await eventually(quiet, 60_000, 100);
  };
  const grant = (nodes: number[]): Promise<void> =>
    apply({ kind: "RoleAssignment", metadata: { name: "mesh-entries" }, spec: { cluster: CLUSTER, role: "entry-node", nodeNames: nodes.map(name) } });
  const grantedRows = async (): Promise<number> => Number((await p.cp.db.pool.query<{ n: string }>("SELECT count(*) AS n FROM node_roles WHERE cluster = $1 AND role = 'entry-node'", [CLUSTER])).rows[0]?.n);
  /** Nodes whose serial changed between two looks. */
  const resigned = (before: Map<string, number>, after: Map<string, number>): string[] => [...after].filter(([n, s]) => before.get(n) !== s).map(([n]) => n).sort();

  before(async () => {
    p = await startEnrollmentPlane();
    // Small peer counts so that sets are bounded below the cluster's size: standard nodes hold 2 + 3 warm candidates.
    await apply({ kind: "FabricCluster", metadata: { name: CLUSTER }, spec: { enrollmentPolicy: { approval: "TokenAutoApprove" }, peerPolicy: { thin: { min: 1, max: 1 }, standard: { min: 1, max: 2 } } } });
    const w = await kubectl(p.kubeconfig, ["wait", "--for=condition=Ready", `fabriccluster/${CLUSTER}`, "--timeout=60s"]);
    assert.equal(w.code, 0, w.stderr);
    const token = await createToken(p.kubeconfig, "mesh-join", { cluster: CLUSTER, maxUses: 20, autoApprove: true });
    for (let i = 0; i < N; i++) {
      const dir = tempStateDir("fabric-agent-");
      dirs.push(dir);
      ids.push(await join({ server: p.server, token, caHash: p.caHash, stateDir: dir, nodeName: `n-${i}`, cluster: CLUSTER, capabilities: ["can_accept_client_ingress"], pollIntervalMs: 200, timeoutMs: 60_000 }));
    }
    for (let i = 0; i < N; i++) {
      const region = i % 2 === 0 ? "eu" : "us";
      const r = await kubectl(p.kubeconfig, ["label", "fabricnode", name(i), `topology.kubernetes.io/region=${region}`, `topology.kubernetes.io/zone=${region}-${i % 3}`]);
      assert.equal(r.code, 0, r.stderr);
    }
    for (const [i, id] of ids.entries()) assert.equal(await heartbeat(id, i), 202);
    await eventually(async () => Number((await p.cp.db.pool.query<{ n: string }>("SELECT count(*) AS n FROM mesh_endpoints WHERE cluster = $1", [CLUSTER])).rows[0]?.n) === N, 30_000, 100);
    await grant([0, 1, 2, 3, 4, 5, 6, 7]);
    await eventually(async () => (await grantedRows()) === 8, 30_000, 100);
    await eventually(async () => [...(await snapshots()).values()].filter((s) => s.payload.meshPeers.length > 0).length === 8, 60_000, 200);
    await settled();
  });
  after(async () => {
    await p?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("projects FabricNode labels and nodeClass into the directory, and a class change reaches the node's settings", async () => {
    const facts = await p.cp.db.pool.query<{ node: string; region: string; zone: string; node_class: string }>("SELECT node, region, zone, node_class FROM mesh_node_facts WHERE cluster = $1 ORDER BY node", [CLUSTER]);
    assert.deepEqual(
      facts.rows.map((r) => [r.node, r.region, r.zone, r.node_class]),
      Array.from({ length: N }, (_, i) => [name(i), i % 2 === 0 ? "eu" : "us", `${i % 2 === 0 ? "eu" : "us"}-${i % 3}`, "standard"]),
    );
    const snaps = await snapshots();
    for (let i = 0; i < 8; i++) {
      const s = snaps.get(name(i))?.payload;
      assert.equal(s?.meshPeers.length, 5, `${name(i)}: ${s?.meshPeers.map((x) => x.node).join(",")}`);
      assert.deepEqual(new Set(s?.meshPeers.map((x) => x.region)), new Set(["eu", "us"]), name(i));
      assert.ok(s?.meshPeers.every((x) => x.node !== name(8) && x.endpoints[0]?.startsWith("10.7.0.")));
      assert.deepEqual(s?.mesh?.activePeers, { min: 1, max: 2 });
    }
    assert.deepEqual(snaps.get(name(8))?.payload.meshPeers, [], "no mesh role yet");
    // nodeClass Thin: fewer candidates for that node (1 + 3 warm).
    const r = await kubectl(p.kubeconfig, ["patch", "fabricnode", name(7), "--type", "merge", "-p", JSON.stringify({ spec: { nodeClass: "Thin" } })]);
    assert.equal(r.code, 0, r.stderr);
    await eventually(async () => (await snapshots()).get(name(7))?.payload.mesh?.nodeClass === "thin", 30_000, 200);
    await settled();
    const thin = (await snapshots()).get(name(7))?.payload;
    assert.deepEqual(thin?.mesh?.activePeers, { min: 1, max: 1 });
    assert.equal(thin?.meshPeers.length, 4);
  });

  it("adds a node granted a mesh role to others' candidate sets, re-signing only the snapshots whose set changed", async () => {
    const before = await clusterSerials(p.cp.db.pool, CLUSTER);
    const setsBefore = peerNames(await snapshots());
    await grant([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    await eventually(async () => (await snapshots()).get(name(8))?.payload.meshPeers.length === 5, 30_000, 200);
    await settled();
    const snaps = await snapshots();
    const listing = [...snaps].filter(([, s]) => s.payload.meshPeers.some((x) => x.node === name(8))).map(([n]) => n);
    assert.ok(listing.length > 0, "the new mesh node is in someone's candidate set");
    const setsAfter = peerNames(snaps);
    const changedSets = [...setsAfter].filter(([n, s]) => setsBefore.get(n) !== s).map(([n]) => n).sort();
    assert.deepEqual(resigned(before, await clusterSerials(p.cp.db.pool, CLUSTER)), changedSets);
    assert.ok(changedSets.includes(name(8)) && changedSets.length < N, `changed: ${changedSets.join(",")}`);
  });

  it("moves a node across failure domains in every snapshot listing it when its region label changes", async () => {
    const before = await clusterSerials(p.cp.db.pool, CLUSTER);
    const snapsBefore = await snapshots();
    const listedBefore = [...snapsBefore].filter(([, s]) => s.payload.meshPeers.some((x) => x.node === name(8))).map(([n]) => n);
    const r = await kubectl(p.kubeconfig, ["label", "--overwrite", "fabricnode", name(8), "topology.kubernetes.io/region=ap", "topology.kubernetes.io/zone=ap-1"]);
    assert.equal(r.code, 0, r.stderr);
    await eventually(async () => (await p.cp.db.pool.query("SELECT 1 FROM mesh_node_facts WHERE node = $1 AND region = 'ap' AND zone = 'ap-1'", [name(8)])).rowCount === 1, 30_000, 100);
    // The sweep re-marks only changed sets; the listing snapshots' peer entries carry the region, so they must change too.
    await eventually(async () => [...(await snapshots()).values()].every((s) => s.payload.meshPeers.every((x) => x.node !== name(8) || x.region === "ap")), 30_000, 200);
    await settled();
    const snaps = await snapshots();
    const listing = [...snaps].filter(([, s]) => s.payload.meshPeers.some((x) => x.node === name(8))).map(([n]) => n);
    assert.ok(listing.length > 0);
    for (const n of listing) assert.deepEqual(snaps.get(n)?.payload.meshPeers.find((x) => x.node === name(8))?.zone, "ap-1", n);
    // Its own set: ap holds nobody else, so its walk spreads over eu and us.
    assert.deepEqual(new Set(snaps.get(name(8))?.payload.meshPeers.map((x) => x.region)), new Set(["eu", "us"]));
    // Nodes that neither listed it before nor after, and whose set is unchanged, kept their serial.
    const after = await clusterSerials(p.cp.db.pool, CLUSTER);
    const setsBefore = peerNames(snapsBefore);
    for (const [n, s] of peerNames(snaps)) {
      if (n === name(8) || listing.includes(n) || listedBefore.includes(n) || setsBefore.get(n) !== s) continue;
      assert.equal(after.get(n), before.get(n), `${n} was re-signed though its set did not change`);
    }
  });

  it("removes a node whose mesh grant is revoked from every snapshot that listed it", async () => {
    const before = await clusterSerials(p.cp.db.pool, CLUSTER);
    const snapsBefore = await snapshots();
    const listed = [...snapsBefore].filter(([, s]) => s.payload.meshPeers.some((x) => x.node === name(8))).map(([n]) => n).sort();
    assert.ok(listed.length > 0);
    await grant([0, 1, 2, 3, 4, 5, 6, 7]);
    await eventually(async () => (await grantedRows()) === 8, 30_000, 100);
    await eventually(async () => [...(await snapshots()).values()].every((s) => s.payload.meshPeers.every((x) => x.node !== name(8))), 30_000, 200);
    await settled();
    const snaps = await snapshots();
    for (const [n, s] of snaps) assert.ok(s.payload.meshPeers.every((x) => x.node !== name(8)), `${n} still lists ${name(8)}`);
    assert.deepEqual(snaps.get(name(8))?.payload.meshPeers, []);
    assert.equal(snaps.get(name(8))?.payload.mesh, undefined);
    const setsBefore = peerNames(snapsBefore);
    const changedSets = [...peerNames(snaps)].filter(([n, s]) => setsBefore.get(n) !== s).map(([n]) => n).sort();
    for (const n of listed) assert.ok(changedSets.includes(n), `${n} listed it and its set did not change`);
    const resignedNow = resigned(before, await clusterSerials(p.cp.db.pool, CLUSTER));
    // Re-signed: exactly the sets that changed, and the node itself (its roles changed too). As the only
    // member of its region it was in every set, so here that is everyone; the join above shows the bound.
    assert.deepEqual(resignedNow, [...new Set([...changedSets, name(8)])].sort());
  });
});
