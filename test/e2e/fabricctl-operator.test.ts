/**
 * fabricctl as an operator meets it, real processes throughout: a control
 * plane process (node grace period 3 s, leader election on), real agents that
 * joined and heartbeat, one of them SIGKILLed (Ready=Unknown) and one host
 * whose join request waits for a decision. `fabricctl status -o json` shows
 * exactly those facts, `get nodes` lists the nodes, `audit log` filters the
 * chain. Then the problems a new user met: help and unknown commands, exit
 * codes, kubectl-style API errors, `token create` for a missing cluster or
 * beyond the cluster's maxTokenTTL (refused, nothing left behind), a token
 * whose Secret never comes (deleted again) and the join command for the
 * example cluster (its capabilities printed, so the host can join).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { AgentProcesses, type AgentProcess } from "../support/agent-process.js";
import { eventually, fabricctl, kubectl, repoRoot, spawnControlPlane, startTestControlPlane, tempStateDir, type ChildControlPlane } from "../support/controlplane.js";
import { applyCluster, createToken } from "../support/enrollment.js";


describe("e2e: fabricctl for operators (status, get nodes, audit log, errors, token create)", function () {
  this.timeout(240_000);
  let cp: ChildControlPlane;
  const cpDir = tempStateDir();
  const dirs: string[] = [];
  const agents = new AgentProcesses();
  let server = "";
  let caHash = "";
  let pendingRequest = "";

  const kc = () => ["--kubeconfig", cp.kubeconfig];
  const jsonpath = async (what: string[], path: string): Promise<string> => (await kubectl(cp.kubeconfig, ["get", ...what, "-o", `jsonpath=${path}`])).stdout;

  function agentDir(): string {
    const d = tempStateDir("fabric-agent-");
    dirs.push(d);
    return d;
  }

  const spawnAgent = (args: string[], stateDir: string): AgentProcess => agents.start(args, { stateDir });

  before(async () => {
    cp = await spawnControlPlane(cpDir, ["--node-grace-period", "3s"]);
    const ready = /"agentApi":"([^"]+)","agentApiCaHash":"([^"]+)"/.exec(cp.output());
    assert.ok(ready, cp.output());
    [, server = "", caHash = ""] = ready;
    await applyCluster(cp.kubeconfig, "ops", "TokenAutoApprove");
    const auto = await createToken(cp.kubeconfig, "ops-auto", { cluster: "ops", autoApprove: true, maxUses: 5 });
    // Three hosts join (auto-approved) and heartbeat every 500 ms.
    const running: Record<string, AgentProcess> = {};
    for (const node of ["h1", "h2", "h3"]) {
      const dir = agentDir();
      const joined = spawnAgent(["join", "--once", "--server", server, "--token", auto, "--ca-hash", caHash, "--node-name", node, "--cluster", "ops", "--poll-interval", "300ms"], dir);
      assert.equal(await joined.exited, 0, joined.output());
      running[node] = spawnAgent(["run", "--heartbeat-interval", "500ms"], dir);
    }
    for (const node of ["h1", "h2", "h3"]) {
      await eventually(async () => (await jsonpath(["fabricnode", `ops.${node}`], '{.status.conditions[?(@.type=="Ready")].status}')) === "True", 60_000, 250);
      // Ready=True comes with the certificate; wait for a heartbeat too, or a node stopped before its first one never turns Unknown.
      await eventually(async () => (await jsonpath(["fabricnode", `ops.${node}`], "{.status.health}")) === "Healthy", 60_000, 250);
    }
    // h3 stops: after the 3 s grace period its node is Ready=Unknown.
    const h3 = running.h3;
    assert.ok(h3 !== undefined);
    await h3.stop("SIGKILL");
    await eventually(async () => (await jsonpath(["fabricnode", "ops.h3"], '{.status.conditions[?(@.type=="Ready")].status}')) === "Unknown", 60_000, 250);
    // A fourth host asks to join with a token that needs an operator: its request stays pending.
    const manual = await createToken(cp.kubeconfig, "ops-manual", { cluster: "ops", autoApprove: false });
    const h4 = spawnAgent(["join", "--once", "--server", server, "--token", manual, "--ca-hash", caHash, "--node-name", "h4", "--cluster", "ops", "--poll-interval", "300ms"], agentDir());
    pendingRequest = await eventually(async () => (await jsonpath(["joinrequests", "-l", "accessfabric.io/jointoken=ops-manual"], "{.items[*].metadata.name}")).trim() || undefined, 30_000);
    await h4.waitFor(": Pending", 30_000);
    await h4.stop("SIGKILL");
  });

  after(async () => {
    await agents.stopAll();
    await cp?.stop();
    rmSync(cpDir, { recursive: true, force: true });
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("status -o json shows exactly the joined, stopped and pending hosts, with the commands to look closer", async () => {
    const r = await fabricctl(["status", "-o", "json", ...kc(), "--state-dir", cpDir]);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout) as {
      clusters: Array<{ name: string; ready: string; authorityTerm: number | null; authorityHolder: string | null; nodes: { total: number; ready: Record<string, number> } }>;
      nodes: { total: number; ready: Record<string, number>; notReady: Array<{ name: string; ready: string; command: string }> };
      joinRequests: { pending: Array<{ name: string; cluster: string; nodeName: string; command: string }> };
      roleCoverage: { gaps: unknown[] };
      workloads: unknown[];
      certificates: { expiring: unknown[] };
      authority: { lease: { namespace: string; name: string; holder: string | null; expired: boolean } | null; leaseError: string | null };
      audit: { checked: boolean; ok?: boolean; events?: number };
      risks: Array<{ kind: string; command: string }>;
    };
    assert.deepEqual(s.clusters.map((c) => [c.name, c.ready, c.nodes.total, c.nodes.ready]), [["ops", "True", 3, { True: 2, False: 0, Unknown: 1 }]]);
    assert.deepEqual(s.nodes.ready, { True: 2, False: 0, Unknown: 1 });
    assert.equal(s.nodes.total, 3);
    assert.deepEqual(s.nodes.notReady.map((n) => [n.name, n.ready, n.command]), [["ops.h3", "Unknown", "kubectl describe fabricnode ops.h3"]]);
    assert.deepEqual(s.joinRequests.pending.map((p) => [p.name, p.cluster, p.nodeName, p.command]), [[pendingRequest, "ops", "h4", `fabricctl join approve ${pendingRequest}`]]);
    assert.deepEqual(s.roleCoverage.gaps, []);
    assert.deepEqual(s.workloads, []);
    assert.deepEqual(s.certificates.expiring, []);
    assert.equal(s.authority.leaseError, null);
    assert.equal(s.authority.lease?.name, "fabric-controllers");
    assert.equal(s.authority.lease?.expired, false);
    assert.ok((s.authority.lease?.holder ?? "") !== "");
    assert.ok((s.clusters[0]?.authorityTerm ?? 0) >= 1);
    assert.equal(s.audit.checked, true);
    assert.equal(s.audit.ok, true);
    assert.deepEqual(s.risks.map((x) => [x.kind, x.command]), [
      ["NodesUnknown", "kubectl describe fabricnode ops.h3"],
      ["PendingJoinRequests", `fabricctl join approve ${pendingRequest}`],
    ]);

    // The text form says the same with the commands; without a database the audit chain is "not checked".
    const text = await fabricctl(["status", ...kc()]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /NODES \(3\): 2 Ready, 0 NotReady, 1 Unknown/);
    assert.match(text.stdout, /ops\.h3 +Unknown .*kubectl describe fabricnode ops\.h3/);
    assert.ok(text.stdout.includes(`fabricctl join approve ${pendingRequest}`), text.stdout);
    assert.match(text.stdout, /AUDIT CHAIN\n  not checked: no database named/);
  });

  it("status shows a role no node covers, naming the assignment", async () => {
    const ra = await kubectl(cp.kubeconfig, ["apply", "-f", "-"], {
      input: JSON.stringify({ apiVersion: "accessfabric.io/v1alpha1", kind: "RoleAssignment", metadata: { name: "ops-exit" }, spec: { cluster: "ops", role: "vpn-exit", nodeNames: ["nobody"], enabled: true } }),
    });
    assert.equal(ra.code, 0, ra.stderr);
    const gaps = await eventually(async () => {
      const r = await fabricctl(["status", "-o", "json", "--cluster", "ops", ...kc()]);
      const g = (JSON.parse(r.stdout) as { roleCoverage: { gaps: Array<{ cluster: string; role: string; ready: number }> } }).roleCoverage.gaps;
      return g.length > 0 ? g : undefined;
    });
    assert.deepEqual(gaps.map((g) => [g.cluster, g.role, g.ready]), [["ops", "vpn-exit", 0]]);
    assert.equal((await kubectl(cp.kubeconfig, ["delete", "roleassignment", "ops-exit"])).code, 0);
  });

  it("status --watch -o json refreshes at its interval until stopped, and exits 0 on SIGTERM", async () => {
    const child = spawn(join(repoRoot, "bin", "fabricctl"), ["status", "--watch", "--interval", "1s", "-o", "json", ...kc()], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout?.on("data", (c: Buffer) => (out += c.toString()));
    const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
    try {
      // One JSON document per refresh, one per line.
      await eventually(() => out.split("\n").filter((l) => l.trim() !== "").length >= 3, 30_000);
      const frames = out.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as { generatedAt: string; nodes?: unknown });
      const times = frames.map((f) => Date.parse(f.generatedAt));
      for (let i = 1; i < times.length; i++) assert.ok((times[i] ?? 0) > (times[i - 1] ?? 0), `refreshes move forward: ${frames.map((f) => f.generatedAt).join(", ")}`);
    } finally {
      child.kill("SIGTERM");
    }
    assert.equal(await exited, 0);
  });

  it("get nodes lists every node with membership, readiness, heartbeat age and certificate expiry", async () => {
    const t = await fabricctl(["get", "nodes", ...kc()]);
    assert.equal(t.code, 0, t.stderr);
    const lines = t.stdout.trimEnd().split("\n");
    assert.match(lines[0] ?? "", /^NAME +CLUSTER +MEMBERSHIP +READY +HEALTH +ROLES +WORKLOADS +AGENT +HEARTBEAT +CERT-EXPIRY$/);
    assert.deepEqual(lines.slice(1).map((l) => l.split(/ +/).slice(0, 4)), [
      ["ops.h1", "ops", "Active", "True"],
      ["ops.h2", "ops", "Active", "True"],
      ["ops.h3", "ops", "Active", "Unknown"],
    ]);
    assert.match(lines[1] ?? "", / in (2[0-3]h|1d)$/);
    const j = await fabricctl(["get", "nodes", "-o", "json", "--cluster", "ops", ...kc()]);
    assert.equal(j.code, 0, j.stderr);
    const rows = (JSON.parse(j.stdout) as { nodes: Array<{ name: string; ready: string; heartbeatAgeSeconds: number | null; certificateNotAfter: string | null }> }).nodes;
    assert.deepEqual(rows.map((r) => [r.name, r.ready]), [["ops.h1", "True"], ["ops.h2", "True"], ["ops.h3", "Unknown"]]);
    for (const r of rows) {
      assert.ok(r.heartbeatAgeSeconds !== null && r.certificateNotAfter !== null, JSON.stringify(r));
    }
    const y = await fabricctl(["get", "nodes", "-o", "yaml", ...kc()]);
    assert.match(y.stdout, /^nodes:\n  - name: ops\.h1\n/);
    const none = await fabricctl(["get", "nodes", "--cluster", "nosuch", ...kc()]);
    assert.deepEqual([none.code, none.stdout, none.stderr], [0, "", "No fabric nodes found in cluster nosuch.\n"]);
  });

  it("audit log filters the chain by object, action and time", async () => {
    const all = await fabricctl(["audit", "log", "-o", "json", "--state-dir", cpDir]);
    assert.equal(all.code, 0, all.stderr);
    const events = (JSON.parse(all.stdout) as { events: Array<{ id: number; action: string; objectKind: string; objectName: string }> }).events;
    assert.ok(events.length > 5);
    assert.deepEqual(events.map((e) => e.id), [...events.map((e) => e.id)].sort((a, b) => a - b));

    const byObject = await fabricctl(["audit", "log", "-o", "json", "--object", `joinrequest/${pendingRequest}`, "--state-dir", cpDir]);
    const jr = (JSON.parse(byObject.stdout) as { events: Array<{ action: string; objectKind: string; objectName: string }> }).events;
    assert.deepEqual(jr.map((e) => [e.objectKind, e.objectName, e.action]), [["JoinRequest", pendingRequest, "joinrequest.received"]]);

    const created = await fabricctl(["audit", "log", "-o", "json", "--object", "fc/ops", "--action", "cluster.created", "--since", "1h", "--state-dir", cpDir]);
    assert.deepEqual((JSON.parse(created.stdout) as { events: Array<{ objectName: string }> }).events.map((e) => e.objectName), ["ops"]);
    const future = await fabricctl(["audit", "log", "-o", "json", "--since", "2999-01-01T00:00:00Z", "--state-dir", cpDir]);
    assert.deepEqual(JSON.parse(future.stdout), { events: [], truncated: false });

    const table = await fabricctl(["audit", "log", "--object", "fabricnodes", "--limit", "2", "--state-dir", cpDir]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^ID +TIME +ACTION +OBJECT +CLUSTER +TERM +ACTOR +DETAILS\n/);
    assert.equal(table.stdout.trimEnd().split("\n").length, 3);
    assert.ok(table.stdout.trimEnd().split("\n").slice(1).every((l) => /fabricnode\/ops\.h[123]/.test(l)), table.stdout);
    assert.match(table.stderr, /showing the latest 2 matching events/);

    const badKind = await fabricctl(["audit", "log", "--object", "pods/x", "--state-dir", cpDir]);
    assert.equal(badKind.code, 2);
    assert.match(badKind.stderr, /unknown kind "pods"/);
  });

  it("help goes to stdout with exit 0, unknown commands exit 2 with a suggestion", async () => {
    // Independent invocations: started together, judged one by one.
    const helps = [["--help"], ["token", "create", "--help"], ["help", "token"], ["status", "-h"], ["audit", "log", "--help"], ["get", "--help"]];
    const [helped, [unknown, sub, flag, format, interval, resource]] = await Promise.all([
      Promise.all(helps.map((args) => fabricctl(args))),
      Promise.all([
        fabricctl(["tokn", "create"]),
        fabricctl(["join", "aprove", "x"]),
        fabricctl(["get", "nodes", "--clustr", "x"]),
        fabricctl(["get", "nodes", "-o", "xml", ...kc()]),
        fabricctl(["status", "--watch", "--interval", "soon", ...kc()]),
        fabricctl(["get", "pods", ...kc()]),
      ]),
    ]);
    helps.forEach((args, i) => {
      const r = helped[i];
      assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stdout, /^Usage: fabricctl/, args.join(" "));
      assert.equal(r.stderr, "", args.join(" "));
    });
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command 'tokn'\n\(Did you mean token\?\)/);
    assert.equal(unknown.stdout, "");
    assert.equal(sub.code, 2);
    assert.match(sub.stderr, /Did you mean approve\?/);
    assert.equal(flag.code, 2);
    assert.match(flag.stderr, /unknown option '--clustr'\n\(Did you mean --cluster\?\)/);
    assert.equal(format.code, 2);
    assert.match(format.stderr, /Allowed choices are table, json, yaml/);
    assert.equal(interval.code, 2);
    assert.match(interval.stderr, /--interval: invalid duration "soon"/);
    assert.equal(resource.code, 2);
    assert.match(resource.stderr, /use kubectl get pods/);
  });

  it("shows API errors as kubectl does, without the HTTP client's dump", async () => {
    const missing = await fabricctl(["join", "approve", "nosuch", ...kc()]);
    assert.equal(missing.code, 2);
    assert.equal(missing.stderr, 'fabricctl: Error from server (NotFound): joinrequests.accessfabric.io "nosuch" not found\n');
    const config = readFileSync(cp.kubeconfig, "utf8");
    const wrongToken = join(cpDir, "kubeconfig-wrong-token");
    writeFileSync(wrongToken, config.replace(/token: .*/, "token: not-the-token"));
    const unauthorized = await fabricctl(["get", "nodes", "--kubeconfig", wrongToken]);
    assert.equal(unauthorized.code, 1);
    assert.match(unauthorized.stderr, /^fabricctl: Error from server \(Unauthorized\): /);
    assert.doesNotMatch(unauthorized.stderr, /HTTP-Code|Headers|Body:/);
    const closed = join(cpDir, "kubeconfig-closed-port");
    writeFileSync(closed, config.replace(/server: https:\/\/127\.0\.0\.1:[0-9]+/, "server: https://127.0.0.1:1"));
    const refused = await fabricctl(["status", "--kubeconfig", closed]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^fabricctl: cannot reach the API server https:\/\/127\.0\.0\.1:1: connect ECONNREFUSED/);
  });

  it("token create refuses a missing cluster and a ttl beyond the cluster's maximum, creating nothing", async () => {
    const before = await jsonpath(["jointokens"], "{.items[*].metadata.name}");
    const noCluster = await fabricctl(["token", "create", "--cluster", "nosuchcluster", ...kc()]);
    assert.equal(noCluster.code, 2);
    assert.equal(noCluster.stderr, 'fabricctl: Error from server (NotFound): fabricclusters.accessfabric.io "nosuchcluster" not found\n');
    const tooLong = await fabricctl(["token", "create", "--cluster", "ops", "--ttl", "48h", ...kc()]);
    assert.equal(tooLong.code, 2);
    assert.match(tooLong.stderr, /--ttl 48h exceeds the maximum token lifetime of cluster ops \(spec\.enrollmentPolicy\.maxTokenTTL: 24h\)/);
    assert.equal(await jsonpath(["jointokens"], "{.items[*].metadata.name}"), before);
  });

  it("token create prints the capabilities the example cluster and the roles require, and that command joins", async () => {
    const applied = await kubectl(cp.kubeconfig, ["apply", "-f", join(repoRoot, "manifests", "examples", "10-fabriccluster.yaml")]);
    assert.equal(applied.code, 0, applied.stderr);
    assert.equal((await kubectl(cp.kubeconfig, ["wait", "--for=condition=Ready", "fabriccluster/demo", "--timeout=60s"])).code, 0);
    const created = await fabricctl(["token", "create", "--cluster", "demo", "--name", "demo-edge", "--roles", "entry-node", "--max-uses", "2", ...kc()]);
    assert.equal(created.code, 0, created.stderr);
    const line = created.stdout.split("\n").find((l) => l.trim().startsWith("fabric-agent join "));
    assert.ok(line !== undefined, created.stdout);
    const printed = line.trim().split(/\s+/).slice(1);
    assert.deepEqual(printed.slice(-4), ["--roles", "entry-node", "--capabilities", "can_accept_client_ingress,can_route_mesh"]);
    assert.match(created.stdout, /required by cluster demo and role entry-node/);

    // Without the printed capabilities the host is refused (what the old command did).
    const bare = spawnAgent([...printed.slice(0, -2), "--node-name", "edge-0", "--once"], agentDir());
    assert.equal(await bare.exited, 1, bare.output());
    assert.match(bare.output(), /CapabilityMissing/);
    // The printed command enrolls; the operator approves; the host joins.
    const agent = spawnAgent([...printed, "--node-name", "edge-1", "--poll-interval", "300ms", "--once"], agentDir());
    const request = await eventually(async () => (await jsonpath(["joinrequests", "-l", "accessfabric.io/jointoken=demo-edge"], "{.items[*].metadata.name}")).trim() || undefined, 30_000);
    const ap = await fabricctl(["join", "approve", request, ...kc()]);
    assert.equal(ap.code, 0, ap.stderr);
    assert.equal(await agent.exited, 0, agent.output());
    assert.match(agent.output(), /joined cluster demo as demo\.edge-1/);
  });

  it("token create deletes its token when the controllers never issue it", async () => {
    // A bare API server (no controllers): the token gets no Secret.
    const bare = await startTestControlPlane();
    try {
      const c = await kubectl(bare.kubeconfig, ["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "accessfabric.io/v1alpha1", kind: "FabricCluster", metadata: { name: "lone" }, spec: {} }) });
      assert.equal(c.code, 0, c.stderr);
      const r = await fabricctl(["token", "create", "--cluster", "lone", "--name", "lone-1", "--wait", "2s", "--kubeconfig", bare.kubeconfig]);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.equal(r.stderr, "fabricctl: token lone-1 got no Secret within 2s (are the controllers running?) (jointoken lone-1 deleted)\n");
      assert.equal(r.stdout, "");
      const left = await kubectl(bare.kubeconfig, ["get", "jointokens", "-o", "name"]);
      assert.equal(left.stdout, "");
    } finally {
      await bare.stop();
    }
  });
});
