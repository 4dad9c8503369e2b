/**
 * Reads what `fabricctl status` summarizes: the fabric objects through the
 * kube API (in parallel), the controllers' Lease, and the audit chain when a
 * database was named and is reachable (never started for this).
 */
import type { FabricCluster, FabricNode, JoinRequest, RoleAssignment, ServiceWorkload } from "../../lib/api/types.generated.js";
import { databaseNamed, openDatabase, type DatabaseFlags } from "../database.js";
import { ApiError, describeError } from "../errors.js";
import type { KubeClient } from "../kube/client.js";
import type { AuditFact, LeaseView, StatusInput } from "./facts.js";

interface Lease {
  spec?: { holderIdentity?: string; renewTime?: string; leaseDurationSeconds?: number };
}

/** Reads the Lease; null when it does not exist (leader election off), a message when reading failed. */
export async function readLease(client: KubeClient, namespace: string, name: string, now: number): Promise<LeaseView | null | string> {
  try {
    const l = await client.getNamespaced<Lease>("coordination.k8s.io/v1", "leases", namespace, name);
    const renew = l.spec?.renewTime !== undefined ? Date.parse(l.spec.renewTime) : Number.NaN;
    const duration = l.spec?.leaseDurationSeconds ?? null;
    return {
      namespace,
      name,
      holder: l.spec?.holderIdentity || null,
      renewTime: l.spec?.renewTime ?? null,
      leaseDurationSeconds: duration,
      expired: !l.spec?.holderIdentity || (duration !== null && !Number.isNaN(renew) && renew + duration * 1000 < now),
    };
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return null;
    return describeError(err);
  }
}

/** The first of `places` that holds a Lease (null when none does). */
async function firstLease(client: KubeClient, places: ReadonlyArray<{ namespace: string; name: string }>, now: number): Promise<LeaseView | null | string> {
  for (const p of places) {
    const l = await readLease(client, p.namespace, p.name, now);
    if (l !== null) return l;
  }
  return null;
}

/** The audit chain verdict, or why there is none. */
export async function readAudit(flags: DatabaseFlags): Promise<AuditFact> {
  if (!databaseNamed(flags)) return { checked: false, reason: "not checked: no database named (--database-url, --state-dir or DATABASE_URL)" };
  try {
    const db = await openDatabase(flags, { startStopped: false });
    try {
      const { verifyChain } = await import("../../lib/audit/chain.js");
      const v = await verifyChain(db.pool);
      return v.ok ? { checked: true, ok: true, events: v.events, head: v.lastHash } : { checked: true, ok: false, events: v.events, brokenAt: v.brokenAt, problem: v.problem };
    } finally {
      await db.close();
    }
  } catch (err) {
    return { checked: false, reason: `not checked: database unreachable (${describeError(err)})` };
  }
}

/** Everything status needs, read concurrently. */
export async function collectStatus(client: KubeClient, o: { leases: ReadonlyArray<{ namespace: string; name: string }>; db: DatabaseFlags; now: () => number }): Promise<StatusInput> {
  const [clusters, nodes, joinRequests, roleAssignments, workloads, lease, audit] = await Promise.all([
    client.list<FabricCluster>("FabricCluster"),
    client.list<FabricNode>("FabricNode"),
    client.list<JoinRequest>("JoinRequest"),
    client.list<RoleAssignment>("RoleAssignment"),
    client.list<ServiceWorkload>("ServiceWorkload"),
    firstLease(client, o.leases, o.now()),
    readAudit(o.db),
  ]);
  return { clusters, nodes, joinRequests, roleAssignments, workloads, lease, audit };
}
