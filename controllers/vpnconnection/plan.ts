/**
 * Pure decisions of the VPNConnection controller: whether the spec is valid
 * (cluster, allowed nodes, route policies, lease duration, credential),
 * what is projected into PostgreSQL, which allowed nodes are eligible owners
 * and why the others are blocked, whether the holder must lose its lease
 * (it became ineligible), and the status to publish.
 *
 * Eligibility is lib/state/vpn.ts vpnEligibility, the same rule the agent
 * API applies when it grants.
 */
import { isIP } from "node:net";
import type { VPNConnectionStatus, VPNConnectionStatusBlockedNode } from "../../lib/api/types.generated.js";
import type { VpnOwnerState, VpnRoute } from "../../lib/agent-protocol.js";
import { parseDuration } from "../../lib/enrollment/token.js";
import { vpnEligibility, type VpnConnectionRow, type VpnLeaseRow, type VpnNodeFacts } from "../../lib/state/vpn.js";
import { setCondition } from "../runtime/index.js";
import type { VPNConnectionObject } from "../objects.js";

/** Ready reasons of VPNConnection. */
export const VpnReasons = {
  Owned: "Owned",
  NoHolder: "NoHolder",
  NoEligibleNode: "NoEligibleNode",
  Disabled: "Disabled",
  ClusterNotFound: "ClusterNotFound",
  InvalidSpec: "InvalidSpec",
  CredentialMissing: "CredentialMissing",
  OwnerBlocked: "OwnerBlocked",
} as const;

/** Lease durations accepted (the agent's margin is max(1 s, ttl/10), renewals every ttl/3). */
export const MIN_LEASE_MS = 3_000;
export const MAX_LEASE_MS = 3_600_000;

/** What the reconciler found about the world, besides the object. */
export interface VpnPlanInput {
  obj: VPNConnectionObject;
  clusterExists: boolean;
  /** Eligibility facts of the allowed nodes found in PostgreSQL. */
  facts: ReadonlyMap<string, VpnNodeFacts>;
  /** Whether the credential Secret and key exist (undefined: no reference). */
  secretPresent?: boolean;
  lease?: VpnLeaseRow;
  /** The holder's reported state for this connection (status kind `vpn`). */
  ownerReport?: { state: VpnOwnerState; reason?: string };
  now: Date;
}

/** What the reconciler does. */
export interface VpnPlan {
  projection: VpnConnectionRow;
  eligible: string[];
  blocked: VPNConnectionStatusBlockedNode[];
  /** Set when the operator fence must be applied (spec.fence > observed). */
  fence?: number;
  /** Set when the holder must lose its lease. */
  endHolder?: { holder: string; token: number };
  /** Why the spec is unusable, if it is. */
  invalid?: string;
}

const OWNER_STATES: Record<VpnOwnerState, NonNullable<VPNConnectionStatus["ownerState"]>> = {
  not_started: "NotStarted",
  assigned: "Assigned",
  lease_required: "LeaseRequired",
  blocked: "Blocked",
  unknown: "Unknown",
};

/** True for a CIDR whose address parses and whose prefix fits the family. */
export function validCidr(cidr: string): boolean {
  const slash = cidr.lastIndexOf("/");
  if (slash < 0) return false;
  const addr = cidr.slice(0, slash);
  const bits = cidr.slice(slash + 1);
  if (!/^\d{1,3}$/.test(bits)) return false;
  const fam = isIP(addr);
  return fam !== 0 && Number(bits) <= (fam === 4 ? 32 : 128);
}

/** The connection's key in PostgreSQL and on the wire. */
export function connectionKey(obj: VPNConnectionObject): string {
  return `${obj.metadata.namespace ?? ""}/${obj.metadata.name ?? ""}`;
}

/** Validates the spec; the first problem found, or undefined. */
export function specProblem(obj: VPNConnectionObject, clusterExists: boolean): string | undefined {
  const s = obj.spec;
  if (!clusterExists) return `FabricCluster ${s.cluster} does not exist`;
  if (s.mode !== undefined && s.mode !== "Exit" && s.mode !== "Connector") return `mode must be Exit or Connector`;
  if (s.allowedNodes.length === 0) return "allowedNodes is empty";
  if (new Set(s.allowedNodes).size !== s.allowedNodes.length) return "allowedNodes repeats a node";
  const names = new Set<string>();
  for (const r of s.routePolicies ?? []) {
    if (names.has(r.name)) return `route policy ${r.name} is repeated`;
    names.add(r.name);
    if (!validCidr(r.destination)) return `route policy ${r.name}: ${r.destination} is not a CIDR`;
  }
  let ttl: number;
  try {
    ttl = parseDuration(s.leaseDuration ?? "30s");
  } catch {
    return `leaseDuration ${s.leaseDuration ?? ""} is not a duration`;
  }
  if (ttl < MIN_LEASE_MS || ttl > MAX_LEASE_MS) return `leaseDuration must be between 3s and 1h`;
  return undefined;
}

/** The projection of the spec (an invalid spec is projected with valid=false: nobody is granted). */
export function projectionOf(obj: VPNConnectionObject, invalid: string | undefined, secretPresent: boolean | undefined): VpnConnectionRow {
  const s = obj.spec;
  let ttl = 30_000;
  try {
    ttl = Math.min(MAX_LEASE_MS, Math.max(MIN_LEASE_MS, parseDuration(s.leaseDuration ?? "30s")));
  } catch {
    // Invalid: the default stands in; valid=false grants nobody.
  }
  const routes: VpnRoute[] = (s.routePolicies ?? []).map((r) => ({ destination: r.destination, action: r.action ?? "Route", metric: r.metric ?? 100 }));
  const ref = s.credentialSecretRef;
  return {
    connection: connectionKey(obj),
    namespace: obj.metadata.namespace ?? "",
    name: obj.metadata.name ?? "",
    cluster: s.cluster,
    mode: s.mode ?? "Connector",
    allowedNodes: [...s.allowedNodes],
    routes,
    leaseTtlMs: ttl,
    ...(ref !== undefined && secretPresent === true ? { secretName: ref.name, secretKey: ref.key ?? "credentials" } : {}),
    enabled: s.enabled !== false,
    valid: invalid === undefined,
    eligibleNodes: [],
  };
}

const BLOCK_MESSAGES: Record<string, string> = {
  UnknownNode: "no enrolled FabricNode of that name",
  OtherCluster: "the node belongs to another cluster",
  NodeDisabled: "the node is Disabled",
  NodeRevoked: "the node is Revoked",
  NotHealthy: "the node is not Healthy",
  MissingRole: "the node lacks the role of the mode (vpn-exit or vpn-connector) through a RoleAssignment",
  ConnectionDisabled: "the connection is disabled",
  ConnectionInvalid: "the connection's spec is invalid",
};

/** Decides everything but the status (see the module comment). */
export function planConnection(i: VpnPlanInput): VpnPlan {
  const invalid = specProblem(i.obj, i.clusterExists);
  const projection = projectionOf(i.obj, invalid, i.secretPresent);
  const eligible: string[] = [];
  const blocked: VPNConnectionStatusBlockedNode[] = [];
  for (const node of projection.allowedNodes) {
    const e = vpnEligibility(projection, node, i.facts.get(node));
    if (e.eligible) eligible.push(node);
    else blocked.push({ node, reason: e.reason === "UnknownNode" ? "NotFound" : e.reason, message: BLOCK_MESSAGES[e.reason] ?? e.reason });
  }
  projection.eligibleNodes = eligible;
  const plan: VpnPlan = { projection, eligible, blocked, ...(invalid !== undefined ? { invalid } : {}) };
  const fence = i.obj.spec.fence ?? 0;
  if (fence > (i.obj.status?.observedFence ?? 0)) plan.fence = fence;
  const holder = i.lease?.holder;
  if (holder !== undefined && plan.fence === undefined && !eligible.includes(holder)) plan.endHolder = { holder, token: i.lease?.token ?? 0 };
  return plan;
}

/** The status to publish after the plan was carried out (`lease` and `observedFence` as they are now). */
export function desiredVpnStatus(i: VpnPlanInput, plan: VpnPlan, observedFence: number): VPNConnectionStatus {
  const prev = i.obj.status;
  const l = i.lease;
  const live = l?.holder !== undefined && l.expiresAt !== undefined && l.expiresAt.getTime() > i.now.getTime();
  const status: VPNConnectionStatus = {
    observedGeneration: i.obj.metadata.generation ?? 0,
    observedFence,
    eligibleNodes: plan.eligible,
    blockedNodes: plan.blocked,
  };
  if (live && l?.holder !== undefined) {
    status.activeLease = {
      holder: l.holder,
      fencingToken: l.token,
      ...(l.acquiredAt !== undefined ? { acquireTime: l.acquiredAt.toISOString() } : {}),
      ...(l.renewedAt !== undefined ? { renewTime: l.renewedAt.toISOString() } : {}),
      ...(l.expiresAt !== undefined ? { expiresAt: l.expiresAt.toISOString() } : {}),
    };
    if (i.ownerReport !== undefined) {
      status.ownerState = OWNER_STATES[i.ownerReport.state];
      if (i.ownerReport.reason !== undefined) status.ownerReason = i.ownerReport.reason.slice(0, 256);
    }
  }
  let ready: { status: "True" | "False"; reason: string; message: string };
  if (plan.invalid !== undefined) ready = { status: "False", reason: i.clusterExists ? VpnReasons.InvalidSpec : VpnReasons.ClusterNotFound, message: plan.invalid };
  else if (!plan.projection.enabled) ready = { status: "False", reason: VpnReasons.Disabled, message: "the connection is disabled" };
  else if (i.obj.spec.credentialSecretRef !== undefined && i.secretPresent !== true) {
    ready = { status: "False", reason: VpnReasons.CredentialMissing, message: `Secret ${i.obj.spec.credentialSecretRef.name} (key ${i.obj.spec.credentialSecretRef.key ?? "credentials"}) is missing in namespace ${plan.projection.namespace}` };
  } else if (plan.eligible.length === 0) ready = { status: "False", reason: VpnReasons.NoEligibleNode, message: "no allowed node may own the connection; see status.blockedNodes" };
  else if (status.activeLease === undefined) ready = { status: "False", reason: VpnReasons.NoHolder, message: "no node holds the lease" };
  else if (status.ownerState === "Blocked") ready = { status: "False", reason: VpnReasons.OwnerBlocked, message: `holder ${status.activeLease.holder} reports Blocked${status.ownerReason !== undefined ? `: ${status.ownerReason}` : ""}` };
  else ready = { status: "True", reason: VpnReasons.Owned, message: `held by ${status.activeLease.holder} with token ${status.activeLease.fencingToken}` };
  status.conditions = setCondition(prev?.conditions, { type: "Ready", ...ready, observedGeneration: status.observedGeneration }, i.now);
  return status;
}
