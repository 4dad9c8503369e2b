/**
 * The FabricCluster controller's pure decisions
 * (controllers/fabriccluster/plan.ts): what the reconciler does with the
 * cluster's row (create and replace generate new keys; updateSpec keeps
 * them) and the status it publishes.
 */
import assert from "node:assert/strict";
import type { FabricClusterStatus } from "../../lib/api/types.generated.js";
import type { ClusterRow } from "../../lib/state/index.js";
import type { FabricClusterObject } from "../../controllers/objects.js";
import { Reasons, desiredClusterStatus, desiredNodeCounts, planClusterRow, type ClusterRowAction } from "../../controllers/fabriccluster/plan.js";
import { PlanClock, T0, at, clusterRow, conditionOf, deterministic, frozen, publishedCondition } from "../support/plan-fixtures.js";

function clusterObj(over: { generation?: number; status?: FabricClusterStatus; spec?: FabricClusterObject["spec"] } = {}): FabricClusterObject {
  return frozen({
    apiVersion: "accessfabric.io/v1alpha1",
    kind: "FabricCluster",
    metadata: { name: "east", uid: "uid-east-1", ...("generation" in over ? { generation: over.generation } : { generation: 2 }) },
    spec: over.spec ?? { displayName: "East" },
    ...(over.status !== undefined ? { status: over.status } : {}),
  });
}

describe("FabricCluster plan", () => {
  describe("planClusterRow", () => {
    const obj = { uid: "uid-east-1", generation: 1, spec: { displayName: "East" } };
    const cases: Array<{ name: string; obj: { uid: string; generation: number; spec: unknown }; row: ClusterRow | undefined; want: ClusterRowAction }> = [
      { name: "a cluster without a row gets keys and a row", obj, row: undefined, want: { kind: "create" } },
      { name: "a row of another uid (deleted and recreated unobserved) is replaced, naming the old uid", obj, row: clusterRow({ uid: "uid-east-0" }), want: { kind: "replace", oldUid: "uid-east-0" } },
      { name: "a replaced row is replaced even when generation and spec match", obj: { ...obj, generation: 1 }, row: clusterRow({ uid: "old", generation: 1, spec: obj.spec }), want: { kind: "replace", oldUid: "old" } },
      { name: "a new generation updates the spec and keeps the keys", obj: { ...obj, generation: 2 }, row: clusterRow(), want: { kind: "updateSpec" } },
      { name: "an older generation than the row's also updates (the object is the truth)", obj: { ...obj, generation: 1 }, row: clusterRow({ generation: 5 }), want: { kind: "updateSpec" } },
      { name: "a spec that differs at the same generation updates", obj: { ...obj, spec: { displayName: "East", snapshotLifetime: "1h" } }, row: clusterRow(), want: { kind: "updateSpec" } },
      { name: "a spec field removed at the same generation updates", obj: { ...obj, spec: {} }, row: clusterRow(), want: { kind: "updateSpec" } },
      { name: "the same uid, generation and spec need nothing", obj, row: clusterRow(), want: { kind: "none" } },
      { name: "spec key order does not count as a change", obj: { ...obj, spec: { b: 1, a: { y: 2, x: 1 } } }, row: clusterRow({ spec: { a: { x: 1, y: 2 }, b: 1 } }), want: { kind: "none" } },
      { name: "an undefined spec field counts as absent (JSON semantics)", obj: { ...obj, spec: { displayName: "East", region: undefined } }, row: clusterRow(), want: { kind: "none" } },
      { name: "nested spec changes are seen", obj: { ...obj, spec: { enrollmentPolicy: { maxTokenTTL: "2h" } } }, row: clusterRow({ spec: { enrollmentPolicy: { maxTokenTTL: "1h" } } }), want: { kind: "updateSpec" } },
    ];
    for (const c of cases) {
      it(c.name, () => {
        assert.deepEqual(deterministic(planClusterRow, frozen(c.obj), frozen(c.row)), c.want);
      });
    }
  });

  describe("desiredClusterStatus", () => {
    const row = frozen(clusterRow());
    const authority = frozen({ term: 4, holder: "controlplane-a" });
    const ready = (generation: number) => ({
      type: "Ready",
      status: "True" as const,
      reason: Reasons.KeysReady,
      message: "certificate authority and snapshot signing key are in place",
      observedGeneration: generation,
    });

    it("a first status carries the row's fingerprints, the authority and Ready True (KeysReady)", () => {
      const s = deterministic(desiredClusterStatus, clusterObj(), row, authority, T0);
      assert.deepEqual(s, {
        observedGeneration: 2,
        caFingerprint: row.caFingerprint,
        snapshotKeyId: "key-1",
        snapshotKeyFingerprint: row.snapshotKeyFingerprint,
        authorityTerm: 4,
        authorityHolder: "controlplane-a",
        conditions: [publishedCondition(ready(2), T0)],
      });
    });

    it("fields and conditions owned by other controllers are carried over unchanged", () => {
      const other = { type: "RolesCovered", status: "False" as const, reason: "NoHolder", message: "vpn-exit has no node", lastTransitionTime: "2029-12-31T00:00:00Z" };
      const current: FabricClusterStatus = {
        nodeCounts: { total: 3, healthy: 2 },
        roleCoverage: [{ role: "entry-node", assigned: 2, ready: 1 }],
        conditions: [other],
      };
      const s = deterministic(desiredClusterStatus, clusterObj({ status: current }), row, authority, T0);
      assert.deepEqual(s.nodeCounts, current.nodeCounts);
      assert.deepEqual(s.roleCoverage, current.roleCoverage);
      assert.deepEqual(s.conditions?.[0], other);
      assert.deepEqual(s.conditions?.[1], publishedCondition(ready(2), T0));
    });

    it("a new authority term and holder replace the published ones", () => {
      const current: FabricClusterStatus = { authorityTerm: 3, authorityHolder: "controlplane-b" };
      const s = desiredClusterStatus(clusterObj({ status: current }), row, { term: 5, holder: "controlplane-a" }, T0);
      assert.equal(s.authorityTerm, 5);
      assert.equal(s.authorityHolder, "controlplane-a");
    });

    it("new keys (a replaced row) replace the published fingerprints", () => {
      const current: FabricClusterStatus = { caFingerprint: `sha256:${"0".repeat(64)}`, snapshotKeyId: "key-0" };
      const s = desiredClusterStatus(clusterObj({ status: current }), clusterRow({ snapshotKeyId: "key-2" }), authority, T0);
      assert.equal(s.caFingerprint, row.caFingerprint);
      assert.equal(s.snapshotKeyId, "key-2");
    });

    it("an object without metadata.generation publishes generation 0", () => {
      const s = desiredClusterStatus(clusterObj({ generation: undefined }), row, authority, T0);
      assert.equal(s.observedGeneration, 0);
      assert.equal(conditionOf(s, "Ready").observedGeneration, 0);
    });

    it("republishing later keeps lastTransitionTime while Ready stays True, and moves observedGeneration", async () => {
      const clock = new PlanClock();
      const first = desiredClusterStatus(clusterObj({ generation: 1 }), row, authority, clock.date());
      await clock.advance(3_600_000);
      const second = desiredClusterStatus(clusterObj({ generation: 2, status: first }), row, authority, clock.date());
      assert.equal(conditionOf(second, "Ready").lastTransitionTime, "2030-01-01T00:00:00Z");
      assert.equal(conditionOf(second, "Ready").observedGeneration, 2);
      assert.equal(second.observedGeneration, 2);
    });

    it("a Ready that was False flips to True with lastTransitionTime now", () => {
      const current: FabricClusterStatus = { conditions: [{ type: "Ready", status: "False", reason: "Pending", message: "", lastTransitionTime: "2029-01-01T00:00:00Z" }] };
      const s = desiredClusterStatus(clusterObj({ status: current }), row, authority, at(90_000));
      assert.deepEqual(conditionOf(s, "Ready"), publishedCondition(ready(2), at(90_000)));
      assert.equal(s.conditions?.length, 1);
    });

    it("the same inputs give a status equal to the published one (no status write)", () => {
      const first = desiredClusterStatus(clusterObj(), row, authority, T0);
      const again = desiredClusterStatus(clusterObj({ status: first }), row, authority, at(60_000));
      assert.deepEqual(again, first);
    });

    it("the only Ready reason is KeysReady", () => {
      assert.deepEqual(Object.values(Reasons), ["KeysReady"]);
    });
  });

  describe("desiredNodeCounts", () => {
    const node = (membership: "Active" | "Disabled" | "Revoked" | undefined, health?: "Healthy" | "Degraded" | "Unreachable" | "Unknown") =>
      frozen({ spec: { cluster: "east", hostFingerprint: `sha256:${"ab".repeat(32)}`, ...(membership !== undefined ? { membership } : {}) }, ...(health !== undefined ? { status: { health } } : {}) });
    const cases = [
      { name: "a cluster without nodes counts zeros (the columns show 0, not blank)", nodes: [], want: { total: 0, healthy: 0, degraded: 0, unreachable: 0, disabled: 0, revoked: 0 } },
      {
        name: "active nodes count by health; disabled and revoked by membership; every node in total",
        nodes: [node("Active", "Healthy"), node(undefined, "Healthy"), node("Active", "Degraded"), node("Active", "Unreachable"), node("Disabled", "Healthy"), node("Revoked")],
        want: { total: 6, healthy: 2, degraded: 1, unreachable: 1, disabled: 1, revoked: 1 },
      },
      { name: "an active node of Unknown or unpublished health counts in total only", nodes: [node("Active", "Unknown"), node("Active")], want: { total: 2, healthy: 0, degraded: 0, unreachable: 0, disabled: 0, revoked: 0 } },
    ];
    for (const c of cases) {
      it(c.name, () => {
        assert.deepEqual(deterministic(desiredNodeCounts, frozen(c.nodes)), c.want);
      });
    }
  });
});
