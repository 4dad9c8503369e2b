/**
 * The NodeGroup controller's pure decisions (controllers/nodegroup/plan.ts):
 * tree validation over the informer caches, and the status it yields. The
 * reconciler stores verdict.ready and verdict.reason in node_groups and
 * publishes Ready, status.path (valid groups only) and status.childCount.
 */
import assert from "node:assert/strict";
import type { NodeGroupStatus } from "../../lib/api/types.generated.js";
import type { NodeGroupObject } from "../../controllers/objects.js";
import { Reasons, desiredGroupStatus, memberCount, validateGroup, viewOf, type GroupView, type TreeVerdict } from "../../controllers/nodegroup/plan.js";
import { PlanClock, T0, at, conditionOf, deterministic, frozen, publishedCondition } from "../support/plan-fixtures.js";

/** A forest of groups: "name" -> [cluster, parent?]. */
function forest(groups: Record<string, [string, string?]>): (name: string) => GroupView | undefined {
  const views = frozen(new Map(Object.entries(groups).map(([name, [cluster, parent]]) => [name, { name, cluster, ...(parent !== undefined ? { parent } : {}) }])));
  return (name) => views.get(name);
}

const clusters = (...names: string[]) => {
  const set = new Set(names);
  return (c: string) => set.has(c);
};

function groupObj(over: { name?: string; generation?: number; parent?: string; status?: NodeGroupStatus } = {}): NodeGroupObject {
  return frozen({
    apiVersion: "accessfabric.io/v1alpha1",
    kind: "NodeGroup",
    metadata: { ...("name" in over ? { name: over.name } : { name: "web" }), ...("generation" in over ? { generation: over.generation } : { generation: 3 }) },
    spec: { cluster: "east", ...(over.parent !== undefined ? { parent: over.parent } : {}) },
    ...(over.status !== undefined ? { status: over.status } : {}),
  });
}

describe("NodeGroup plan", () => {
  describe("validateGroup", () => {
    const cases: Array<{ name: string; group: string; groups: Record<string, [string, string?]>; clusters: string[]; want: TreeVerdict }> = [
      {
        name: "a top-level group of an existing cluster is valid, its path its own name",
        group: "eu",
        groups: { eu: ["east"] },
        clusters: ["east"],
        want: { ready: true, reason: Reasons.Valid, message: "group tree is valid", path: "eu" },
      },
      {
        name: "an empty parent means top-level",
        group: "eu",
        groups: { eu: ["east", ""] },
        clusters: ["east"],
        want: { ready: true, reason: "Valid", message: "group tree is valid", path: "eu" },
      },
      {
        name: "a nested group is valid with its root-to-group path",
        group: "web",
        groups: { eu: ["east"], paris: ["east", "eu"], web: ["east", "paris"] },
        clusters: ["east"],
        want: { ready: true, reason: "Valid", message: "group tree is valid", path: "eu/paris/web" },
      },
      {
        name: "a group whose cluster does not exist is refused with ClusterNotFound",
        group: "eu",
        groups: { eu: ["west"] },
        clusters: ["east"],
        want: { ready: false, reason: Reasons.ClusterNotFound, message: "FabricCluster west does not exist" },
      },
      {
        name: "a missing cluster is reported before a missing parent",
        group: "web",
        groups: { web: ["west", "nowhere"] },
        clusters: [],
        want: { ready: false, reason: "ClusterNotFound", message: "FabricCluster west does not exist" },
      },
      {
        name: "a group whose parent does not exist is refused with ParentNotFound",
        group: "web",
        groups: { web: ["east", "paris"] },
        clusters: ["east"],
        want: { ready: false, reason: Reasons.ParentNotFound, message: "parent NodeGroup paris does not exist" },
      },
      {
        name: "a group not in the cache at all is refused with ParentNotFound",
        group: "ghost",
        groups: {},
        clusters: ["east"],
        want: { ready: false, reason: "ParentNotFound", message: "group ghost not found" },
      },
      {
        name: "a group whose parent is in another cluster is refused with ParentInOtherCluster",
        group: "web",
        groups: { web: ["east", "paris"], paris: ["west"] },
        clusters: ["east", "west"],
        want: { ready: false, reason: Reasons.ParentInOtherCluster, message: "parent NodeGroup paris belongs to cluster west, not east" },
      },
      {
        name: "a group that is its own parent is a cycle",
        group: "web",
        groups: { web: ["east", "web"] },
        clusters: ["east"],
        want: { ready: false, reason: Reasons.CycleDetected, message: "parent chain returns to web: web -> web" },
      },
      {
        name: "a parent chain that returns to the group is a cycle, with the chain in the message",
        group: "a",
        groups: { a: ["east", "b"], b: ["east", "c"], c: ["east", "a"] },
        clusters: ["east"],
        want: { ready: false, reason: "CycleDetected", message: "parent chain returns to a: a -> b -> c -> a" },
      },
      {
        name: "a group below a cycle it is not part of is ParentNotReady",
        group: "leaf",
        groups: { leaf: ["east", "a"], a: ["east", "b"], b: ["east", "a"] },
        clusters: ["east"],
        want: { ready: false, reason: Reasons.ParentNotReady, message: "ancestor a is part of a cycle" },
      },
      {
        name: "a group below an ancestor with a missing parent is ParentNotReady, naming that ancestor",
        group: "web",
        groups: { web: ["east", "paris"], paris: ["east", "eu"] },
        clusters: ["east"],
        want: { ready: false, reason: "ParentNotReady", message: "ancestor paris has a missing parent eu" },
      },
      {
        name: "a group below an ancestor in another cluster is ParentNotReady",
        group: "web",
        groups: { web: ["east", "paris"], paris: ["east", "eu"], eu: ["west"] },
        clusters: ["east", "west"],
        want: { ready: false, reason: "ParentNotReady", message: "ancestor eu belongs to cluster west, not east" },
      },
      {
        name: "a group in another cluster than a sibling chain is unaffected by it",
        group: "web",
        groups: { web: ["west", "eu"], eu: ["west"], paris: ["east", "eu"] },
        clusters: ["east", "west"],
        want: { ready: true, reason: "Valid", message: "group tree is valid", path: "eu/web" },
      },
    ];
    for (const c of cases) {
      it(c.name, () => {
        assert.deepEqual(deterministic(validateGroup, c.group, forest(c.groups), clusters(...c.clusters)), c.want);
      });
    }

    it("a deep chain of 500 groups is valid and its path lists every one", () => {
      const groups: Record<string, [string, string?]> = { g0: ["east"] };
      for (let i = 1; i < 500; i++) groups[`g${i}`] = ["east", `g${i - 1}`];
      const v = validateGroup("g499", forest(groups), clusters("east"));
      assert.equal(v.ready, true);
      assert.equal(v.path?.split("/").length, 500);
      assert.ok(v.path?.startsWith("g0/g1/") && v.path.endsWith("/g498/g499"));
    });

    it("looks each group up at most once per walk (no re-reads of the cache in a loop)", () => {
      const look = forest({ a: ["east", "b"], b: ["east", "c"], c: ["east", "a"] });
      const seen: string[] = [];
      validateGroup("a", (n) => (seen.push(n), look(n)), clusters("east"));
      assert.deepEqual(seen, ["a", "b", "c"]);
    });
  });

  describe("viewOf", () => {
    it("a group's view is its name, cluster and parent", () => {
      assert.deepEqual(deterministic(viewOf, groupObj({ parent: "eu" })), { name: "web", cluster: "east", parent: "eu" });
    });

    it("a top-level group's view has no parent", () => {
      assert.deepEqual(viewOf(groupObj()), { name: "web", cluster: "east", parent: undefined });
    });

    it("a group without a name has no view", () => {
      assert.equal(viewOf(groupObj({ name: undefined })), undefined);
    });
  });

  describe("desiredGroupStatus", () => {
    const valid: TreeVerdict = frozen({ ready: true, reason: "Valid", message: "group tree is valid", path: "eu/web" });
    const refused: TreeVerdict = frozen({ ready: false, reason: "ParentNotFound", message: "parent NodeGroup eu does not exist" });

    it("a valid group publishes Ready True (Valid), its path and child count", () => {
      const s = deterministic(desiredGroupStatus, groupObj(), valid, 2, T0);
      assert.deepEqual(s, {
        observedGeneration: 3,
        childCount: 2,
        path: "eu/web",
        conditions: [publishedCondition({ type: "Ready", status: "True", reason: "Valid", message: "group tree is valid", observedGeneration: 3 }, T0)],
      });
    });

    it("an invalid group publishes Ready False with the verdict's reason and message, and no path", () => {
      const s = deterministic(desiredGroupStatus, groupObj(), refused, 0, T0);
      assert.deepEqual(s, {
        observedGeneration: 3,
        childCount: 0,
        conditions: [publishedCondition({ type: "Ready", status: "False", reason: "ParentNotFound", message: "parent NodeGroup eu does not exist", observedGeneration: 3 }, T0)],
      });
    });

    it("a group that becomes invalid loses its published path", () => {
      const before = desiredGroupStatus(groupObj(), valid, 1, T0);
      const after = desiredGroupStatus(groupObj({ status: before }), refused, 1, at(1000));
      assert.equal("path" in after, false);
      assert.equal(before.path, "eu/web");
    });

    it("a flip from valid to invalid moves lastTransitionTime; a new message alone does not", async () => {
      const clock = new PlanClock();
      const before = desiredGroupStatus(groupObj(), valid, 1, clock.date());
      await clock.advance(60_000);
      const flipped = desiredGroupStatus(groupObj({ status: before }), refused, 1, clock.date());
      assert.equal(conditionOf(flipped, "Ready").lastTransitionTime, "2030-01-01T00:01:00Z");
      await clock.advance(60_000);
      const other = desiredGroupStatus(groupObj({ status: flipped }), { ready: false, reason: "CycleDetected", message: "x" }, 1, clock.date());
      assert.equal(conditionOf(other, "Ready").lastTransitionTime, "2030-01-01T00:01:00Z");
      assert.equal(conditionOf(other, "Ready").reason, "CycleDetected");
    });

    it("fields owned elsewhere (memberCount) and other conditions are carried over", () => {
      const other = { type: "Synced", status: "True" as const, reason: "Done", message: "", lastTransitionTime: "2029-01-01T00:00:00Z" };
      const s = desiredGroupStatus(groupObj({ status: { memberCount: 7, conditions: [other] } }), valid, 0, T0);
      assert.equal(s.memberCount, 7);
      assert.deepEqual(s.conditions?.[0], other);
      assert.equal(conditionOf(s, "Ready").status, "True");
    });

    it("a group without metadata.generation publishes generation 0", () => {
      assert.equal(desiredGroupStatus(groupObj({ generation: undefined }), valid, 0, T0).observedGeneration, 0);
    });

    it("the same verdict again gives the published status back (no status write)", () => {
      const first = desiredGroupStatus(groupObj(), valid, 4, T0);
      assert.deepEqual(desiredGroupStatus(groupObj({ status: first }), valid, 4, at(3_600_000)), first);
    });
  });

  describe("memberCount", () => {
    const node = (group?: string) => frozen({ spec: { cluster: "east", hostFingerprint: `sha256:${"ab".repeat(32)}`, ...(group !== undefined ? { group } : {}) } });
    const cases = [
      { name: "a group nobody names has 0 members", group: "web", nodes: [node(), node("db")], want: 0 },
      { name: "the nodes whose spec.group names the group are its members", group: "web", nodes: [node("web"), node("web"), node("db"), node()], want: 2 },
      { name: "members of a child group are not members of the parent (directly in this group only)", group: "eu", nodes: [node("web"), node("eu")], want: 1 },
    ];
    for (const c of cases) {
      it(c.name, () => {
        assert.equal(deterministic(memberCount, c.group, frozen(c.nodes)), c.want);
      });
    }
  });

  it("every reason constant is produced by a case above", () => {
    assert.deepEqual(Object.values(Reasons).sort(), ["ClusterNotFound", "CycleDetected", "ParentInOtherCluster", "ParentNotFound", "ParentNotReady", "Valid"]);
  });
});
