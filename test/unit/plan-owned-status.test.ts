/**
 * The status fields a kind's own reconciler publishes from facts other kinds
 * store: FabricNode status.assignedRoles and status.workloads, FabricCluster
 * status.roleCoverage (each kind's status has one writer).
 */
import assert from "node:assert/strict";
import { desiredRoleCoverage } from "../../controllers/fabriccluster/plan.js";
import { assignedRolesOf, nodeWorkloadsOf } from "../../controllers/fabricnode/plan.js";
import type { WorkloadReportRow } from "../../lib/state/workloads.js";
import { T0, deterministic, frozen } from "../support/plan-fixtures.js";

function report(over: Partial<WorkloadReportRow> = {}): WorkloadReportRow {
  return { node: "east.web-1", workload: "web", state: "Running", ready: true, reason: "", message: "", restartCount: 0, observedGeneration: 1, reportedAt: T0, ...over };
}

describe("status published by its own kind", () => {
  describe("assignedRolesOf (FabricNode status.assignedRoles)", () => {
    const cases: Array<{ name: string; grants: Array<{ role: string }>; want: string[] | undefined }> = [
      { name: "no grant removes the field", grants: [], want: undefined },
      { name: "one grant gives its role", grants: [{ role: "entry-node" }], want: ["entry-node"] },
      { name: "roles are sorted and each listed once", grants: [{ role: "vpn-exit" }, { role: "entry-node" }, { role: "vpn-exit" }], want: ["entry-node", "vpn-exit"] },
    ];
    for (const c of cases) {
      it(c.name, () => assert.deepEqual(deterministic(assignedRolesOf, frozen(c.grants)), c.want));
    }
  });

  describe("nodeWorkloadsOf (FabricNode status.workloads)", () => {
    it("no report removes the field", () => assert.equal(nodeWorkloadsOf([]), undefined));

    it("a report without reason or message gives name, state and restarts only", () => {
      assert.deepEqual(deterministic(nodeWorkloadsOf, frozen([report({ restartCount: 2 })])), [{ name: "web", state: "Running", restartCount: 2 }]);
    });

    it("reason and message are joined, either alone stands alone", () => {
      const out = nodeWorkloadsOf(frozen([report({ workload: "a", reason: "CrashLoop", message: "exit 1" }), report({ workload: "b", reason: "CrashLoop" }), report({ workload: "c", message: "probe failed" })]));
      assert.deepEqual(out?.map((w) => w.message), ["CrashLoop: exit 1", "CrashLoop", "probe failed"]);
    });

    it("a long message is cut to 1024 characters", () => {
      const out = nodeWorkloadsOf(frozen([report({ state: "Failed", message: "x".repeat(5000) })]));
      assert.equal(out?.[0]?.message?.length, 1024);
    });

    it("keeps the order of the reports", () => {
      const out = nodeWorkloadsOf(frozen([report({ workload: "z" }), report({ workload: "a" })]));
      assert.deepEqual(out?.map((w) => w.name), ["z", "a"]);
    });
  });

  describe("desiredRoleCoverage (FabricCluster status.roleCoverage)", () => {
    it("no role held anywhere removes the field", () => assert.equal(desiredRoleCoverage([]), undefined));

    it("is sorted by role and carries assigned and ready counts only", () => {
      const rows = frozen([
        { role: "vpn-exit", assigned: 2, ready: 0, extra: "ignored" },
        { role: "entry-node", assigned: 3, ready: 3 },
      ]);
      assert.deepEqual(deterministic(desiredRoleCoverage, rows), [
        { role: "entry-node", assigned: 3, ready: 3 },
        { role: "vpn-exit", assigned: 2, ready: 0 },
      ]);
    });
  });
});
