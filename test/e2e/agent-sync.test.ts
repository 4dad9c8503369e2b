/**
 * Real fabric-agent processes against a real control plane process: the
 * agent verifies its snapshot, rejects a tampered one served over a
 * hijacked (but correctly pinned) connection and keeps the last good one,
 * boots from its checkpoint while the control plane is down and says so,
 * and catches up to the newest serial when the control plane returns.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { loadIdentity } from "../../agent/enroll/identity-store.js";
import { SyncTransport } from "../../agent/sync/transport.js";
import { AgentProcesses, agentBin, agentStatusOf } from "../support/agent-process.js";
import { eventually, kubectl, spawnControlPlane, tempStateDir, type ChildControlPlane } from "../support/controlplane.js";
import { applyCluster, createToken } from "../support/enrollment.js";
import { freePort } from "../support/tcp-proxy.js";

const status = agentStatusOf;

describe("e2e: fabric-agent snapshot sync, tampering, checkpoint boot and catch-up", function () {
  this.timeout(240_000);
  let cp: ChildControlPlane | undefined;
  const agents = new AgentProcesses();
  const cpDir = tempStateDir();
  const agentDir = tempStateDir("fabric-agent-");
  let port = 0;

  const startAgent = (args: string[]) => agents.start(args, { stateDir: agentDir });

  before(async () => {
    port = await freePort();
    cp = await spawnControlPlane(cpDir, ["--agent-port", String(port), "--leader-elect", "false"]);
  });
  after(async () => {
    await agents.stopAll();
    await cp?.stop();
    rmSync(cpDir, { recursive: true, force: true });
    rmSync(agentDir, { recursive: true, force: true });
  });

  it("verifies, rejects tampering, boots from its checkpoint without a control plane, then catches up", async () => {
    assert.ok(cp !== undefined);
    const ready = /"agentApi":"([^"]+)","agentApiCaHash":"([^"]+)"/.exec(cp.output());
    assert.ok(ready, cp.output());
    const [, server = "", caHash = ""] = ready;
    await applyCluster(cp.kubeconfig, "e2e", "TokenAutoApprove");
    const token = await createToken(cp.kubeconfig, "e2e-join", { cluster: "e2e", autoApprove: true });

    // 1. Join and run: the agent holds a verified snapshot.
    const first = startAgent(["join", "--server", server, "--token", token, "--ca-hash", caHash, "--node-name", "h1", "--cluster", "e2e", "--poll-interval", "300ms"]);
    const s1 = await eventually(() => {
      const st = status(agentDir);
      return st?.snapshot !== undefined ? st : undefined;
    }, 60_000, 300);
    assert.equal(s1.snapshot?.source, "control-plane");
    const good = s1.snapshot?.serial ?? 0;
    assert.ok(good >= 1);
    await first.stop();

    // 2. A hijacked endpoint (it holds the pinned serving key) serves the real snapshot with its header edited.
    const dir = join(agentDir, "clusters", "e2e");
    const id = await loadIdentity(dir);
    const real = new SyncTransport(id);
    const r = await real.pollSnapshot(0, 0, 4 << 20, new AbortController().signal);
    real.close();
    assert.equal(r.kind, "snapshot");
    const genuine = r.kind === "snapshot" ? r.bytes.toString("utf8") : "";
    const forged = genuine.replace(`"serial":${good}`, `"serial":${good + 100}`);
    assert.notEqual(forged, genuine);
    const pki = join(cpDir, "pki", "agentapi");
    const fake = https.createServer({ cert: readFileSync(join(pki, "serving.crt")), key: readFileSync(join(pki, "serving.key")) }, (req, res) => {
      if (req.url?.startsWith("/v1/snapshot") === true) res.writeHead(200, { "Content-Type": "application/json" }).end(forged);
      else res.writeHead(503, { "Content-Type": "application/json" }).end('{"error":{"code":"Unavailable","message":"fake"}}');
    });
    await new Promise<void>((res) => fake.listen(0, "127.0.0.1", () => res()));
    const identityFile = join(dir, "identity.json");
    const original = readFileSync(identityFile, "utf8");
    writeFileSync(identityFile, original.replace(server, `https://127.0.0.1:${(fake.address() as AddressInfo).port}`));
    const metricsPort = await freePort();
    const hijacked = startAgent(["run", "--metrics-port", String(metricsPort), "--backoff-cap", "1s"]);
    const s2 = await eventually(() => {
      const st = status(agentDir);
      return st?.lastRejection?.code === "BadSignature" && st.pid === hijacked.pid ? st : undefined;
    }, 30_000, 300);
    assert.equal(s2.snapshot?.serial, good, "the last good snapshot stays in force");
    assert.equal(s2.bootedFromCheckpoint, true);
    const metrics = await new Promise<string>((resolve, reject) => {
      http.get(`http://127.0.0.1:${metricsPort}/metrics`, (res) => {
        let t = "";
        res.on("data", (c: Buffer) => (t += c.toString()));
        res.on("end", () => resolve(t));
      }).on("error", reject);
    });
    assert.match(metrics, /fabric_agent_snapshot_rejections_total\{cluster="e2e",node="e2e.h1",code="BadSignature"\} [1-9]/);
    const human = execFileSync(agentBin, ["status", "--state-dir", agentDir], { encoding: "utf8" });
    assert.match(human, /last rejection:\s+BadSignature/);
    await hijacked.stop();
    fake.close();
    writeFileSync(identityFile, original);

    // 3. While the agent is down, a change gives the node a newer snapshot.
    const patch = await kubectl(cp.kubeconfig, ["patch", "fabricnode", "e2e.h1", "--type", "merge", "-p", '{"spec":{"membership":"Disabled"}}']);
    assert.equal(patch.code, 0, patch.stderr);
    const newest = await eventually(async () => {
      const t = new SyncTransport(id);
      try {
        const p = await t.pollSnapshot(good, 0, 4 << 20, new AbortController().signal);
        return p.kind === "snapshot" ? p.announcedSerial : undefined;
      } finally {
        t.close();
      }
    }, 30_000, 300);
    assert.ok(newest > good);

    // 4. Control plane stopped, agent killed and restarted: it boots from its checkpoint and says so.
    await cp.stop();
    cp = undefined;
    const offline = startAgent(["run", "--backoff-cap", "1s", "--heartbeat-interval", "1s"]);
    const s3 = await eventually(() => {
      const st = status(agentDir);
      return st !== undefined && st.pid === offline.pid && st.lastError !== undefined ? st : undefined;
    }, 30_000, 300);
    assert.equal(s3.bootedFromCheckpoint, true);
    assert.equal(s3.snapshot?.source, "checkpoint");
    assert.equal(s3.snapshot?.serial, good);
    await offline.waitFor("booted from checkpoint", 10_000);
    assert.match(execFileSync(agentBin, ["status", "--state-dir", agentDir], { encoding: "utf8" }), /booted from checkpoint: yes/);

    // 5. The control plane returns on the same address: the agent catches up without operator action.
    cp = await spawnControlPlane(cpDir, ["--agent-port", String(port), "--leader-elect", "false"]);
    const s4 = await eventually(() => {
      const st = status(agentDir);
      return st !== undefined && st.pid === offline.pid && (st.snapshot?.serial ?? 0) >= newest ? st : undefined;
    }, 90_000, 500);
    assert.equal(s4.snapshot?.source, "control-plane");
    assert.equal(s4.snapshot?.serial, newest);
    await offline.stop();
  });
});
