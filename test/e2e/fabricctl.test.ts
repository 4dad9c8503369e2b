/**
 * The operator's enrollment commands as real processes against a real
 * control plane process: `fabricctl token create` prints the token and the
 * full join command, running that command (real `fabric-agent join`)
 * enrolls, `fabricctl join approve` lets it join, and `fabricctl join deny
 * --reason` refuses another host, which the waiting agent reports; the
 * denial is audited.
 */
import assert from "node:assert/strict";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import type pg from "pg";
import { embeddedDatabaseUrl } from "../../lib/db/embedded-postgres.js";
import { createPool } from "../../lib/db/pool.js";
import { AgentProcesses, type AgentProcess } from "../support/agent-process.js";
import { eventually, fabricctl, kubectl, spawnControlPlane, tempStateDir, type ChildControlPlane } from "../support/controlplane.js";
import { applyCluster } from "../support/enrollment.js";

/** The fabric-agent arguments of the join command fabricctl printed. */
function printedJoinArgs(stdout: string): string[] {
  const line = stdout.split("\n").find((l) => l.trim().startsWith("fabric-agent join "));
  assert.ok(line !== undefined, `no join command in:\n${stdout}`);
  return line.trim().split(/\s+/).slice(1);
}

describe("e2e: fabricctl token create, join approve, join deny", function () {
  this.timeout(180_000);
  let cp: ChildControlPlane;
  let pool: pg.Pool | undefined;
  const agents = new AgentProcesses();
  const cpDir = tempStateDir();
  const agentDirs: string[] = [];
  let server = "";
  let caHash = "";

  before(async () => {
    cp = await spawnControlPlane(cpDir, ["--leader-elect", "false"]);
    const ready = /"msg":"control plane ready".*?"agentApi":"([^"]+)","agentApiCaHash":"([^"]+)"/.exec(cp.output());
    assert.ok(ready, cp.output());
    [, server = "", caHash = ""] = ready;
    pool = createPool(await embeddedDatabaseUrl(join(cpDir, "postgres")), { max: 2 });
    await applyCluster(cp.kubeconfig, "ops");
  });
  after(async () => {
    await agents.stopAll("SIGTERM");
    await pool?.end();
    await cp?.stop();
    rmSync(cpDir, { recursive: true, force: true });
    for (const d of agentDirs) rmSync(d, { recursive: true, force: true });
  });

  const jsonpath = async (what: string[], path: string): Promise<string> => (await kubectl(cp.kubeconfig, ["get", ...what, "-o", `jsonpath=${path}`])).stdout;

  /** Starts the printed join command as a real agent and returns it with its JoinRequest name. */
  async function agentFromPrinted(printed: string[], nodeName: string, tokenName: string, known: string[]): Promise<{ agent: AgentProcess; joinRequest: string }> {
    const dir = tempStateDir("fabric-agent-");
    agentDirs.push(dir);
    const agent = agents.start([...printed, "--node-name", nodeName, "--poll-interval", "300ms", "--once"], { stateDir: dir });
    await agent.waitFor(": Pending", 30_000);
    const joinRequest = await eventually(async () => {
      const names = (await jsonpath(["joinrequests", "-l", `accessfabric.io/jointoken=${tokenName}`], "{.items[*].metadata.name}")).split(" ").filter((n) => n !== "" && !known.includes(n));
      return names.length === 1 ? names[0] : undefined;
    });
    assert.ok(agent.output().includes(joinRequest), agent.output());
    return { agent, joinRequest };
  }

  it("prints the token and the full join command; the printed command enrolls; approve and deny decide with reasons", async () => {
    const created = await fabricctl(["token", "create", "--cluster", "ops", "--name", "ops-hosts", "--max-uses", "2", "--ttl", "20m", "--kubeconfig", cp.kubeconfig]);
    assert.equal(created.code, 0, created.stderr);
    const token = /^\s+([a-z0-9]{6}\.[a-z0-9]{32})$/m.exec(created.stdout)?.[1];
    assert.ok(token !== undefined, created.stdout);
    assert.match(created.stdout, /join token ops-hosts for cluster ops \(ttl 20m, max uses 2\)/);
    // The printed token is the one in the Secret, and the command names the real server and CA pin.
    const secret = await jsonpath(["secret", "-n", "fabric-system", "jointoken-ops-hosts"], "{.data.token}");
    assert.equal(Buffer.from(secret, "base64").toString("utf8"), token);
    const printed = printedJoinArgs(created.stdout);
    assert.deepEqual(printed, ["join", "--server", server, "--token", token, "--ca-hash", caHash, "--cluster", "ops"]);

    // Host 1 runs the printed command and is approved with fabricctl.
    const one = await agentFromPrinted(printed, "ops-1", "ops-hosts", []);
    const ap = await fabricctl(["join", "approve", one.joinRequest, "--reason", "rack 7, ticket 42", "--kubeconfig", cp.kubeconfig]);
    assert.equal(ap.code, 0, ap.stderr);
    assert.equal(ap.stdout, `joinrequest/${one.joinRequest} approved\n`);
    assert.equal(await one.agent.exited, 0, one.agent.output());
    assert.match(one.agent.output(), /joined cluster ops as ops\.ops-1/);
    assert.equal(await jsonpath(["joinrequest", one.joinRequest], "{.spec.decision}/{.spec.decisionReason}"), "Approved/rack 7, ticket 42");
    await eventually(async () => (await jsonpath(["joinrequest", one.joinRequest], "{.status.conditions[?(@.type==\"Approved\")].reason}/{.status.conditions[?(@.type==\"Approved\")].message}")) === "Approved/rack 7, ticket 42");
    await eventually(async () => (await jsonpath(["fabricnode", "ops.ops-1"], "{.status.conditions[?(@.type==\"Ready\")].reason}")) === "Active", 30_000);

    // Host 2 runs the same command and is denied with a reason; the agent reports it and exits.
    const two = await agentFromPrinted(printed, "ops-2", "ops-hosts", [one.joinRequest]);
    const dn = await fabricctl(["join", "deny", two.joinRequest, "--reason", "unknown hardware", "--kubeconfig", cp.kubeconfig]);
    assert.equal(dn.code, 0, dn.stderr);
    assert.equal(dn.stdout, `joinrequest/${two.joinRequest} denied\n`);
    assert.equal(await two.agent.exited, 1, two.agent.output());
    assert.match(two.agent.output(), /join refused: Denied: join request denied: unknown hardware/);
    const agentDir = agentDirs[agentDirs.length - 1] ?? "";
    assert.ok(!existsSync(join(agentDir, "clusters", "ops")), "a denied agent stored an identity");
    assert.ok(!existsSync(join(agentDir, "pending", token.slice(0, 6))), "a denied agent kept its pending key");
    await eventually(async () => (await jsonpath(["joinrequest", two.joinRequest], "{.status.conditions[?(@.type==\"Ready\")].reason}/{.status.conditions[?(@.type==\"Approved\")].status}/{.status.conditions[?(@.type==\"Approved\")].message}")) === "Denied/False/unknown hardware");
    assert.equal(await jsonpath(["joinrequest", two.joinRequest], "{.status.certificate}"), "");
    const noNode = await kubectl(cp.kubeconfig, ["get", "fabricnode", "ops.ops-2"]);
    assert.notEqual(noNode.code, 0);
    const db = pool;
    assert.ok(db !== undefined);
    const denied = await db.query<{ details: { reason: string }; term: string }>("SELECT details, term FROM audit_events WHERE action = 'joinrequest.denied' AND object_name = $1", [two.joinRequest]);
    assert.equal(denied.rows.length, 1);
    assert.equal(denied.rows[0]?.details.reason, "unknown hardware");
    assert.ok(Number(denied.rows[0]?.term) >= 1);
    assert.equal((await db.query("SELECT 1 FROM nodes WHERE name = 'ops.ops-2'")).rows.length, 0);
    const approved = await db.query<{ details: { reason: string; how: string } }>("SELECT details FROM audit_events WHERE action = 'joinrequest.approved' AND object_name = $1", [one.joinRequest]);
    assert.deepEqual(approved.rows.map((r) => [r.details.how, r.details.reason]), [["Manual", "rack 7, ticket 42"]]);

    // The token is now used up: the printed command is refused for a third host.
    await eventually(async () => (await jsonpath(["jointoken", "ops-hosts"], "{.status.uses}/{.status.conditions[0].reason}")) === "2/Exhausted");
    const dir3 = tempStateDir("fabric-agent-");
    agentDirs.push(dir3);
    const three = agents.start([...printed, "--node-name", "ops-3", "--once"], { stateDir: dir3 });
    assert.equal(await three.exited, 1, three.output());
    assert.match(three.output(), /join refused: TokenExhausted/);

    // The chain stays intact (checked by the CLI against the running control plane's database).
    const verify = await fabricctl(["audit", "verify", "--state-dir", cpDir]);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  });

  it("refuses unusable invocations with exit code 2 and a message", async () => {
    const noCluster = await fabricctl(["token", "create", "--kubeconfig", cp.kubeconfig]);
    assert.equal(noCluster.code, 2);
    assert.match(noCluster.stderr, /needs --cluster/);
    const noName = await fabricctl(["join", "approve", "--kubeconfig", cp.kubeconfig]);
    assert.equal(noName.code, 2);
    assert.match(noName.stderr, /needs a JoinRequest name/);
    const missing = await fabricctl(["join", "deny", "no-such-request", "--reason", "x", "--kubeconfig", cp.kubeconfig]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /^fabricctl: .*(404|not found)/im);
  });
});
