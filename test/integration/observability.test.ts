/**
 * Observability against a real control plane (API server, PostgreSQL,
 * controllers, agent API) with real enrollments and the real kubectl: the
 * Kubernetes Events of a refused join, an approval, a role refusal and a
 * workload crash loop, read back with `kubectl get events -o json`,
 * `kubectl describe` and `kubectl events --for`; every metric the
 * dashboard and the alert rules name exists on /metrics; the health
 * endpoints answer alike on the API and metrics ports.
 */
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { writeStatusReport } from "../../lib/state/heartbeats.js";
import { eventually, kubectl, kubectlBin, kubectlVariant, repoRoot } from "../support/controlplane.js";
import { applyCluster, createToken, enrollOnce, pinnedClient, startEnrollmentPlane, type EnrollmentPlane } from "../support/enrollment.js";
import { metricNamesOfDashboard, metricNamesOfRules } from "../support/promql.js";

interface KubeEvent {
  metadata: { name: string; namespace: string };
  involvedObject: { kind: string; name: string; namespace?: string; uid?: string };
  type: string;
  reason: string;
  message: string;
  count: number;
  source: { component: string };
}

describe("observability: events, metrics and health endpoints", function () {
  this.timeout(240_000);
  let p: EnrollmentPlane;
  const apply = async (obj: Record<string, unknown>): Promise<void> => {
    const r = await kubectl(p.kubeconfig, ["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "accessfabric.io/v1alpha1", ...obj }) });
    assert.equal(r.code, 0, r.stderr);
  };
  /** Events about kind/name, read with kubectl from the default namespace (where kube puts those of cluster-scoped objects). */
  const eventsOf = async (kind: string, name: string): Promise<KubeEvent[]> => {
    const r = await kubectl(p.kubeconfig, ["get", "events", "-o", "json", "--field-selector", `involvedObject.kind=${kind},involvedObject.name=${name}`]);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { items: KubeEvent[] }).items;
  };
  const waitForEvent = (kind: string, name: string, reason: string, timeoutMs = 30_000): Promise<KubeEvent> =>
    eventually(async () => (await eventsOf(kind, name)).find((e) => e.reason === reason), timeoutMs, 200);

  before(async () => {
    p = await startEnrollmentPlane();
    await applyCluster(p.kubeconfig, "obs", "TokenAutoApprove");
  });
  after(async () => {
    await p?.stop();
  });

  it("records a refused join on the token, readable with kubectl get events, describe and events --for", async () => {
    const token = await createToken(p.kubeconfig, "obs-revoked", { cluster: "obs", maxUses: 5 });
    await waitForEvent("JoinToken", "obs-revoked", "TokenCreated");
    assert.equal((await kubectl(p.kubeconfig, ["patch", "jointoken", "obs-revoked", "--type", "merge", "-p", '{"spec":{"revoked":true}}'])).code, 0);
    const revoked = await waitForEvent("JoinToken", "obs-revoked", "TokenRevoked");
    assert.equal(revoked.type, "Normal");
    assert.equal(revoked.source.component, "fabric-controllers");
    // `source` selects on source.component, as kube-apiserver's event field set has it.
    const bySource = async (source: string): Promise<KubeEvent[]> => {
      const r = await kubectl(p.kubeconfig, ["get", "events", "-o", "json", "--field-selector", `source=${source},involvedObject.name=obs-revoked`]);
      assert.equal(r.code, 0, r.stderr);
      return (JSON.parse(r.stdout) as { items: KubeEvent[] }).items;
    };
    assert.ok((await bySource("fabric-controllers")).some((e) => e.reason === "TokenRevoked"));
    assert.deepEqual(await bySource("kubelet"), []);
    const client = await pinnedClient(p);
    try {
      const r = await enrollOnce(client, { token, nodeName: "refused-1" });
      assert.ok(!r.ok && r.code === "TokenRevoked", JSON.stringify(r));
      // The same refusal again is counted up on the same event, not written twice.
      const again = await enrollOnce(client, { token, nodeName: "refused-1" });
      assert.ok(!again.ok);
      // An unknown token with a cluster named: recorded on that cluster.
      const unknown = await enrollOnce(client, { token: `${token.slice(0, 6)}.${"b".repeat(32)}`, nodeName: "refused-2", cluster: "obs" });
      assert.ok(!unknown.ok && unknown.code === "TokenInvalid", JSON.stringify(unknown));
    } finally {
      client.close();
    }
    const ev = await eventually(async () => (await eventsOf("JoinToken", "obs-revoked")).find((e) => e.reason === "JoinRefused" && e.count === 2), 30_000, 200);
    assert.equal(ev.type, "Warning");
    assert.match(ev.message, /node refused-1 refused \(TokenRevoked\)/);
    assert.equal(ev.source.component, "fabric-agentapi");
    assert.equal(ev.metadata.namespace, "default");
    assert.equal(ev.involvedObject.namespace, undefined, "a cluster-scoped object's reference has no namespace");
    assert.ok(ev.involvedObject.uid !== undefined && ev.involvedObject.uid !== "");
    assert.equal((await eventsOf("JoinToken", "obs-revoked")).filter((e) => e.reason === "JoinRefused").length, 1);
    const onCluster = await waitForEvent("FabricCluster", "obs", "JoinRefused");
    assert.match(onCluster.message, /TokenInvalid/);

    const d = await kubectl(p.kubeconfig, ["describe", "jointoken", "obs-revoked"]);
    assert.equal(d.code, 0, d.stderr);
    assert.match(d.stdout, /Events:/);
    assert.match(d.stdout, /Warning\s+JoinRefused/);
    assert.match(d.stdout, /Normal\s+TokenRevoked/);
    // `kubectl events` exists from 1.26; older clients ask for the same events by field selector.
    const f =
      kubectlVariant(kubectlBin).minor >= 26
        ? await kubectl(p.kubeconfig, ["events", "--for", "jointoken/obs-revoked"])
        : await kubectl(p.kubeconfig, ["get", "events", "-n", "default", "--field-selector", "involvedObject.kind=JoinToken,involvedObject.name=obs-revoked"]);
    assert.equal(f.code, 0, f.stderr);
    assert.match(f.stdout, /JoinRefused/);
    assert.match(f.stdout, /TokenRevoked/);
  });

  it("records an approval and the certificate issued on the JoinRequest", async () => {
    const token = await createToken(p.kubeconfig, "obs-auto", { cluster: "obs", maxUses: 10, autoApprove: true, allowedRoles: ["rdp-worker"] });
    const client = await pinnedClient(p);
    try {
      for (const [name, caps] of [
        ["n-ok", ["can_run_rdp_worker"]],
        ["n-bare", []],
      ] as const) {
        const r = await enrollOnce(client, { token, nodeName: name, capabilities: [...caps], requestedRoles: caps.length > 0 ? ["rdp-worker"] : [] });
        assert.ok(r.ok, JSON.stringify(r));
      }
    } finally {
      client.close();
    }
    const requests = await kubectl(p.kubeconfig, ["get", "joinrequests", "-l", "accessfabric.io/jointoken=obs-auto", "-o", "jsonpath={.items[*].metadata.name}"]);
    const name = requests.stdout.split(" ").find((n) => n.startsWith("n-ok-"));
    assert.ok(name !== undefined, requests.stdout);
    const approved = await waitForEvent("JoinRequest", name, "JoinRequestApproved");
    assert.match(approved.message, /auto-approved/);
    const issued = await waitForEvent("JoinRequest", name, "CertificateIssued");
    assert.match(issued.message, /issued to node obs\.n-ok/);
    const d = await kubectl(p.kubeconfig, ["describe", "joinrequest", name]);
    assert.equal(d.code, 0, d.stderr);
    assert.match(d.stdout, /Normal\s+CertificateIssued/);
    for (const n of ["obs.n-ok", "obs.n-bare"]) {
      await eventually(async () => (await kubectl(p.kubeconfig, ["get", "fabricnode", n, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"])).stdout === "True", 60_000);
    }
  });

  it("records the nodes a role assignment refuses", async () => {
    await apply({ kind: "RoleAssignment", metadata: { name: "obs-rdp" }, spec: { cluster: "obs", role: "rdp-worker", nodeNames: ["obs.n-ok", "obs.n-bare"] } });
    const refused = await waitForEvent("RoleAssignment", "obs-rdp", "NodeRefused");
    assert.equal(refused.type, "Warning");
    assert.match(refused.message, /obs\.n-bare: MissingCapability/);
    const granted = await waitForEvent("RoleAssignment", "obs-rdp", "RoleGranted");
    assert.match(granted.message, /obs\.n-ok/);
    const d = await kubectl(p.kubeconfig, ["describe", "roleassignment", "obs-rdp"]);
    assert.match(d.stdout, /Warning\s+NodeRefused/);
  });

  it("records a workload's crash loop from an agent's report, and its recovery", async () => {
    await apply({ kind: "ServiceWorkload", metadata: { name: "obs-wl" }, spec: { cluster: "obs", role: "rdp-worker", command: ["sleep", "3600"] } });
    await eventually(async () => (await p.cp.db.pool.query("SELECT 1 FROM node_workloads WHERE workload = 'obs-wl'")).rowCount === 1, 30_000);
    const report = (version: number, item: Record<string, unknown>) => writeStatusReport(p.cp.db.pool, { node: "obs.n-ok", cluster: "obs", kind: "workloads", version, body: { workloads: [{ name: "obs-wl", observedGeneration: 1, ...item }] } });
    assert.equal(await report(1, { state: "Degraded", ready: false, reason: "CrashLoopBackOff", message: "exited with code 1", restartCount: 5 }), true);
    const crash = await waitForEvent("ServiceWorkload", "obs-wl", "CrashLoopBackOff");
    assert.equal(crash.type, "Warning");
    assert.match(crash.message, /crash-looping on node obs\.n-ok: CrashLoopBackOff: exited with code 1 \(restarts: 5\)/);
    assert.equal(await report(2, { state: "Running", ready: true, reason: "Running", message: "", restartCount: 5 }), true);
    const back = await waitForEvent("ServiceWorkload", "obs-wl", "WorkloadRecovered");
    assert.equal(back.type, "Normal");
    const d = await kubectl(p.kubeconfig, ["describe", "serviceworkload", "obs-wl"]);
    assert.match(d.stdout, /Warning\s+CrashLoopBackOff/);
    assert.match(d.stdout, /Normal\s+WorkloadRecovered/);
  });

  it("exposes every metric the dashboards and alert rules name", async () => {
    const body = await (await fetch(p.cp.metricsUrl)).text();
    const exposed = new Set([...body.matchAll(/^# TYPE (\S+) (\S+)$/gm)].flatMap((m) => {
      const [name, type] = [m[1] ?? "", m[2] ?? ""];
      return type === "histogram" ? [name, `${name}_bucket`, `${name}_sum`, `${name}_count`] : type === "summary" ? [name, `${name}_sum`, `${name}_count`] : [name];
    }));
    const wanted = new Map<string, string>();
    const dashboards = join(repoRoot, "manifests", "dashboards");
    for (const f of readdirSync(dashboards).filter((x) => x.endsWith(".json"))) {
      for (const n of metricNamesOfDashboard(JSON.parse(readFileSync(join(dashboards, f), "utf8")) as unknown)) wanted.set(n, f);
    }
    const alerts = join(repoRoot, "manifests", "alerts");
    for (const f of readdirSync(alerts).filter((x) => x.endsWith(".yaml"))) {
      for (const n of metricNamesOfRules(parseYaml(readFileSync(join(alerts, f), "utf8")) as unknown)) wanted.set(n, f);
    }
    assert.ok(wanted.size >= 15, `only ${wanted.size} metric names found in the dashboards and rules`);
    const missing = [...wanted].filter(([n]) => !exposed.has(n)).map(([n, f]) => `${n} (${f})`);
    assert.deepEqual(missing, [], "metrics named in dashboards or alert rules but not exposed");
    // The fleet gauges carry what the earlier tests produced.
    const fabric = body
      .split("\n")
      .filter((l) => l.startsWith("fabric_"))
      .join("\n");
    // No agent heartbeats here: the nodes have no published health yet.
    assert.match(fabric, /fabric_nodes\{cluster="obs",health="None",membership="Active"\} 2/);
    assert.match(fabric, /fabric_agentapi_enrollments_total\{outcome="TokenRevoked"\} 2/);
    assert.match(fabric, /fabric_agentapi_requests_total\{route="\/v1\/enroll",method="POST",code="201"\} 2/);
    assert.match(fabric, /fabric_node_certificate_expiry_timestamp_seconds\{cluster="obs",node="obs.n-ok"\} \d+/);
    assert.match(fabric, /fabric_role_coverage_ready_nodes\{cluster="obs",role="rdp-worker"\} 1/);
    assert.match(fabric, /fabric_events_recorded_total\{component="fabric-agentapi",type="Warning"\} \d+/);
  });

  it("answers /healthz, /livez and /readyz alike on the metrics port and the API port", async () => {
    const metricsBase = p.cp.metricsUrl.replace(/\/metrics$/, "");
    for (const path of ["/healthz", "/livez", "/readyz"]) {
      const m = await fetch(metricsBase + path);
      assert.equal(m.status, 200, `metrics port ${path}`);
      assert.equal(await m.text(), "ok");
      const a = await kubectl(p.kubeconfig, ["get", "--raw", path]);
      assert.equal(a.code, 0, a.stderr);
      assert.equal(a.stdout.trim(), "ok", `API port ${path}`);
    }
    assert.equal((await fetch(`${metricsBase}/nope`)).status, 404);
  });
});
