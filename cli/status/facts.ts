/**
 * What `fabricctl status` and `fabricctl get nodes` say, computed from the
 * objects as plain functions (no I/O): one row per node, and the overview
 * with, for each finding, the command that looks closer. The JSON output is
 * these structures as they are.
 */
import type { FabricCluster, FabricNode, JoinRequest, RoleAssignment, ServiceWorkload } from "../../lib/api/types.generated.js";

/** A condition status. */
export type ReadyStatus = "True" | "False" | "Unknown";

/** One node as `get nodes` shows it. */
export interface NodeRow {
  name: string;
  cluster: string;
  membership: string;
  ready: ReadyStatus;
  readyReason: string | null;
  health: string | null;
  roles: string[];
  workloads: { running: number; total: number };
  agentVersion: string | null;
  lastHeartbeatTime: string | null;
  /** Seconds since the last heartbeat; null without one. */
  heartbeatAgeSeconds: number | null;
  certificateNotAfter: string | null;
}

/** The row of one FabricNode at `now`. A node without a Ready condition counts as Unknown. */
export function nodeRow(n: FabricNode, now: number): NodeRow {
  const ready = n.status?.conditions?.find((c) => c.type === "Ready");
  const hb = n.status?.lastHeartbeatTime;
  const hbMs = hb !== undefined ? Date.parse(hb) : Number.NaN;
  const workloads = n.status?.workloads ?? [];
  return {
    name: n.metadata.name ?? "",
    cluster: n.spec.cluster,
    membership: n.spec.membership ?? "Active",
    ready: ready?.status ?? "Unknown",
    readyReason: ready?.reason ?? null,
    health: n.status?.health ?? null,
    roles: [...(n.status?.assignedRoles ?? [])].sort(),
    workloads: { running: workloads.filter((w) => w.state === "Running").length, total: workloads.length },
    agentVersion: n.status?.agentVersion ?? null,
    lastHeartbeatTime: hb ?? null,
    heartbeatAgeSeconds: Number.isNaN(hbMs) ? null : Math.max(0, Math.round((now - hbMs) / 1000)),
    certificateNotAfter: n.status?.identity?.notAfter ?? null,
  };
}

/** The Lease of the controllers' leader election, as far as status reads it. */
export interface LeaseView {
  namespace: string;
  name: string;
  holder: string | null;
  renewTime: string | null;
  leaseDurationSeconds: number | null;
  /** True when renewTime + duration lies in the past: nobody holds authority. */
  expired: boolean;
}

/** The audit line: the verdict, or why there is none. */
export type AuditFact =
  | { checked: true; ok: true; events: number; head: string }
  | { checked: true; ok: false; events: number; brokenAt: number; problem: string }
  | { checked: false; reason: string };

/** Everything status reads. */
export interface StatusInput {
  clusters: FabricCluster[];
  nodes: FabricNode[];
  joinRequests: JoinRequest[];
  roleAssignments: RoleAssignment[];
  workloads: ServiceWorkload[];
  /** The lease, null when there is none; a string when reading it failed. */
  lease: LeaseView | null | string;
  audit: AuditFact;
}

/** Options of the overview. */
export interface StatusOptions {
  /** Fixed warning window for certificates; default: less than 10% of the validity left (past the agent's last renewal point). */
  certWarningMs?: number;
}

/** One thing that needs an operator, with the command to look closer. */
export interface Risk {
  kind: "NodesUnknown" | "NodesNotReady" | "NoAuthority" | "AuthorityUnknown" | "AuditChainBroken" | "CertificatesExpired" | "CertificatesExpiring" | "RoleCoverageGap" | "WorkloadsDegraded" | "PendingJoinRequests";
  message: string;
  command: string;
}

/** The overview `fabricctl status` prints. */
export interface StatusReport {
  generatedAt: string;
  clusters: Array<{ name: string; ready: ReadyStatus; readyReason: string | null; authorityTerm: number | null; authorityHolder: string | null; nodes: { total: number; ready: Record<ReadyStatus, number> } }>;
  nodes: {
    total: number;
    ready: Record<ReadyStatus, number>;
    notReady: Array<{ name: string; cluster: string; ready: ReadyStatus; reason: string | null; lastHeartbeatTime: string | null; command: string }>;
  };
  joinRequests: { pending: Array<{ name: string; cluster: string; nodeName: string; requestedRoles: string[]; unsupportedRoles: string[]; created: string | null; command: string }> };
  roleCoverage: { gaps: Array<{ cluster: string; role: string; assigned: number; ready: number; problem: string; command: string }> };
  workloads: Array<{ name: string; cluster: string; desired: number; ready: number; degraded: number; ok: boolean; command: string }>;
  certificates: { expiring: Array<{ node: string; cluster: string; notAfter: string; expired: boolean; command: string }> };
  authority: { lease: LeaseView | null; leaseError: string | null; clusters: Array<{ cluster: string; term: number | null; holder: string | null }> };
  audit: AuditFact;
  risks: Risk[];
}

function zero(): Record<ReadyStatus, number> {
  return { True: 0, False: 0, Unknown: 0 };
}

const byName = <T extends { name: string }>(a: T, b: T) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** Computes the overview at `now`. */
export function summarize(input: StatusInput, now: number, opts: StatusOptions = {}): StatusReport {
  const rows = input.nodes.map((n) => nodeRow(n, now)).sort(byName);
  const ready = zero();
  const perCluster = new Map<string, Record<ReadyStatus, number>>();
  for (const r of rows) {
    ready[r.ready]++;
    const c = perCluster.get(r.cluster) ?? zero();
    c[r.ready]++;
    perCluster.set(r.cluster, c);
  }
  const clusters = input.clusters
    .map((c) => {
      const cond = c.status?.conditions?.find((x) => x.type === "Ready");
      const counts = perCluster.get(c.metadata.name ?? "") ?? zero();
      return {
        name: c.metadata.name ?? "",
        ready: cond?.status ?? "Unknown",
        readyReason: cond?.reason ?? null,
        authorityTerm: c.status?.authorityTerm ?? null,
        authorityHolder: c.status?.authorityHolder ?? null,
        nodes: { total: counts.True + counts.False + counts.Unknown, ready: counts },
      };
    })
    .sort(byName);

  const notReady = rows
    .filter((r) => r.ready !== "True")
    .map((r) => ({ name: r.name, cluster: r.cluster, ready: r.ready, reason: r.readyReason, lastHeartbeatTime: r.lastHeartbeatTime, command: `kubectl describe fabricnode ${r.name}` }));

  const pending = input.joinRequests
    .filter((j) => j.spec.decision === undefined && !isSettled(j))
    .map((j) => ({
      name: j.metadata.name ?? "",
      cluster: j.spec.cluster,
      nodeName: j.spec.nodeName,
      requestedRoles: [...(j.spec.requestedRoles ?? [])],
      unsupportedRoles: [...(j.status?.unsupportedRoles ?? [])],
      created: j.metadata.creationTimestamp ?? null,
      command: `fabricctl join approve ${j.metadata.name ?? ""}`,
    }))
    .sort(byName);

  const gaps: StatusReport["roleCoverage"]["gaps"] = [];
  for (const c of input.clusters) {
    const cluster = c.metadata.name ?? "";
    const coverage = c.status?.roleCoverage ?? [];
    for (const rc of coverage) {
      const assigned = rc.assigned ?? 0;
      const readyCount = rc.ready ?? 0;
      if (readyCount === 0) gaps.push({ cluster, role: rc.role, assigned, ready: readyCount, problem: assigned === 0 ? "no node is assigned the role" : "no assigned node is healthy", command: `fabricctl get nodes --cluster ${cluster}` });
      else if (readyCount < assigned) gaps.push({ cluster, role: rc.role, assigned, ready: readyCount, problem: `${assigned - readyCount} of ${assigned} assigned nodes are not healthy`, command: `fabricctl get nodes --cluster ${cluster}` });
    }
    // Enabled assignments whose role the cluster reports no coverage for at all.
    for (const ra of input.roleAssignments) {
      if (ra.spec.cluster !== cluster || ra.spec.enabled === false) continue;
      if (coverage.some((rc) => rc.role === ra.spec.role) || gaps.some((g) => g.cluster === cluster && g.role === ra.spec.role)) continue;
      gaps.push({ cluster, role: ra.spec.role, assigned: 0, ready: 0, problem: `roleassignment ${ra.metadata.name ?? ""} matches no node`, command: `kubectl describe roleassignment ${ra.metadata.name ?? ""}` });
    }
  }
  gaps.sort((a, b) => (a.cluster + "/" + a.role < b.cluster + "/" + b.role ? -1 : 1));

  const workloads = input.workloads
    .map((w) => {
      const desired = w.status?.desired ?? 0;
      const readyCount = w.status?.ready ?? 0;
      const degraded = w.status?.degraded ?? 0;
      return { name: w.metadata.name ?? "", cluster: w.spec.cluster, desired, ready: readyCount, degraded, ok: readyCount >= desired && degraded === 0, command: `kubectl describe serviceworkload ${w.metadata.name ?? ""}` };
    })
    .sort(byName);

  const expiring: StatusReport["certificates"]["expiring"] = [];
  for (const n of input.nodes) {
    const id = n.status?.identity;
    if (id?.notAfter === undefined || (n.spec.membership ?? "Active") === "Revoked") continue;
    const end = Date.parse(id.notAfter);
    const start = id.notBefore !== undefined ? Date.parse(id.notBefore) : Number.NaN;
    const window = opts.certWarningMs ?? (Number.isNaN(start) ? 0 : (end - start) / 10);
    if (end - now <= window) expiring.push({ node: n.metadata.name ?? "", cluster: n.spec.cluster, notAfter: id.notAfter, expired: end <= now, command: `kubectl describe fabricnode ${n.metadata.name ?? ""}` });
  }
  expiring.sort((a, b) => (a.notAfter < b.notAfter ? -1 : a.notAfter > b.notAfter ? 1 : 0));

  const lease = typeof input.lease === "string" ? null : input.lease;
  const leaseError = typeof input.lease === "string" ? input.lease : null;

  const risks: Risk[] = [];
  const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
  if (ready.Unknown > 0) {
    const first = notReady.find((r) => r.ready === "Unknown");
    risks.push({ kind: "NodesUnknown", message: `${plural(ready.Unknown, "node")} Ready=Unknown (no recent heartbeat)`, command: first !== undefined && ready.Unknown === 1 ? first.command : "fabricctl get nodes" });
  }
  if (ready.False > 0) {
    const first = notReady.find((r) => r.ready === "False");
    risks.push({ kind: "NodesNotReady", message: `${plural(ready.False, "node")} Ready=False`, command: first !== undefined && ready.False === 1 ? first.command : "fabricctl get nodes" });
  }
  if (leaseError !== null) risks.push({ kind: "AuthorityUnknown", message: `cannot read the controllers' lease: ${leaseError}`, command: "kubectl get lease -n fabric-system" });
  else if (lease?.expired === true) risks.push({ kind: "NoAuthority", message: `lease ${lease.namespace}/${lease.name} expired: no controller holds authority`, command: `kubectl describe lease -n ${lease.namespace} ${lease.name}` });
  if (input.audit.checked && !input.audit.ok) risks.push({ kind: "AuditChainBroken", message: `audit chain broken at event id ${input.audit.brokenAt}: ${input.audit.problem}`, command: "fabricctl audit verify" });
  const expired = expiring.filter((e) => e.expired).length;
  if (expired > 0) risks.push({ kind: "CertificatesExpired", message: `${plural(expired, "node certificate")} expired`, command: "fabricctl get nodes" });
  if (expiring.length - expired > 0) risks.push({ kind: "CertificatesExpiring", message: `${plural(expiring.length - expired, "node certificate")} expiring soon`, command: "fabricctl get nodes" });
  if (gaps.length > 0) risks.push({ kind: "RoleCoverageGap", message: `${plural(gaps.length, "role")} without full coverage`, command: gaps.length === 1 ? (gaps[0]?.command ?? "") : "kubectl get fabricclusters -o yaml" });
  const bad = workloads.filter((w) => !w.ok);
  if (bad.length > 0) risks.push({ kind: "WorkloadsDegraded", message: `${plural(bad.length, "workload")} below desired or degraded`, command: bad.length === 1 ? (bad[0]?.command ?? "") : "kubectl get serviceworkloads" });
  if (pending.length > 0) risks.push({ kind: "PendingJoinRequests", message: `${plural(pending.length, "join request")} waiting for a decision`, command: pending.length === 1 ? (pending[0]?.command ?? "") : "kubectl get joinrequests" });

  return {
    generatedAt: new Date(now).toISOString(),
    clusters,
    nodes: { total: rows.length, ready, notReady },
    joinRequests: { pending },
    roleCoverage: { gaps },
    workloads,
    certificates: { expiring },
    authority: { lease, leaseError, clusters: clusters.map((c) => ({ cluster: c.name, term: c.authorityTerm, holder: c.authorityHolder })) },
    audit: input.audit,
    risks,
  };
}

/** Ready reasons of a request that no longer waits for anyone (controllers/joinrequest/plan.ts). */
const SETTLED_REASONS = ["Approved", "AutoApproved", "CertificateIssued", "Denied", "NoEnrollmentRecord"];

/** A request decided by the controller (auto-approval) or otherwise settled is not pending even without spec.decision. */
function isSettled(j: JoinRequest): boolean {
  const r = j.status?.conditions?.find((c) => c.type === "Ready");
  return r !== undefined && (r.status === "True" || SETTLED_REASONS.includes(r.reason ?? ""));
}
