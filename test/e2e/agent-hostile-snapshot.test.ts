/**
 * A real fabric-agent, running a real workload for a real control plane, is
 * offered a snapshot that is validly signed by the cluster's own snapshot key
 * (opened from the control plane's database with its KEK, as a thief of that
 * key could) but whose payload nests an array 10,000 deep: a few KB of valid
 * JSON. It is served over a hijacked, correctly pinned endpoint. The agent
 * counts a `Malformed` rejection (status file, `fabric-agent status`,
 * /metrics), keeps the last good snapshot in force and leaves its workload
 * running; nothing overflows and nothing is counted as a transport failure.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createPrivateKey, randomBytes } from "node:crypto";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import pg from "pg";
import { loadIdentity } from "../../agent/enroll/identity-store.js";
import { trustedKeysOf } from "../../agent/sync/snapshot-sync.js";
import { SyncTransport } from "../../agent/sync/transport.js";
import { kekFileOf, loadKek, open } from "../../lib/crypto/kek.js";
import { signedSnapshotWithNesting } from "../../lib/snapshot/fixtures.js";
import { signAndEncodeSnapshot, type SignedSnapshot } from "../../lib/snapshot/format.js";
import { verifySnapshot } from "../../lib/snapshot/verify.js";
import { clusterKeyAad } from "../../lib/state/clusters.js";
import { AgentProcesses, agentBin, agentStatusOf } from "../support/agent-process.js";
import { eventually, kubectl, spawnControlPlane, tempStateDir, type ChildControlPlane } from "../support/controlplane.js";
import { applyCluster, createToken } from "../support/enrollment.js";
import { killAllWith, processesWith } from "../support/processes.js";
import { freePort } from "../support/tcp-proxy.js";

const status = agentStatusOf;

describe("e2e: fabric-agent offered a validly signed, deeply nested snapshot", function () {
  this.timeout(300_000);
  let cp: ChildControlPlane | undefined;
  const agents = new AgentProcesses();
  const cpDir = tempStateDir();
  const agentDir = tempStateDir("fabric-agent-");
  const marker = `hostile-e2e-${randomBytes(6).toString("hex")}`;
  let fake: https.Server | undefined;

  const startAgent = (args: string[]) => agents.start(args, { stateDir: agentDir });
  async function apply(obj: Record<string, unknown>): Promise<void> {
    assert.ok(cp !== undefined);
    const r = await kubectl(cp.kubeconfig, ["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "accessfabric.io/v1alpha1", ...obj }) });
    assert.equal(r.code, 0, r.stderr);
  }

  before(async () => {
    cp = await spawnControlPlane(cpDir, ["--agent-port", String(await freePort()), "--leader-elect", "false"]);
  });
  after(async () => {
    await agents.stopAll();
    fake?.close();
    killAllWith(marker);
    await cp?.stop();
    rmSync(cpDir, { recursive: true, force: true });
    rmSync(agentDir, { recursive: true, force: true });
  });

  it("counts a Malformed rejection, keeps the last good snapshot and keeps its workload running", async () => {
    assert.ok(cp !== undefined);
    const ready = /"agentApi":"([^"]+)","agentApiCaHash":"([^"]+)"/.exec(cp.output());
    assert.ok(ready, cp.output());
    const [, server = "", caHash = ""] = ready;
    await applyCluster(cp.kubeconfig, "hs", "TokenAutoApprove");
    const token = await createToken(cp.kubeconfig, "hs-join", { cluster: "hs", autoApprove: true });

    // 1. Join, and get a workload placed on the node: a real process.
    const first = startAgent(["join", "--server", server, "--token", token, "--ca-hash", caHash, "--node-name", "h1", "--cluster", "hs", "--poll-interval", "300ms", "--backoff-cap", "1s", "--capabilities", "can_run_rdp_worker"]);
    await eventually(() => status(agentDir)?.snapshot !== undefined, 60_000, 300);
    await apply({ kind: "ServiceWorkload", metadata: { name: "steady" }, spec: { cluster: "hs", role: "rdp-worker", runtime: "Native", command: [process.execPath, "-e", "setInterval(() => {}, 1000)", marker], restartPolicy: "Always" } });
    await apply({ kind: "RoleAssignment", metadata: { name: "rdp" }, spec: { cluster: "hs", role: "rdp-worker", nodeNames: ["hs.h1"] } });
    const pid = await eventually(() => {
      const pids = processesWith(marker);
      return pids.length === 1 ? pids[0] : undefined;
    }, 60_000, 100);
    const dir = join(agentDir, "clusters", "hs");
    const id = await loadIdentity(dir);
    // The snapshot that placed it, as the control plane serves it now.
    const t = new SyncTransport(id);
    const polled = await t.pollSnapshot(0, 0, 4 << 20, new AbortController().signal);
    t.close();
    assert.equal(polled.kind, "snapshot");
    const genuine = JSON.parse(polled.kind === "snapshot" ? polled.bytes.toString("utf8") : "{}") as SignedSnapshot;
    assert.ok(genuine.payload.workloads.some((w) => w.name === "steady"));
    const good = await eventually(() => {
      const st = status(agentDir);
      return st?.snapshot !== undefined && st.snapshot.serial >= genuine.header.serial ? st.snapshot.serial : undefined;
    }, 30_000, 300);
    await first.stop();
    assert.deepEqual(processesWith(marker), [pid], "stopping the agent leaves its workload running");

    // 2. The cluster's snapshot key, from the control plane's database, opened with its KEK.
    const db = new pg.Client({
      host: "127.0.0.1",
      port: Number(readFileSync(join(cpDir, "postgres.port"), "utf8").trim()),
      user: "fabric",
      database: "fabric",
      password: readFileSync(join(cpDir, "postgres.password"), "utf8").trim(),
    });
    await db.connect();
    const row = (await db.query<{ key_version: number; kek_id: string; nonce: Buffer; ciphertext: Buffer }>("SELECT key_version, kek_id, nonce, ciphertext FROM cluster_keys WHERE cluster = 'hs' AND kind = 'snapshot' ORDER BY key_version DESC LIMIT 1")).rows[0];
    await db.end();
    assert.ok(row !== undefined);
    const der = open(loadKek({ file: kekFileOf(cpDir) }), { kekId: row.kek_id, nonce: row.nonce, ciphertext: row.ciphertext }, clusterKeyAad("hs", "snapshot", row.key_version));
    const clusterKey = createPrivateKey({ key: der, format: "der", type: "pkcs8" });

    // 3. A newer snapshot signed with that key. Without the nesting it verifies for this node: the nesting is the only fault.
    const header = { ...genuine.header, serial: good + 100 };
    const ctx = { trustedKeys: trustedKeysOf(id), cluster: id.info.cluster, node: id.info.node, lastSerial: good, now: new Date() };
    assert.equal(verifySnapshot(signAndEncodeSnapshot(header, genuine.payload, clusterKey).bytes, ctx).status, "accepted");
    const hostile = signedSnapshotWithNesting(header, genuine.payload, clusterKey, 10_000);
    assert.ok(hostile.length < 32 * 1024, `${hostile.length} bytes`);

    // 4. Served over a hijacked endpoint holding the pinned serving key; heartbeats and reports are answered as the real API does.
    const pki = join(cpDir, "pki", "agentapi");
    fake = https.createServer({ cert: readFileSync(join(pki, "serving.crt")), key: readFileSync(join(pki, "serving.key")) }, (req, res) => {
      req.resume();
      const json = { "Content-Type": "application/json" };
      if (req.url?.startsWith("/v1/snapshot") === true) res.writeHead(200, json).end(hostile);
      else if (req.url === "/v1/heartbeat") res.writeHead(202, json).end('{"intervalSeconds":1}');
      else if (req.url?.startsWith("/v1/status/") === true) res.writeHead(202, json).end('{"stored":true}');
      else res.writeHead(503, json).end('{"error":{"code":"Unavailable","message":"fake"}}');
    });
    await new Promise<void>((res) => fake?.listen(0, "127.0.0.1", () => res()));
    const identityFile = join(dir, "identity.json");
    const original = readFileSync(identityFile, "utf8");
    writeFileSync(identityFile, original.replace(server, `https://127.0.0.1:${(fake.address() as AddressInfo).port}`));
    const metricsPort = await freePort();
    const hijacked = startAgent(["run", "--metrics-port", String(metricsPort), "--backoff-cap", "1s"]);
    try {
      const st = await eventually(() => {
        const s = status(agentDir);
        return s !== undefined && s.pid === hijacked.pid && (s.rejections.Malformed ?? 0) >= 2 ? s : undefined;
      }, 60_000, 300);
      assert.equal(st.lastRejection?.code, "Malformed");
      assert.match(st.lastRejection?.message ?? "", /nested deeper than 64 levels/);
      assert.equal(st.snapshot?.serial, good, "the last good snapshot stays in force");
      assert.equal(st.accepted, 0);
      assert.doesNotMatch(JSON.stringify(st), /call stack|RangeError/);
      assert.doesNotMatch(hijacked.output(), /call stack|RangeError|snapshot poll failed/);
      const metrics = await new Promise<string>((resolve, reject) => {
        http
          .get(`http://127.0.0.1:${metricsPort}/metrics`, (res) => {
            let text = "";
            res.on("data", (c: Buffer) => (text += c.toString()));
            res.on("end", () => resolve(text));
          })
          .on("error", reject);
      });
      assert.match(metrics, /fabric_agent_snapshot_rejections_total\{cluster="hs",node="hs.h1",code="Malformed"\} [1-9]/);
      assert.match(metrics, new RegExp(`fabric_agent_snapshot_serial\\{cluster="hs",node="hs.h1"\\} ${good}\\n`));
      assert.match(execFileSync(agentBin, ["status", "--state-dir", agentDir], { encoding: "utf8" }), /last rejection:\s+Malformed: malformed snapshot: nested deeper than 64 levels/);
      // The workload: the same process, adopted, still running after several sync and supervisor rounds.
      await hijacked.waitFor('"msg":"workload process adopted"', 30_000);
      for (let i = 0; i < 5; i++) {
        await new Promise((r) => setTimeout(r, 500));
        assert.deepEqual(processesWith(marker), [pid]);
      }
      assert.ok(!hijacked.output().includes('"msg":"stopping workload process"'), "nothing was stopped");
      const record = join(dir, "workloads", "steady", "process.json");
      assert.ok(existsSync(record));
      assert.equal((JSON.parse(readFileSync(record, "utf8")) as { process?: { pid: number } }).process?.pid, pid);
    } finally {
      await hijacked.stop();
      writeFileSync(identityFile, original);
    }
  });
});
