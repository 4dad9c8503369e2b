/**
 * Snapshots against a real control plane (embedded PostgreSQL, API server,
 * controllers, agent API) with agents enrolled through the real enrollment
 * flow: serials and hashes in PostgreSQL, only the touched snapshots move,
 * the long poll answers as soon as a newer serial exists, a node reads only
 * its own snapshot, a revoked certificate is refused on its next request.
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { AgentApiRequestError } from "../../agent/http/client.js";
import https from "node:https";
import type pg from "pg";
import type { StoredIdentity } from "../../agent/enroll/identity-store.js";
import { join } from "../../agent/enroll/join.js";
import { MembershipSync } from "../../agent/sync/snapshot-sync.js";
import { SyncTransport } from "../../agent/sync/transport.js";
import { markNodesDirty } from "../../lib/snapshot/contributors.js";
import { clusterSerials } from "../../lib/state/snapshots.js";
import { eventually, kubectl, tempStateDir } from "../support/controlplane.js";
import { applyCluster, createToken, startEnrollmentPlane, type EnrollmentPlane } from "../support/enrollment.js";

describe("snapshots: builder, index, long poll and need-to-know", function () {
  this.timeout(180_000);
  let p: EnrollmentPlane;
  const ids: StoredIdentity[] = [];
  const dirs: string[] = [];
  const transports: SyncTransport[] = [];

  before(async () => {
    p = await startEnrollmentPlane();
    await applyCluster(p.kubeconfig, "snap", "TokenAutoApprove");
    const token = await createToken(p.kubeconfig, "snap-join", { cluster: "snap", maxUses: 10, autoApprove: true });
    for (const n of ["a", "b", "c"]) {
      const dir = tempStateDir("fabric-agent-");
      dirs.push(dir);
      ids.push(await join({ server: p.server, token, caHash: p.caHash, stateDir: dir, nodeName: `n-${n}`, cluster: "snap", pollIntervalMs: 200, timeoutMs: 60_000 }));
    }
    for (const id of ids) transports.push(new SyncTransport(id));
  });
  after(async () => {
    for (const t of transports) t.close();
    await p?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const serials = () => clusterSerials(p.cp.db.pool, "snap");

  it("builds one signed snapshot per node, with serial and hashes in PostgreSQL, verified by the agent code", async () => {
    const s = await eventually(async () => {
      const m = await serials();
      return m.size === 3 ? m : undefined;
    }, 30_000);
    assert.deepEqual([...s.keys()].sort(), ["snap.n-a", "snap.n-b", "snap.n-c"]);
    const rows = await p.cp.db.pool.query<{ node: string; hash: string; payload_hash: string; len: number }>("SELECT node, hash, payload_hash, length(bytes) AS len FROM node_snapshots WHERE cluster = 'snap'");
    for (const r of rows.rows) {
      assert.match(r.hash, /^[a-f0-9]{64}$/);
      assert.match(r.payload_hash, /^[a-f0-9]{64}$/);
    }
    const id = ids[0];
    const t = transports[0];
    assert.ok(id !== undefined && t !== undefined);
    const sync = new MembershipSync({ identity: id });
    await sync.boot();
    const r = await t.pollSnapshot(0, 0, 4 << 20, new AbortController().signal);
    assert.equal(r.kind, "snapshot");
    const out = await sync.offer(r.kind === "snapshot" ? r.bytes : Buffer.alloc(0));
    assert.equal(out.kind, "accepted");
    if (out.kind !== "accepted") return;
    assert.equal(out.snapshot.header.node, "snap.n-a");
    assert.equal(out.snapshot.payload.identity.certificateSerial, id.info.serial);
    // Need-to-know: nothing of the other nodes is in it.
    const text = r.kind === "snapshot" ? r.bytes.toString("utf8") : "";
    assert.ok(!text.includes("n-b") && !text.includes("n-c"));
  });

  it("re-signs only the snapshots a change touches; the same input keeps its serial", async () => {
    const before = await serials();
    // Marked dirty without a change: same payload, same serial.
    await markNodesDirty(p.cp.db.pool as unknown as pg.ClientBase, "snap", ["snap.n-a", "snap.n-b", "snap.n-c"]);
    await eventually(async () => (await p.cp.db.pool.query("SELECT 1 FROM snapshot_dirty WHERE cluster = 'snap'")).rowCount === 0, 20_000);
    assert.deepEqual(await serials(), before);
    // A change to one FabricNode moves only its serial.
    const r = await kubectl(p.kubeconfig, ["patch", "fabricnode", "snap.n-b", "--type", "merge", "-p", '{"spec":{"membership":"Disabled"}}']);
    assert.equal(r.code, 0, r.stderr);
    const after = await eventually(async () => {
      const m = await serials();
      return (m.get("snap.n-b") ?? 0) > (before.get("snap.n-b") ?? 0) ? m : undefined;
    }, 30_000);
    assert.equal(after.get("snap.n-a"), before.get("snap.n-a"));
    assert.equal(after.get("snap.n-c"), before.get("snap.n-c"));
    assert.equal(after.get("snap.n-b"), (before.get("snap.n-b") ?? 0) + 1);
  });

  it("holds a long poll until a newer serial exists, then answers at once", async () => {
    const t = transports[2];
    assert.ok(t !== undefined);
    const current = (await serials()).get("snap.n-c") ?? 0;
    const held = t.pollSnapshot(current, 30, 4 << 20, new AbortController().signal);
    await eventually(() => (p.cp.agentApi?.pendingPolls() ?? 0) >= 1, 10_000);
    const r = await kubectl(p.kubeconfig, ["patch", "fabricnode", "snap.n-c", "--type", "merge", "-p", '{"spec":{"membership":"Disabled"}}']);
    assert.equal(r.code, 0, r.stderr);
    const got = await held;
    assert.equal(got.kind, "snapshot");
    assert.equal(got.kind === "snapshot" ? got.announcedSerial : 0, current + 1);
    // Nothing newer: a short poll returns "none".
    assert.equal((await t.pollSnapshot(current + 1, 1, 4 << 20, new AbortController().signal)).kind, "none");
  });

  it("refuses a node's certificate for another node's snapshot", async () => {
    const id = ids[0];
    assert.ok(id !== undefined);
    const get = (path: string) =>
      new Promise<number>((resolve, reject) => {
        const req = https.request(new URL(path, p.server), { ca: id.serverCaPem, cert: id.certPem, key: id.keyPem }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on("error", reject);
        req.end();
      });
    assert.equal(await get("/v1/snapshot?node=snap.n-b&wait=0"), 403);
    assert.equal(await get("/v1/snapshot?node=snap.n-a&wait=0"), 200);
  });

  it("refuses a revoked node's certificate on its next request", async () => {
    const t = transports[0];
    assert.ok(t !== undefined);
    assert.equal((await t.pollSnapshot(0, 0, 4 << 20, new AbortController().signal)).kind, "snapshot");
    const r = await kubectl(p.kubeconfig, ["patch", "fabricnode", "snap.n-a", "--type", "merge", "-p", '{"spec":{"membership":"Revoked"}}']);
    assert.equal(r.code, 0, r.stderr);
    const err = await eventually(async () => {
      try {
        await t.pollSnapshot(0, 0, 4 << 20, new AbortController().signal);
        return undefined;
      } catch (e) {
        return e instanceof AgentApiRequestError ? e : undefined;
      }
    }, 30_000);
    assert.equal(err.code, "IdentityRevoked");
    // Its snapshot is withdrawn too.
    await eventually(async () => !(await serials()).has("snap.n-a"), 30_000);
  });
});
