/**
 * Heartbeats into FabricNode status, against a real control plane
 * (embedded PostgreSQL, API server, controllers, agent API) with agents
 * enrolled through the real join flow and run with the agent's own sync
 * loop (agent/sync/runner.ts): the heartbeat reaches the status, heartbeats
 * that change nothing visible do not rewrite it, a stopped agent's node goes
 * Ready=Unknown after the grace period and back to True when it returns,
 * each health change has its audit row, heartbeat rows are in PostgreSQL.
 * The agent API's authentication cache follows identity changes made by
 * any writer (here plain SQL, as another control plane replica would), and
 * a deleted node's heartbeat row goes with it.
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import type { CustomObjectsApi } from "@kubernetes/client-node";
import type { ControlPlane } from "../../controlplane/controlplane.js";
import type { StoredIdentity } from "../../agent/enroll/identity-store.js";
import { join } from "../../agent/enroll/join.js";
import { AgentApiRequestError } from "../../agent/http/client.js";
import { AGENT_VERSION, runMembership } from "../../agent/sync/runner.js";
import { SyncTransport } from "../../agent/sync/transport.js";
import type { MembershipSync } from "../../agent/sync/snapshot-sync.js";
import type { FabricNodeStatus } from "../../lib/api/types.generated.js";
import { RESOURCES } from "../../lib/api/types.generated.js";
import { eventually, tempStateDir } from "../support/controlplane.js";
import { applyCluster, createToken, startEnrollmentPlane, type EnrollmentPlane } from "../support/enrollment.js";

const GRACE_MS = 2000;

describe("node health: heartbeats into FabricNode status", function () {
  this.timeout(180_000);
  let plane: EnrollmentPlane | undefined;
  let cp: ControlPlane | undefined;
  const agentDir = tempStateDir("fabric-agent-");
  let api: CustomObjectsApi;
  let id: StoredIdentity;
  const node = "hb.h1";
  const res = RESOURCES.FabricNode;

  const fabricNode = async (): Promise<{ rv: string; status: FabricNodeStatus }> => {
    const o = (await api.getClusterCustomObject({ group: res.group, version: res.version, plural: res.plural, name: node })) as { metadata?: { resourceVersion?: string }; status?: FabricNodeStatus };
    return { rv: o.metadata?.resourceVersion ?? "", status: o.status ?? {} };
  };
  const ready = (s: FabricNodeStatus) => s.conditions?.find((c) => c.type === "Ready");

  function startAgent(): { stop: () => Promise<MembershipSync> } {
    const ctl = new AbortController();
    const running = runMembership({ identity: id, signal: ctl.signal, log: () => undefined, heartbeatIntervalMs: 250, pollWaitSeconds: 5, backoffCapMs: 1000, capabilities: ["can_route_mesh"] });
    return {
      stop: async () => {
        ctl.abort();
        return running;
      },
    };
  }

  before(async () => {
    plane = await startEnrollmentPlane({ nodeHealth: { gracePeriodMs: GRACE_MS, heartbeatPublishIntervalMs: 3_600_000, scanIntervalMs: 200 } });
    cp = plane.cp;
    api = plane.api;
    await applyCluster(plane.kubeconfig, "hb", "TokenAutoApprove");
    const token = await createToken(plane.kubeconfig, "hb-join", { cluster: "hb", autoApprove: true });
    id = await join({ server: plane.server, token, caHash: plane.caHash, stateDir: agentDir, nodeName: "h1", cluster: "hb", capabilities: ["can_route_mesh"], pollIntervalMs: 200, timeoutMs: 60_000 });
  });
  after(async () => {
    await plane?.stop();
    rmSync(agentDir, { recursive: true, force: true });
  });

  it("publishes the heartbeat, rewrites the status only on visible change, goes Unknown after the grace period and back, audits each health change", async () => {
    assert.ok(cp !== undefined);
    const pool = cp.db.pool;
    // Enrolled, no agent running yet: judged by identity alone.
    const enrolled = await eventually(async () => {
      const f = await fabricNode();
      return ready(f.status)?.status === "True" ? f : undefined;
    }, 30_000);
    assert.equal(enrolled.status.health, undefined);

    // 1. The agent runs: its heartbeat reaches the status.
    const first = startAgent();
    const stored = await eventually(async () => {
      const r = await pool.query<{ serial: string }>("SELECT serial FROM node_snapshots WHERE node = $1", [node]);
      return r.rows[0]?.serial;
    });
    const live = await eventually(async () => {
      const f = await fabricNode();
      return f.status.health === "Healthy" && f.status.snapshot?.serial === Number(stored) && ready(f.status)?.status === "True" ? f : undefined;
    }, 30_000);
    assert.equal(live.status.agentVersion, AGENT_VERSION);
    assert.deepEqual(live.status.capabilities, ["can_route_mesh"]);
    assert.equal(typeof live.status.facts?.hostname, "string");
    assert.match(live.status.snapshot?.hash ?? "", /^[a-f0-9]{64}$/);
    assert.ok(live.status.lastHeartbeatTime !== undefined);
    assert.equal(ready(live.status)?.reason, "Active");

    // Heartbeat rows are in PostgreSQL, written in batches by the agent API.
    const row = await pool.query<{ seq: string; agent_version: string; snapshot_serial: string; health: string; capabilities: string[] }>(
      "SELECT seq, agent_version, snapshot_serial, health, capabilities FROM node_heartbeats WHERE node = $1",
      [node],
    );
    assert.equal(row.rows[0]?.agent_version, AGENT_VERSION);
    assert.equal(row.rows[0]?.snapshot_serial, stored);
    assert.equal(row.rows[0]?.health, "Healthy");
    assert.deepEqual(row.rows[0]?.capabilities, ["can_route_mesh"]);

    // 2. Several heartbeats that change nothing visible: the FabricNode is not rewritten.
    const rv = (await fabricNode()).rv;
    const seqs = new Set<string>();
    await eventually(async () => {
      const r = await pool.query<{ seq: string }>("SELECT seq FROM node_heartbeats WHERE node = $1", [node]);
      const s = r.rows[0]?.seq;
      if (s !== undefined) seqs.add(s);
      return seqs.size >= 6;
    }, 30_000, 50);
    assert.equal((await fabricNode()).rv, rv, "heartbeats that change nothing visible must not rewrite the status");

    // 3. The agent stops: after the grace period Ready goes Unknown and health Unknown.
    await first.stop();
    const silent = await eventually(async () => {
      const f = await fabricNode();
      return ready(f.status)?.status === "Unknown" ? f : undefined;
    }, 30_000);
    assert.equal(ready(silent.status)?.reason, "NodeStatusUnknown");
    assert.equal(silent.status.health, "Unknown");

    // 4. It comes back: Ready True again.
    const second = startAgent();
    const back = await eventually(async () => {
      const f = await fabricNode();
      return ready(f.status)?.status === "True" && f.status.health === "Healthy" ? f : undefined;
    }, 30_000);
    assert.equal(ready(back.status)?.reason, "Active");
    await second.stop();

    // 5. One audit row per health change, in order.
    const audit = await pool.query<{ details: { from: string | null; to: string } }>(
      "SELECT details FROM audit_events WHERE action = 'node.health.changed' AND object_name = $1 ORDER BY id",
      [node],
    );
    assert.deepEqual(
      audit.rows.map((r) => [r.details.from, r.details.to]),
      [
        [null, "Healthy"],
        ["Healthy", "Unknown"],
        ["Unknown", "Healthy"],
      ],
    );
    const published = await pool.query<{ health: string }>("SELECT health FROM node_health WHERE node = $1", [node]);
    assert.equal(published.rows[0]?.health, "Healthy");
  });

  it("refuses a certificate from the next request on when any writer changes its identity, on the same kept-alive connection; a deleted node loses its heartbeat row", async () => {
    assert.ok(cp !== undefined);
    const pool = cp.db.pool;
    const agentApi = cp.agentApi;
    assert.ok(agentApi !== undefined);
    const t = new SyncTransport(id);
    let seq = Date.now();
    const beat = async (): Promise<string> => {
      try {
        await t.postJson("/v1/heartbeat", { seq: ++seq, agentVersion: "test", capabilities: [], facts: {}, health: { status: "Healthy" } });
        return "accepted";
      } catch (err) {
        if (err instanceof AgentApiRequestError) return err.code;
        throw err;
      }
    };
    try {
      assert.equal(await beat(), "accepted");
      const hits = agentApi.stats().authCacheHits;
      assert.equal(await beat(), "accepted");
      assert.ok(agentApi.stats().authCacheHits > hits, "a known identity is checked from memory");

      // Superseded behind the agent API's back (plain SQL, as another replica would): refused, then accepted again.
      await pool.query("UPDATE node_identities SET status = 'superseded' WHERE serial = $1", [id.info.serial]);
      await eventually(async () => (await beat()) === "CertificateSuperseded", 10_000, 20);
      await pool.query("UPDATE node_identities SET status = 'active' WHERE serial = $1", [id.info.serial]);
      await eventually(async () => (await beat()) === "accepted", 10_000, 20);
      await eventually(async () => (await pool.query("SELECT 1 FROM node_heartbeats WHERE node = $1 AND agent_version = 'test'", [node])).rowCount === 1);

      // The FabricNode goes: its node row, identities and heartbeat row go too; the certificate is refused.
      await api.deleteClusterCustomObject({ group: res.group, version: res.version, plural: res.plural, name: node });
      await eventually(async () => (await pool.query("SELECT 1 FROM nodes WHERE name = $1", [node])).rowCount === 0, 30_000);
      assert.equal((await pool.query("SELECT 1 FROM node_heartbeats WHERE node = $1", [node])).rowCount, 0);
      await eventually(async () => (await beat()) === "CertificateRejected", 10_000, 20);
      // A heartbeat still queued when the node went does not bring its row back.
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal((await pool.query("SELECT 1 FROM node_heartbeats WHERE node = $1", [node])).rowCount, 0);
    } finally {
      t.close();
    }
  });
});
