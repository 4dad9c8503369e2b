import assert from "node:assert/strict";
import type { FabricCluster, FabricNode, ServiceWorkload } from "../../lib/api/types.generated.js";
import { summarize, type StatusInput } from "../../cli/status/facts.js";

const NOW = Date.parse("2025-06-01T12:00:00Z");
const iso = (offsetMs: number) => new Date(NOW + offsetMs).toISOString();
const H = 3_600_000;

function node(name: string, ready: "True" | "False" | "Unknown", notBefore: string, notAfter: string): FabricNode {
  return {
    apiVersion: "accessfabric.io/v1alpha1",
    kind: "FabricNode",
    metadata: { name },
    spec: { cluster: "c", hostFingerprint: `sha256:${"a".repeat(64)}` },
    status: { identity: { notBefore, notAfter }, conditions: [{ type: "Ready", status: ready, reason: "R", message: "", lastTransitionTime: iso(0) }] },
  } as FabricNode;
}

function input(over: Partial<StatusInput>): StatusInput {
  return { clusters: [], nodes: [], joinRequests: [], roleAssignments: [], workloads: [], lease: null, audit: { checked: false, reason: "not checked" }, ...over };
}

describe("fabricctl status facts", () => {
  it("flags certificates with less than a tenth of their validity left, or within --cert-warning", () => {
    const nodes = [node("fresh", "True", iso(-4 * H), iso(20 * H)), node("late", "True", iso(-22 * H), iso(2 * H)), node("gone", "True", iso(-25 * H), iso(-1 * H))];
    const r = summarize(input({ nodes }), NOW);
    assert.deepEqual(r.certificates.expiring.map((e) => [e.node, e.expired]), [["gone", true], ["late", false]]);
    assert.deepEqual(r.risks.map((x) => x.kind), ["CertificatesExpired", "CertificatesExpiring"]);
    const wide = summarize(input({ nodes }), NOW, { certWarningMs: 21 * H });
    assert.deepEqual(wide.certificates.expiring.map((e) => e.node), ["gone", "late", "fresh"]);
  });

  it("marks workloads below desired or degraded, with the command to look closer", () => {
    const w = (name: string, desired: number, ready: number, degraded: number) => ({ metadata: { name }, spec: { cluster: "c", role: "entry-node" }, status: { desired, ready, degraded } }) as unknown as ServiceWorkload;
    const r = summarize(input({ workloads: [w("ok", 2, 2, 0), w("short", 3, 1, 0), w("sick", 2, 2, 1)] }), NOW);
    assert.deepEqual(r.workloads.map((x) => [x.name, x.ok]), [["ok", true], ["short", false], ["sick", false]]);
    assert.deepEqual(r.risks, [{ kind: "WorkloadsDegraded", message: "2 workloads below desired or degraded", command: "kubectl get serviceworkloads" }]);
  });

  it("reports role coverage below what is assigned, and an expired lease as no authority", () => {
    const cluster = { metadata: { name: "c" }, spec: {}, status: { roleCoverage: [{ role: "entry-node", assigned: 3, ready: 1 }, { role: "relay-node", assigned: 2, ready: 2 }] } } as unknown as FabricCluster;
    const lease = { namespace: "fabric-system", name: "fabric-controllers", holder: "a", renewTime: iso(-60_000), leaseDurationSeconds: 15, expired: true };
    const r = summarize(input({ clusters: [cluster], lease }), NOW);
    assert.deepEqual(r.roleCoverage.gaps.map((g) => [g.role, g.ready, g.assigned, g.problem]), [["entry-node", 1, 3, "2 of 3 assigned nodes are not healthy"]]);
    assert.deepEqual(r.risks.map((x) => x.kind), ["NoAuthority", "RoleCoverageGap"]);
  });
});
