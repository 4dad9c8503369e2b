/**
 * The ServiceWorkload controller's pure decisions
 * (controllers/serviceworkload/plan.ts): spec checks the schema cannot
 * express, the snapshot form of a workload (what every target node's agent
 * runs), the target nodes, and the status summarised from agents' reports.
 * The reconciler places no node while the spec is invalid or the cluster is
 * missing, and polls every 5 s while the status is not all ready.
 */
import assert from "node:assert/strict";
import type { ServiceWorkloadSpec, ServiceWorkloadStatus } from "../../lib/api/types.generated.js";
import type { NodeRoleRow, WorkloadReportRow } from "../../lib/state/index.js";
import {
  MAX_STATUS_NODES,
  NODE_NOT_READY_MESSAGE,
  WorkloadReasons,
  desiredWorkloadStatus,
  reportReady,
  snapshotWorkloadOf,
  targetNodes,
  validateWorkloadSpec,
} from "../../controllers/serviceworkload/plan.js";
import { PlanClock, T0, at, conditionOf, deterministic, frozen, frozenMap, holder, publishedCondition, reportRow } from "../support/plan-fixtures.js";

function spec(over: Partial<ServiceWorkloadSpec> = {}): ServiceWorkloadSpec {
  return frozen({ cluster: "east", role: "entry-node", command: ["/usr/bin/web"], ...over });
}

const reports = (...rows: WorkloadReportRow[]) => frozenMap(rows.map((r) => [r.node, r] as const));

describe("ServiceWorkload plan", () => {
  describe("validateWorkloadSpec", () => {
    const cases: Array<{ name: string; spec: ServiceWorkloadSpec; want: string[] }> = [
      { name: "a Native workload with a command is valid", spec: spec(), want: [] },
      { name: "the runtime defaults to Native", spec: spec({ command: undefined }), want: ["spec.command: required for the Native runtime"] },
      { name: "a Native workload without a command is invalid", spec: spec({ runtime: "Native", command: [] }), want: ["spec.command: required for the Native runtime"] },
      { name: "a Native workload whose command starts with an empty string is invalid", spec: spec({ command: ["", "--flag"] }), want: ["spec.command: required for the Native runtime"] },
      { name: "a Native workload with an image is invalid", spec: spec({ image: "nginx:1" }), want: ["spec.image: only for the Docker and Podman runtimes"] },
      { name: "a Native workload with an empty image is valid", spec: spec({ image: "" }), want: [] },
      { name: "a Docker workload with an image is valid, a command optional", spec: spec({ runtime: "Docker", image: "nginx:1", command: undefined }), want: [] },
      { name: "a Docker workload without an image is invalid", spec: spec({ runtime: "Docker" }), want: ["spec.image: required for the Docker runtime"] },
      { name: "a Podman workload with a blank image is invalid", spec: spec({ runtime: "Podman", image: "  " }), want: ["spec.image: required for the Podman runtime"] },
      { name: "a health probe with exactly one kind is valid", spec: spec({ healthProbe: { tcp: { port: 80 } } }), want: [] },
      { name: "a health probe with no kind is invalid", spec: spec({ healthProbe: { periodSeconds: 5 } }), want: ["spec.healthProbe: exactly one of exec, http, tcp"] },
      {
        name: "a health probe with two kinds is invalid",
        spec: spec({ healthProbe: { exec: { command: ["true"] }, http: { port: 80 } } }),
        want: ["spec.healthProbe: exactly one of exec, http, tcp"],
      },
      {
        name: "every problem is reported, in order",
        spec: spec({ command: [], image: "x", healthProbe: { exec: { command: ["true"] }, http: { port: 1 }, tcp: { port: 2 } } }),
        want: ["spec.command: required for the Native runtime", "spec.image: only for the Docker and Podman runtimes", "spec.healthProbe: exactly one of exec, http, tcp"],
      },
    ];
    for (const c of cases) {
      it(c.name, () => {
        assert.deepEqual(deterministic(validateWorkloadSpec, c.spec), c.want);
      });
    }
  });

  describe("snapshotWorkloadOf", () => {
    const base = { name: "web", generation: 3, role: "entry-node", command: ["/usr/bin/web"], args: [], env: {}, restartPolicy: "Always" };
    const timing = { periodSeconds: 10, timeoutSeconds: 1, failureThreshold: 3 };
    const cases: Array<{ name: string; spec: ServiceWorkloadSpec; want: Record<string, unknown> }> = [
      { name: "a minimal Native workload runs natively with defaults (restartPolicy Always)", spec: spec(), want: { ...base, runtime: "native" } },
      {
        name: "args, env and restartPolicy are carried; an env entry without value is empty",
        spec: spec({ args: ["-v"], env: [{ name: "A", value: "1" }, { name: "B" }], restartPolicy: "OnFailure" }),
        want: { ...base, runtime: "native", args: ["-v"], env: { A: "1", B: "" }, restartPolicy: "OnFailure" },
      },
      { name: "a repeated env name keeps the last value", spec: spec({ env: [{ name: "A", value: "1" }, { name: "A", value: "2" }] }), want: { ...base, runtime: "native", env: { A: "2" } } },
      {
        name: "a Docker workload is a docker container with its image",
        spec: spec({ runtime: "Docker", image: "nginx:1", command: undefined }),
        want: { ...base, command: [], runtime: "container", containerEngine: "docker", image: "nginx:1" },
      },
      {
        name: "a Podman workload is a podman container with its image",
        spec: spec({ runtime: "Podman", image: "nginx:1" }),
        want: { ...base, runtime: "container", containerEngine: "podman", image: "nginx:1" },
      },
      {
        name: "an exec probe is carried with default timing",
        spec: spec({ healthProbe: { exec: { command: ["/bin/check"] } } }),
        want: { ...base, runtime: "native", healthProbe: { kind: "exec", command: ["/bin/check"], ...timing } },
      },
      {
        name: "an http probe targets loopback with the default scheme and path /healthz",
        spec: spec({ healthProbe: { http: { port: 8080 } } }),
        want: { ...base, runtime: "native", healthProbe: { kind: "http", url: "http://127.0.0.1:8080/healthz", ...timing } },
      },
      {
        name: "an http probe's scheme is lowercased and a path without a slash gets one",
        spec: spec({ healthProbe: { http: { port: 8443, scheme: "HTTPS", path: "ready" }, periodSeconds: 5, timeoutSeconds: 2, failureThreshold: 1 } }),
        want: { ...base, runtime: "native", healthProbe: { kind: "http", url: "https://127.0.0.1:8443/ready", periodSeconds: 5, timeoutSeconds: 2, failureThreshold: 1 } },
      },
      {
        name: "a tcp probe is carried with its port",
        spec: spec({ healthProbe: { tcp: { port: 5432 } } }),
        want: { ...base, runtime: "native", healthProbe: { kind: "tcp", port: 5432, ...timing } },
      },
      {
        name: "a probe without a kind is not carried",
        spec: spec({ healthProbe: { periodSeconds: 5 } }),
        want: { ...base, runtime: "native" },
      },
      {
        name: "workingDir and a positive initialDelaySeconds are carried",
        spec: spec({ workingDir: "/srv", healthProbe: { tcp: { port: 1 }, initialDelaySeconds: 15 } }),
        want: { ...base, runtime: "native", workingDir: "/srv", initialDelaySeconds: 15, healthProbe: { kind: "tcp", port: 1, ...timing } },
      },
      {
        name: "an empty workingDir and a zero initialDelaySeconds are left out",
        spec: spec({ workingDir: "", healthProbe: { tcp: { port: 1 }, initialDelaySeconds: 0 } }),
        want: { ...base, runtime: "native", healthProbe: { kind: "tcp", port: 1, ...timing } },
      },
    ];
    for (const c of cases) {
      it(c.name, () => {
        assert.deepEqual(deterministic(snapshotWorkloadOf, "web", 3, c.spec), c.want);
      });
    }

    it("the snapshot form shares no array with the (cached) spec", () => {
      const s = spec({ args: ["-v"], healthProbe: { exec: { command: ["/bin/check"] } } });
      const w = snapshotWorkloadOf("web", 1, s);
      assert.notEqual(w.command, s.command);
      assert.notEqual(w.args, s.args);
      assert.ok(w.healthProbe?.kind === "exec" && w.healthProbe.command !== s.healthProbe?.exec?.command);
    });
  });

  describe("targetNodes", () => {
    const all = () => true;
    const cases: Array<{ name: string; holders: NodeRoleRow[]; organization: string; matches: (n: string) => boolean; want: string[] }> = [
      { name: "no holders give no nodes", holders: [], organization: "", matches: all, want: [] },
      { name: "a platform workload runs on every holder, sorted", holders: [holder("b"), holder("a", "acme"), holder("c")], organization: "", matches: all, want: ["a", "b", "c"] },
      { name: "an organization's workload runs only on that organization's holders", holders: [holder("b"), holder("a", "acme"), holder("c", "other")], organization: "acme", matches: all, want: ["a"] },
      { name: "the selector narrows the holders", holders: [holder("a"), holder("b"), holder("c")], organization: "", matches: (n) => n !== "b", want: ["a", "c"] },
      { name: "the selector never widens: a matching non-holder is not a target", holders: [holder("a")], organization: "", matches: (n) => n === "z" || n === "a", want: ["a"] },
      { name: "a node holding the role through two assignments is one target", holders: [holder("a"), holder("a", "", { assignment: "ra-2" })], organization: "", matches: all, want: ["a"] },
    ];
    for (const c of cases) {
      it(c.name, () => {
        assert.deepEqual(deterministic(targetNodes, frozen(c.holders), c.organization, c.matches), c.want);
      });
    }
  });

  describe("reportReady", () => {
    const cases: Array<{ name: string; report: WorkloadReportRow | undefined; want: boolean }> = [
      { name: "no report is not ready", report: undefined, want: false },
      { name: "a Running, ready report of this generation is ready", report: reportRow("a"), want: true },
      { name: "a report of a newer generation is ready", report: reportRow("a", { observedGeneration: 2 }), want: true },
      { name: "a report of an older generation is not ready", report: reportRow("a", { observedGeneration: 0 }), want: false },
      { name: "a Running report failing its probe is not ready", report: reportRow("a", { ready: false }), want: false },
      { name: "a ready flag outside Running does not count", report: reportRow("a", { state: "Starting" }), want: false },
    ];
    for (const c of cases) {
      it(c.name, () => {
        assert.equal(deterministic(reportReady, frozen(c.report), 1), c.want);
      });
    }
  });

  describe("desiredWorkloadStatus", () => {
    const ready = (status: "True" | "False", reason: string, message: string) => publishedCondition({ type: "Ready", status, reason, message, observedGeneration: 1 }, T0);
    const cases: Array<{
      name: string;
      nodes: string[];
      reports: ReadonlyMap<string, WorkloadReportRow>;
      problem?: { reason: "InvalidSpec" | "ClusterNotFound"; message: string };
      /** Nodes whose FabricNode is not Ready. */
      notReady?: string[];
      want: ServiceWorkloadStatus;
    }> = [
      {
        name: "a running, ready instance on a node that is not Ready (Ready=Unknown) does not count as ready (NodesNotReady)",
        nodes: ["a"],
        reports: reports(reportRow("a")),
        notReady: ["a"],
        want: {
          observedGeneration: 1,
          desired: 1,
          ready: 0,
          degraded: 0,
          nodes: [{ node: "a", state: "Running", ready: false, restartCount: 0, message: NODE_NOT_READY_MESSAGE }],
          conditions: [ready("False", WorkloadReasons.NodesNotReady, "1 of 1 node(s) not Ready; 0 ready")],
        },
      },
      {
        name: "instances on Ready nodes still count when another node is not Ready",
        nodes: ["a", "b", "c"],
        reports: reports(reportRow("a"), reportRow("b"), reportRow("c", { state: "Degraded", ready: false, reason: "CrashLoopBackOff", message: "" })),
        notReady: ["b", "c"],
        want: {
          observedGeneration: 1,
          desired: 3,
          ready: 1,
          degraded: 1,
          nodes: [
            { node: "a", state: "Running", ready: true, restartCount: 0 },
            { node: "b", state: "Running", ready: false, restartCount: 0, message: NODE_NOT_READY_MESSAGE },
            { node: "c", state: "Degraded", ready: false, restartCount: 0, message: `${NODE_NOT_READY_MESSAGE}: CrashLoopBackOff` },
          ],
          conditions: [ready("False", WorkloadReasons.Degraded, "1 of 3 node(s) degraded; 1 ready")],
        },
      },
      {
        name: "a node that is not Ready and never reported is Pending, not ready (NodesNotReady)",
        nodes: ["a"],
        reports: reports(),
        notReady: ["a"],
        want: {
          observedGeneration: 1,
          desired: 1,
          ready: 0,
          degraded: 0,
          nodes: [{ node: "a", state: "Pending", ready: false, message: NODE_NOT_READY_MESSAGE }],
          conditions: [ready("False", WorkloadReasons.NodesNotReady, "1 of 1 node(s) not Ready; 0 ready")],
        },
      },
      {
        name: "ready on every node is Ready True (AllReady)",
        nodes: ["a", "b"],
        reports: reports(reportRow("a"), reportRow("b", { restartCount: 2 })),
        want: {
          observedGeneration: 1,
          desired: 2,
          ready: 2,
          degraded: 0,
          nodes: [
            { node: "a", state: "Running", ready: true, restartCount: 0 },
            { node: "b", state: "Running", ready: true, restartCount: 2 },
          ],
          conditions: [ready("True", WorkloadReasons.AllReady, "ready on 2 of 2 node(s)")],
        },
      },
      {
        name: "a node not reporting yet is Pending and the workload Progressing",
        nodes: ["a", "b"],
        reports: reports(reportRow("a")),
        want: {
          observedGeneration: 1,
          desired: 2,
          ready: 1,
          degraded: 0,
          nodes: [
            { node: "a", state: "Running", ready: true, restartCount: 0 },
            { node: "b", state: "Pending", ready: false },
          ],
          conditions: [ready("False", WorkloadReasons.Progressing, "ready on 1 of 2 node(s)")],
        },
      },
      {
        name: "Degraded, Failed and Unsupported reports count as degraded (Degraded), with reason and message",
        nodes: ["a", "b", "c", "d"],
        reports: reports(
          reportRow("a", { state: "Degraded", ready: false, reason: "CrashLoopBackOff", message: "exit 1", restartCount: 5 }),
          reportRow("b", { state: "Failed", ready: false, reason: "", message: "no such file" }),
          reportRow("c", { state: "Unsupported", ready: false, reason: "NoDocker", message: "" }),
          reportRow("d"),
        ),
        want: {
          observedGeneration: 1,
          desired: 4,
          ready: 1,
          degraded: 3,
          nodes: [
            { node: "a", state: "Degraded", ready: false, restartCount: 5, message: "CrashLoopBackOff: exit 1" },
            { node: "b", state: "Failed", ready: false, restartCount: 0, message: "no such file" },
            { node: "c", state: "Unsupported", ready: false, restartCount: 0, message: "NoDocker" },
            { node: "d", state: "Running", ready: true, restartCount: 0 },
          ],
          conditions: [ready("False", WorkloadReasons.Degraded, "3 of 4 node(s) degraded; 1 ready")],
        },
      },
      {
        name: "Starting and Stopped reports are progressing, not degraded",
        nodes: ["a", "b"],
        reports: reports(reportRow("a", { state: "Starting", ready: false }), reportRow("b", { state: "Stopped", ready: false })),
        want: {
          observedGeneration: 1,
          desired: 2,
          ready: 0,
          degraded: 0,
          nodes: [
            { node: "a", state: "Starting", ready: false, restartCount: 0 },
            { node: "b", state: "Stopped", ready: false, restartCount: 0 },
          ],
          conditions: [ready("False", "Progressing", "ready on 0 of 2 node(s)")],
        },
      },
      {
        name: "a report of the previous generation is not ready yet (rollout in progress)",
        nodes: ["a"],
        reports: reports(reportRow("a", { observedGeneration: 0 })),
        want: {
          observedGeneration: 1,
          desired: 1,
          ready: 0,
          degraded: 0,
          nodes: [{ node: "a", state: "Running", ready: false, restartCount: 0 }],
          conditions: [ready("False", "Progressing", "ready on 0 of 1 node(s)")],
        },
      },
      {
        name: "no target node is Ready False (NoNodes) without per-node detail",
        nodes: [],
        reports: reports(reportRow("gone")),
        want: { observedGeneration: 1, desired: 0, ready: 0, degraded: 0, conditions: [ready("False", WorkloadReasons.NoNodes, "no active node holds the role (or matches the selector)")] },
      },
      {
        name: "an invalid spec is Ready False (InvalidSpec) with the problems",
        nodes: [],
        reports: reports(),
        problem: { reason: "InvalidSpec", message: "spec.command: required for the Native runtime" },
        want: { observedGeneration: 1, desired: 0, ready: 0, degraded: 0, conditions: [ready("False", WorkloadReasons.InvalidSpec, "spec.command: required for the Native runtime")] },
      },
      {
        name: "a missing cluster is Ready False (ClusterNotFound)",
        nodes: [],
        reports: reports(),
        problem: { reason: "ClusterNotFound", message: "FabricCluster east does not exist" },
        want: { observedGeneration: 1, desired: 0, ready: 0, degraded: 0, conditions: [ready("False", WorkloadReasons.ClusterNotFound, "FabricCluster east does not exist")] },
      },
    ];
    for (const c of cases) {
      it(c.name, () => {
        assert.deepEqual(deterministic(desiredWorkloadStatus, undefined, 1, frozen(c.nodes), c.reports, frozen(c.problem), T0, new Set(c.notReady ?? [])), c.want);
      });
    }

    const sizes = [
      { name: "exactly 256 nodes are all listed", count: MAX_STATUS_NODES, listed: 256 },
      { name: "257 nodes list the first 256 but count all", count: MAX_STATUS_NODES + 1, listed: 256 },
      { name: "1,000 nodes list the first 256 but count all", count: 1000, listed: 256 },
    ];
    for (const c of sizes) {
      it(c.name, () => {
        const nodes = Array.from({ length: c.count }, (_, i) => `n${String(i).padStart(4, "0")}`);
        const last = nodes[nodes.length - 1] ?? "";
        const s = desiredWorkloadStatus(undefined, 1, frozen(nodes), reports(...nodes.map((n) => reportRow(n)), reportRow(last, { state: "Failed", ready: false })), undefined, T0);
        assert.equal(s.nodes?.length, c.listed);
        assert.equal(s.nodes?.[0]?.node, "n0000");
        assert.equal(s.nodes?.[c.listed - 1]?.node, nodes[c.listed - 1]);
        assert.equal(s.desired, c.count);
        assert.equal(s.ready, c.count - 1);
        assert.equal(s.degraded, 1, "a node beyond the listed ones still counts");
        assert.equal(conditionOf(s, "Ready").reason, "Degraded");
      });
    }

    it("a node's message is cut at 1,024 characters", () => {
      const s = desiredWorkloadStatus(undefined, 1, ["a"], reports(reportRow("a", { state: "Failed", ready: false, reason: "R", message: "x".repeat(2000) })), undefined, T0);
      assert.equal(s.nodes?.[0]?.message?.length, 1024);
      assert.ok(s.nodes?.[0]?.message?.startsWith("R: xxx"));
    });

    it("a workload that loses its nodes drops the published per-node detail, keeping fields owned elsewhere", () => {
      const before = desiredWorkloadStatus(undefined, 1, ["a"], reports(reportRow("a")), undefined, T0);
      const after = deterministic(desiredWorkloadStatus, frozen({ ...before, extra: "kept" } as ServiceWorkloadStatus), 1, [], reports(), undefined, at(1000));
      assert.equal("nodes" in after, false);
      assert.equal((after as Record<string, unknown>).extra, "kept");
    });

    it("Ready moves lastTransitionTime only when it flips", async () => {
      const clock = new PlanClock();
      const starting = desiredWorkloadStatus(undefined, 1, ["a"], reports(), undefined, clock.date());
      await clock.advance(5000);
      const failing = desiredWorkloadStatus(frozen(starting), 1, ["a"], reports(reportRow("a", { state: "Failed", ready: false })), undefined, clock.date());
      assert.equal(conditionOf(failing, "Ready").lastTransitionTime, "2030-01-01T00:00:00Z");
      await clock.advance(5000);
      const running = desiredWorkloadStatus(frozen(failing), 1, ["a"], reports(reportRow("a")), undefined, clock.date());
      assert.equal(conditionOf(running, "Ready").lastTransitionTime, "2030-01-01T00:00:10Z");
    });

    it("the same reports again give the published status back (no status write)", () => {
      const first = desiredWorkloadStatus(undefined, 1, ["a", "b"], reports(reportRow("a")), undefined, T0);
      assert.deepEqual(desiredWorkloadStatus(first, 1, ["a", "b"], reports(reportRow("a")), undefined, at(5000)), first);
    });
  });

  it("every Ready reason is produced by a case above", () => {
    assert.deepEqual(Object.values(WorkloadReasons).sort(), ["AllReady", "ClusterNotFound", "Degraded", "InvalidSpec", "NoNodes", "NodesNotReady", "Progressing"]);
    assert.equal(MAX_STATUS_NODES, 256);
  });
});
