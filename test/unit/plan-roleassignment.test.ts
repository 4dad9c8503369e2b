/**
 * The RoleAssignment controller's pure decisions
 * (controllers/roleassignment/plan.ts): which named and selected nodes are
 * granted the role and which are refused with which reason, and the
 * status. The reconciler writes plan.granted as the node_roles rows (they
 * reach the nodes' snapshots), so a wrongly granted node would run a role
 * it was not cleared for.
 */
import assert from "node:assert/strict";
import type { RoleAssignmentStatus } from "../../lib/api/types.generated.js";
import type { RoleCandidate } from "../../lib/state/index.js";
import { RoleReasons, desiredRoleStatus, missingFor, planGrants, type GrantInput, type GrantPlan, type NodeView } from "../../controllers/roleassignment/plan.js";
import { PlanClock, T0, at, candidate, conditionOf, deterministic, frozen, frozenMap, publishedCondition } from "../support/plan-fixtures.js";

const INGRESS = ["can_accept_client_ingress"];

function view(name: string, over: Partial<NodeView> = {}): NodeView {
  return { name, cluster: "east", membership: "Active", labels: { tier: "edge" }, ...over };
}

/** A GrantInput for role entry-node in cluster east: nodes by name, records of the cluster. */
function grantInput(o: { nodeNames?: string[]; selected?: NodeView[]; nodes?: NodeView[]; records?: RoleCandidate[]; role?: string }): GrantInput {
  return frozen({
    cluster: "east",
    role: o.role ?? "entry-node",
    nodeNames: o.nodeNames ?? [],
    selected: o.selected ?? [],
    nodes: frozenMap((o.nodes ?? []).map((n) => [n.name, n] as const)),
    records: frozenMap((o.records ?? []).map((r) => [r.name, r] as const)),
  });
}

describe("RoleAssignment plan", () => {
  describe("missingFor", () => {
    const cases = [
      { name: "a node with every required capability lacks nothing", role: "vpn-exit", have: ["can_egress_internet", "can_run_vpn_exit", "extra"], want: [] },
      { name: "a node lacking some capabilities lacks those, in the role's order", role: "vpn-exit", have: ["can_egress_internet"], want: ["can_run_vpn_exit"] },
      { name: "a node with no capabilities lacks all of them", role: "relay-node", have: [], want: ["can_route_mesh", "can_accept_node_ingress"] },
      { name: "a role without requirements needs nothing", role: "observer", have: [], want: [] },
    ];
    for (const c of cases) {
      it(c.name, () => {
        assert.deepEqual(deterministic(missingFor, c.role, frozen(c.have)), c.want);
      });
    }
  });

  describe("planGrants", () => {
    const cases: Array<{ name: string; input: GrantInput; want: GrantPlan }> = [
      { name: "nothing named and nothing selected grants nothing", input: grantInput({}), want: { granted: [], refused: [] } },
      {
        name: "a named Active node with the capabilities is granted",
        input: grantInput({ nodeNames: ["a"], nodes: [view("a")], records: [candidate("a", { capabilities: INGRESS })] }),
        want: { granted: ["a"], refused: [] },
      },
      {
        name: "a selected Active node with the capabilities is granted",
        input: grantInput({ selected: [view("a")], records: [candidate("a", { capabilities: INGRESS })] }),
        want: { granted: ["a"], refused: [] },
      },
      {
        name: "a named node that does not exist is refused NotFound",
        input: grantInput({ nodeNames: ["ghost"] }),
        want: { granted: [], refused: [{ node: "ghost", reason: "NotFound", message: "no FabricNode of that name" }] },
      },
      {
        name: "a named node of another cluster is refused WrongCluster",
        input: grantInput({ nodeNames: ["w"], nodes: [view("w", { cluster: "west" })], records: [candidate("w", { capabilities: INGRESS })] }),
        want: { granted: [], refused: [{ node: "w", reason: "WrongCluster", message: "node belongs to cluster west, not east" }] },
      },
      {
        name: "a selected node of another cluster is ignored, not refused (the selector is scoped to the cluster)",
        input: grantInput({ selected: [view("w", { cluster: "west" })], records: [candidate("w", { capabilities: INGRESS })] }),
        want: { granted: [], refused: [] },
      },
      {
        name: "a FabricNode without an enrollment record is refused NotActive",
        input: grantInput({ nodeNames: ["hand"], nodes: [view("hand")] }),
        want: { granted: [], refused: [{ node: "hand", reason: "NotActive", message: "node has no enrollment record (nodes join only through an approved JoinRequest)" }] },
      },
      {
        name: "a node disabled in its spec is refused NotActive before the record catches up",
        input: grantInput({ nodeNames: ["d"], nodes: [view("d", { membership: "Disabled" })], records: [candidate("d", { capabilities: INGRESS })] }),
        want: { granted: [], refused: [{ node: "d", reason: "NotActive", message: "membership is Disabled" }] },
      },
      {
        name: "a node whose record is revoked is refused NotActive, the record's membership named",
        input: grantInput({ selected: [view("r")], records: [candidate("r", { membership: "Revoked", capabilities: INGRESS })] }),
        want: { granted: [], refused: [{ node: "r", reason: "NotActive", message: "membership is Revoked" }] },
      },
      {
        name: "when spec and record disagree the record's membership is named",
        input: grantInput({ selected: [view("x", { membership: "Disabled" })], records: [candidate("x", { membership: "Revoked" })] }),
        want: { granted: [], refused: [{ node: "x", reason: "NotActive", message: "membership is Revoked" }] },
      },
      {
        name: "an Active node without the role's capabilities is refused MissingCapability, naming them",
        input: grantInput({ role: "vpn-exit", selected: [view("a")], records: [candidate("a", { capabilities: ["can_run_vpn_exit"] })] }),
        want: { granted: [], refused: [{ node: "a", reason: "MissingCapability", message: "role vpn-exit requires capabilities the node does not report: can_egress_internet" }] },
      },
      {
        name: "membership is checked before capabilities",
        input: grantInput({ selected: [view("d", { membership: "Disabled" })], records: [candidate("d")] }),
        want: { granted: [], refused: [{ node: "d", reason: "NotActive", message: "membership is Disabled" }] },
      },
      {
        name: "a role without requirements is granted to any Active node",
        input: grantInput({ role: "observer", selected: [view("a")], records: [candidate("a")] }),
        want: { granted: ["a"], refused: [] },
      },
      {
        name: "a node both named and selected is decided once",
        input: grantInput({ nodeNames: ["a", "a"], selected: [view("a")], nodes: [view("a")], records: [candidate("a", { capabilities: INGRESS })] }),
        want: { granted: ["a"], refused: [] },
      },
      {
        name: "a refused node named twice is refused once",
        input: grantInput({ nodeNames: ["ghost", "ghost"] }),
        want: { granted: [], refused: [{ node: "ghost", reason: "NotFound", message: "no FabricNode of that name" }] },
      },
      {
        name: "granted and refused nodes come out sorted by name whatever the input order",
        input: grantInput({
          nodeNames: ["zz", "b"],
          selected: [view("c"), view("a"), view("y", { membership: "Disabled" })],
          nodes: [view("b")],
          records: [candidate("a", { capabilities: INGRESS }), candidate("b", { capabilities: INGRESS }), candidate("c", { capabilities: INGRESS }), candidate("y")],
        }),
        want: {
          granted: ["a", "b", "c"],
          refused: [
            { node: "y", reason: "NotActive", message: "membership is Disabled" },
            { node: "zz", reason: "NotFound", message: "no FabricNode of that name" },
          ],
        },
      },
    ];
    for (const c of cases) {
      it(c.name, () => {
        assert.deepEqual(deterministic(planGrants, c.input), c.want);
      });
    }

    it("1,000 selected nodes are decided in one pass, sorted", () => {
      const names = Array.from({ length: 1000 }, (_, i) => `n${String(999 - i).padStart(4, "0")}`);
      const plan = planGrants(grantInput({ selected: names.map((n) => view(n)), records: names.map((n) => candidate(n, { capabilities: INGRESS })) }));
      assert.equal(plan.granted.length, 1000);
      assert.deepEqual(plan.granted, [...names].sort());
    });
  });

  describe("desiredRoleStatus", () => {
    const ready = (status: "True" | "False", reason: string, message: string) => publishedCondition({ type: "Ready", status, reason, message, observedGeneration: 2 }, T0);
    const refusedPlan: GrantPlan = frozen({
      granted: ["a"],
      refused: [
        { node: "b", reason: "NotFound", message: "no FabricNode of that name" },
        { node: "c", reason: "MissingCapability", message: "m" },
        { node: "d", reason: "NotFound", message: "no FabricNode of that name" },
      ],
    });
    const cases: Array<{ name: string; plan: GrantPlan; notReady?: Parameters<typeof desiredRoleStatus>[3]; want: RoleAssignmentStatus }> = [
      {
        name: "every selected node accepted is Ready True (AllNodesAccepted)",
        plan: { granted: ["a", "b"], refused: [] },
        want: { observedGeneration: 2, matchedNodes: ["a", "b"], matchedCount: 2, refusedNodes: [], refusedCount: 0, conditions: [ready("True", RoleReasons.AllNodesAccepted, "role granted to 2 node(s)")] },
      },
      {
        name: "refused nodes make Ready False (NodesRefused) with a count per refusal reason",
        plan: refusedPlan,
        want: {
          observedGeneration: 2,
          matchedNodes: ["a"],
          matchedCount: 1,
          refusedNodes: refusedPlan.refused,
          refusedCount: 3,
          conditions: [ready("False", RoleReasons.NodesRefused, "3 node(s) refused (2 NotFound, 1 MissingCapability); 1 granted")],
        },
      },
      {
        name: "no node selected is Ready False (NoNodesSelected)",
        plan: { granted: [], refused: [] },
        want: { observedGeneration: 2, matchedNodes: [], matchedCount: 0, refusedNodes: [], refusedCount: 0, conditions: [ready("False", RoleReasons.NoNodesSelected, "no node selected")] },
      },
      {
        name: "a disabled assignment is Ready False (AssignmentDisabled) with nothing granted",
        plan: { granted: [], refused: [] },
        notReady: { reason: "AssignmentDisabled", message: "assignment disabled: the role is withdrawn from every node" },
        want: {
          observedGeneration: 2,
          matchedNodes: [],
          matchedCount: 0,
          refusedNodes: [],
          refusedCount: 0,
          conditions: [ready("False", RoleReasons.AssignmentDisabled, "assignment disabled: the role is withdrawn from every node")],
        },
      },
      {
        name: "an assignment of a missing cluster is Ready False (ClusterNotFound)",
        plan: { granted: [], refused: [] },
        notReady: { reason: "ClusterNotFound", message: "FabricCluster east does not exist" },
        want: { observedGeneration: 2, matchedNodes: [], matchedCount: 0, refusedNodes: [], refusedCount: 0, conditions: [ready("False", RoleReasons.ClusterNotFound, "FabricCluster east does not exist")] },
      },
      {
        name: "an invalid selector is Ready False (InvalidSelector), the message defaulting to empty",
        plan: { granted: [], refused: [] },
        notReady: { reason: "InvalidSelector" },
        want: { observedGeneration: 2, matchedNodes: [], matchedCount: 0, refusedNodes: [], refusedCount: 0, conditions: [ready("False", RoleReasons.InvalidSelector, "")] },
      },
      {
        name: "a reason given by the reconciler wins over the plan's outcome",
        plan: refusedPlan,
        notReady: { reason: "AssignmentDisabled", message: "off" },
        want: {
          observedGeneration: 2,
          matchedNodes: ["a"],
          matchedCount: 1,
          refusedNodes: refusedPlan.refused,
          refusedCount: 3,
          conditions: [ready("False", "AssignmentDisabled", "off")],
        },
      },
    ];
    for (const c of cases) {
      it(c.name, () => {
        assert.deepEqual(deterministic(desiredRoleStatus, undefined, 2, frozen(c.plan), frozen(c.notReady), T0), c.want);
      });
    }

    it("other conditions are carried over and Ready keeps lastTransitionTime while False", async () => {
      const clock = new PlanClock();
      const other = { type: "Synced", status: "True" as const, reason: "Done", message: "", lastTransitionTime: "2029-01-01T00:00:00Z" };
      const first = desiredRoleStatus(frozen({ conditions: [other] }), 1, { granted: [], refused: [] }, undefined, clock.date());
      await clock.advance(60_000);
      const second = deterministic(desiredRoleStatus, frozen(first), 2, refusedPlan, undefined, clock.date());
      assert.deepEqual(second.conditions?.[0], other);
      assert.equal(conditionOf(second, "Ready").reason, "NodesRefused");
      assert.equal(conditionOf(second, "Ready").lastTransitionTime, "2030-01-01T00:00:00Z");
      await clock.advance(60_000);
      const third = desiredRoleStatus(frozen(second), 3, { granted: ["a"], refused: [] }, undefined, clock.date());
      assert.equal(conditionOf(third, "Ready").lastTransitionTime, "2030-01-01T00:02:00Z");
    });

    it("the same plan again gives the published status back (no status write)", () => {
      const first = desiredRoleStatus(undefined, 1, refusedPlan, undefined, T0);
      assert.deepEqual(desiredRoleStatus(first, 1, refusedPlan, undefined, at(60_000)), first);
    });
  });

  it("every Ready reason is produced by a case above, and every refusal reason too", () => {
    assert.deepEqual(Object.values(RoleReasons).sort(), ["AllNodesAccepted", "AssignmentDisabled", "ClusterNotFound", "InvalidSelector", "NoNodesSelected", "NodesRefused"]);
  });
});
