/**
 * The VPNConnection controller's pure decisions
 * (controllers/vpnconnection/plan.ts) and the eligibility rule the agent
 * API grants by (lib/state/vpn.ts vpnEligibility): who may own a
 * connection and why the others are blocked, spec validation, when the
 * operator fence applies, when the holder loses its lease, and the status.
 * A wrongly eligible node would be granted a tunnel it was not cleared for.
 */
import assert from "node:assert/strict";
import type { VPNConnectionObject } from "../../controllers/objects.js";
import { connectionKey, desiredVpnStatus, planConnection, specProblem, validCidr, VpnReasons, type VpnPlanInput } from "../../controllers/vpnconnection/plan.js";
import { vpnEligibility, type VpnNodeFacts } from "../../lib/state/vpn.js";
import { leaseDeadline, leaseLive, renewDueAt } from "../../agent/vpn/lease-client.js";

const T0 = new Date("2026-01-01T00:00:00Z");

function conn(spec: Partial<VPNConnectionObject["spec"]> = {}, status?: VPNConnectionObject["status"]): VPNConnectionObject {
  return {
    apiVersion: "accessfabric.io/v1alpha1",
    kind: "VPNConnection",
    metadata: { namespace: "org-a", name: "exit", generation: 3 },
    spec: { cluster: "east", mode: "Exit", allowedNodes: ["east.a", "east.b", "east.c"], leaseDuration: "30s", ...spec },
    ...(status !== undefined ? { status } : {}),
  };
}

function facts(node: string, over: Partial<VpnNodeFacts> = {}): VpnNodeFacts {
  return { node, cluster: "east", membership: "Active", health: "Healthy", roles: ["vpn-exit"], ...over };
}

function input(o: Partial<VpnPlanInput> = {}): VpnPlanInput {
  return { obj: conn(), clusterExists: true, facts: new Map(["east.a", "east.b", "east.c"].map((n) => [n, facts(n)])), now: T0, ...o };
}

describe("VPNConnection plan", () => {
  describe("vpnEligibility", () => {
    const c: { cluster: string; mode: "Exit" | "Connector"; allowedNodes: string[]; enabled: boolean; valid: boolean } = { cluster: "east", mode: "Exit", allowedNodes: ["east.a"], enabled: true, valid: true };
    const cases: Array<{ name: string; node?: string; c?: Partial<typeof c>; f?: VpnNodeFacts | undefined; want: string }> = [
      { name: "an Active, Healthy allowed node of the cluster with the role is eligible", f: facts("east.a"), want: "eligible" },
      { name: "a node not in allowedNodes is not", node: "east.z", f: facts("east.z"), want: "NotAllowed" },
      { name: "an allowed name without a node record is not", f: undefined, want: "UnknownNode" },
      { name: "a node of another cluster is not", f: facts("east.a", { cluster: "west" }), want: "OtherCluster" },
      { name: "a Disabled node is not", f: facts("east.a", { membership: "Disabled" }), want: "NodeDisabled" },
      { name: "a Revoked node is not", f: facts("east.a", { membership: "Revoked" }), want: "NodeRevoked" },
      { name: "a Degraded node is not", f: facts("east.a", { health: "Degraded" }), want: "NotHealthy" },
      { name: "a node without a published health is not", f: { node: "east.a", cluster: "east", membership: "Active", roles: ["vpn-exit"] }, want: "NotHealthy" },
      { name: "an Exit connection needs vpn-exit, not vpn-connector", f: facts("east.a", { roles: ["vpn-connector"] }), want: "MissingRole" },
      { name: "a Connector connection needs vpn-connector", c: { mode: "Connector" }, f: facts("east.a"), want: "MissingRole" },
      { name: "a disabled connection has no eligible owner", c: { enabled: false }, f: facts("east.a"), want: "ConnectionDisabled" },
      { name: "an invalid connection has no eligible owner", c: { valid: false }, f: facts("east.a"), want: "ConnectionInvalid" },
    ];
    for (const t of cases) {
      it(t.name, () => {
        const e = vpnEligibility({ ...c, ...t.c }, t.node ?? "east.a", t.f);
        assert.equal(e.eligible ? "eligible" : e.reason, t.want);
      });
    }
  });

  describe("specProblem and validCidr", () => {
    it("accepts IPv4 and IPv6 CIDRs and refuses the rest", () => {
      for (const ok of ["10.0.0.0/8", "0.0.0.0/0", "fd00::/8", "::/0", "10.20.5.0/24"]) assert.equal(validCidr(ok), true, ok);
      for (const bad of ["10.0.0.0", "10.0.0.0/33", "300.0.0.0/8", "fd00::/129", "x/8", "10.0.0.0/-1", "10.0.0.0/ 8"]) assert.equal(validCidr(bad), false, bad);
    });
    it("names the first problem of a spec", () => {
      assert.equal(specProblem(conn(), true), undefined);
      assert.match(specProblem(conn(), false) ?? "", /FabricCluster east does not exist/);
      assert.match(specProblem(conn({ allowedNodes: ["east.a", "east.a"] }), true) ?? "", /repeats/);
      assert.match(specProblem(conn({ routePolicies: [{ name: "r", destination: "10.0.0.0/99" }] }), true) ?? "", /not a CIDR/);
      assert.match(specProblem(conn({ routePolicies: [{ name: "r", destination: "10.0.0.0/8" }, { name: "r", destination: "10.1.0.0/16" }] }), true) ?? "", /repeated/);
      assert.match(specProblem(conn({ leaseDuration: "1s" }), true) ?? "", /between 3s and 1h/);
      assert.match(specProblem(conn({ leaseDuration: "2h" }), true) ?? "", /between 3s and 1h/);
    });
  });

  describe("planConnection", () => {
    it("lists eligible nodes in preference order and blocked ones with reasons", () => {
      const p = planConnection(input({ facts: new Map([["east.a", facts("east.a", { roles: [] })], ["east.c", facts("east.c")]]) }));
      assert.deepEqual(p.eligible, ["east.c"]);
      assert.deepEqual(p.blocked.map((b) => [b.node, b.reason]), [["east.a", "MissingRole"], ["east.b", "NotFound"]]);
      assert.deepEqual(p.projection.eligibleNodes, ["east.c"]);
      assert.equal(p.projection.connection, "org-a/exit");
      assert.equal(p.projection.valid, true);
    });
    it("projects routes with defaults, the TTL, and the credential only when the Secret is present", () => {
      const obj = conn({ routePolicies: [{ name: "office", destination: "10.20.0.0/16" }, { name: "out", destination: "10.20.5.0/24", action: "Exclude", metric: 5 }], credentialSecretRef: { name: "creds" } });
      const present = planConnection(input({ obj, secretPresent: true })).projection;
      assert.deepEqual(present.routes, [{ destination: "10.20.0.0/16", action: "Route", metric: 100 }, { destination: "10.20.5.0/24", action: "Exclude", metric: 5 }]);
      assert.equal(present.leaseTtlMs, 30_000);
      assert.deepEqual([present.secretName, present.secretKey], ["creds", "credentials"]);
      const missing = planConnection(input({ obj, secretPresent: false })).projection;
      assert.equal(missing.secretName, undefined);
    });
    it("an invalid spec is projected as invalid: nobody is eligible", () => {
      const p = planConnection(input({ obj: conn({ leaseDuration: "1s" }) }));
      assert.equal(p.projection.valid, false);
      assert.deepEqual(p.eligible, []);
      assert.ok(p.invalid !== undefined);
    });
    it("applies the fence only when spec.fence is above status.observedFence", () => {
      assert.equal(planConnection(input({ obj: conn({ fence: 2 }, { observedFence: 1 }) })).fence, 2);
      assert.equal(planConnection(input({ obj: conn({ fence: 2 }, { observedFence: 2 }) })).fence, undefined);
      assert.equal(planConnection(input({ obj: conn({ fence: 0 }) })).fence, undefined);
    });
    it("ends the lease of a holder that is no longer eligible, not of an eligible one", () => {
      const lease = { connection: "org-a/exit", holder: "east.b", token: 7, renewals: 0, expiresAt: new Date(T0.getTime() + 10_000) };
      assert.equal(planConnection(input({ lease })).endHolder, undefined);
      const f = new Map([["east.a", facts("east.a")], ["east.b", facts("east.b", { membership: "Disabled" })]]);
      assert.deepEqual(planConnection(input({ lease, facts: f })).endHolder, { holder: "east.b", token: 7 });
      // Not while a fence ends it anyway.
      assert.equal(planConnection(input({ lease, facts: f, obj: conn({ fence: 1 }) })).endHolder, undefined);
    });
  });

  describe("desiredVpnStatus", () => {
    const live = { connection: "org-a/exit", holder: "east.a", token: 4, renewals: 2, acquiredAt: T0, renewedAt: T0, expiresAt: new Date(T0.getTime() + 30_000) };
    const ready = (i: VpnPlanInput): [string, string] => {
      const s = desiredVpnStatus(i, planConnection(i), 0);
      const c = s.conditions?.find((x) => x.type === "Ready");
      return [c?.status ?? "", c?.reason ?? ""];
    };
    it("shows the live lease and the holder's reported state", () => {
      const i = input({ lease: live, ownerReport: { state: "assigned" } });
      const s = desiredVpnStatus(i, planConnection(i), 3);
      assert.deepEqual(s.activeLease, { holder: "east.a", fencingToken: 4, acquireTime: T0.toISOString(), renewTime: T0.toISOString(), expiresAt: live.expiresAt.toISOString() });
      assert.equal(s.ownerState, "Assigned");
      assert.equal(s.observedFence, 3);
      assert.equal(s.observedGeneration, 3);
      assert.deepEqual(ready(i), ["True", VpnReasons.Owned]);
    });
    it("shows no lease once it expired by the given clock", () => {
      const i = input({ lease: live, now: new Date(T0.getTime() + 31_000) });
      assert.equal(desiredVpnStatus(i, planConnection(i), 0).activeLease, undefined);
      assert.deepEqual(ready(i), ["False", VpnReasons.NoHolder]);
    });
    it("gives the reason a connection is not Ready", () => {
      assert.deepEqual(ready(input({ clusterExists: false })), ["False", VpnReasons.ClusterNotFound]);
      assert.deepEqual(ready(input({ obj: conn({ leaseDuration: "nope" }) })), ["False", VpnReasons.InvalidSpec]);
      assert.deepEqual(ready(input({ obj: conn({ enabled: false }) })), ["False", VpnReasons.Disabled]);
      assert.deepEqual(ready(input({ obj: conn({ credentialSecretRef: { name: "gone" } }), secretPresent: false })), ["False", VpnReasons.CredentialMissing]);
      assert.deepEqual(ready(input({ facts: new Map() })), ["False", VpnReasons.NoEligibleNode]);
      assert.deepEqual(ready(input({ lease: live, ownerReport: { state: "blocked", reason: "wireguard-go not found" } })), ["False", VpnReasons.OwnerBlocked]);
    });
    it("keys connections by namespace and name", () => {
      assert.equal(connectionKey(conn()), "org-a/exit");
    });
  });

  describe("the lease client's deadline", () => {
    it("counts from the send time, minus max(1 s, ttl/10), and renews at ttl/3", () => {
      assert.equal(leaseDeadline(1000, 30_000), 1000 + 30_000 - 3000);
      assert.equal(leaseDeadline(1000, 3000), 1000 + 3000 - 1000);
      const lease = { connection: "o/c", token: 1, ttlMs: 3000, sentAt: 1000, deadline: leaseDeadline(1000, 3000) };
      assert.equal(renewDueAt(lease), 2000);
      assert.equal(leaseLive(lease, 2999), true);
      assert.equal(leaseLive(lease, 3000), false);
    });
  });
});
