/**
 * The "vpn" snapshot contributor: payload.vpn for each node, the connections
 * whose allowedNodes list it and that it may own now (lib/state/vpn.ts
 * vpnEligibility, the rule the agent API grants by), plus disabled ones it
 * would otherwise own (enabled: false, so its owner tears down). Never
 * another cluster's or organization's connection the node is not listed
 * in, never a secret: only whether a credential is referenced.
 */
import type { VpnAssignment } from "../../lib/agent-protocol.js";
import type { SnapshotContributor } from "../../lib/snapshot/contributors.js";
import { vpnConnectionsListing, vpnEligibility, vpnNodeFacts } from "../../lib/state/vpn.js";

/** See the module comment. */
export const vpnContributor: SnapshotContributor = {
  name: "vpn",
  async contribute(db, ref, payload) {
    await vpnContributor.contributeMany?.(db, ref.cluster, [ref], new Map([[ref.node, payload]]));
  },
  async contributeMany(db, cluster, refs, payloads) {
    const nodes = refs.map((r) => r.node);
    const conns = await vpnConnectionsListing(db, cluster, nodes);
    const out = new Map<string, VpnAssignment[]>();
    const byOrg = new Map<string, typeof conns>();
    for (const c of conns) byOrg.set(c.namespace, [...(byOrg.get(c.namespace) ?? []), c]);
    for (const [org, list] of byOrg) {
      const facts = await vpnNodeFacts(db, nodes, org);
      for (const c of list) {
        for (const node of c.allowedNodes) {
          if (!payloads.has(node)) continue;
          const e = vpnEligibility({ ...c, enabled: true }, node, facts.get(node));
          if (!e.eligible) continue;
          const a: VpnAssignment = {
            connection: c.connection,
            mode: c.mode,
            preference: c.allowedNodes.indexOf(node),
            routes: c.routes.map((r) => ({ destination: r.destination, action: r.action, metric: r.metric })),
            leaseTtlMs: c.leaseTtlMs,
            hasCredentialRef: c.secretName !== undefined,
            enabled: c.enabled,
          };
          out.set(node, [...(out.get(node) ?? []), a]);
        }
      }
    }
    for (const ref of refs) {
      const p = payloads.get(ref.node);
      if (p === undefined) continue;
      const list = ref.membership === "Active" ? (out.get(ref.node) ?? []) : [];
      if (list.length > 0) p.vpn = { assignments: list.sort((a, b) => a.connection.localeCompare(b.connection)) };
      else delete p.vpn;
    }
  },
};
