/**
 * VPNConnectionReconciler (leader only): validates the spec, checks the
 * credential Secret (same namespace), projects the intent into PostgreSQL
 * (lib/state/vpn.ts; snapshot marks for the listed nodes in the same
 * transaction), applies an operator fence, ends the lease of a holder that
 * became ineligible, and publishes the lease, eligible and blocked nodes,
 * the holder's reported state and the Ready condition (plan.ts).
 */
import type { CoreV1Api, CustomObjectsApi } from "@kubernetes/client-node";
import type pg from "pg";
import { RESOURCES } from "../../lib/api/types.generated.js";
import type { VpnOwnerState } from "../../lib/agent-protocol.js";
import { statusReportOf } from "../../lib/state/heartbeats.js";
import type { VpnStore } from "../../lib/state/vpn.js";
import type { FabricClusterObject as FabricCluster, VPNConnectionObject } from "../objects.js";
import { httpStatusOf } from "../runtime/source.js";
import { patchStatusIfChanged, realClock, recordAll, type Clock, type EventRecorderLike, type Informer, type ObjectKey, type ReconcileContext, type ReconcileResult, type Reconciler } from "../runtime/index.js";
import { vpnEvents } from "./events.js";
import { connectionKey, desiredVpnStatus, planConnection, type VpnPlanInput } from "./plan.js";

/** Dependencies of VPNConnectionReconciler. */
export interface VpnReconcilerDeps {
  informer: Informer<VPNConnectionObject>;
  clusters: Informer<FabricCluster>;
  store: VpnStore;
  pool: pg.Pool;
  api: CustomObjectsApi;
  core: CoreV1Api;
  clock?: Clock;
  events?: EventRecorderLike;
}

const res = RESOURCES.VPNConnection;
const STATES: readonly string[] = ["not_started", "assigned", "lease_required", "blocked", "unknown"];

/** The holder's report about one connection from its `vpn` status report, if well-formed. */
export function ownerReportOf(body: unknown, connection: string): { state: VpnOwnerState; reason?: string } | undefined {
  const list = (body as { connections?: unknown } | undefined)?.connections;
  if (!Array.isArray(list)) return undefined;
  for (const e of list as unknown[]) {
    const c = e as { connection?: unknown; state?: unknown; reason?: unknown } | null;
    if (c === null || typeof c !== "object" || c.connection !== connection || typeof c.state !== "string" || !STATES.includes(c.state)) continue;
    return { state: c.state as VpnOwnerState, ...(typeof c.reason === "string" ? { reason: c.reason } : {}) };
  }
  return undefined;
}

/** See the module comment. */
export class VpnConnectionReconciler implements Reconciler {
  constructor(private readonly d: VpnReconcilerDeps) {}

  async reconcile(key: ObjectKey, ctx: ReconcileContext): Promise<ReconcileResult | void> {
    const obj = this.d.informer.get(key);
    const conn = `${key.namespace ?? ""}/${key.name}`;
    if (obj === undefined) {
      const ended = await this.d.store.deleteConnection(conn);
      if (ended !== false) ctx.log.info("vpn connection forgotten", { connection: conn, endedHolder: ended?.holder });
      return;
    }
    const ref = obj.spec.credentialSecretRef;
    const secretPresent = ref === undefined ? undefined : await this.secretHas(obj.metadata.namespace ?? "", ref.name, ref.key ?? "credentials");
    const input: VpnPlanInput = {
      obj,
      clusterExists: this.d.clusters.get({ name: obj.spec.cluster }) !== undefined,
      facts: await this.d.store.nodeFacts(obj.spec.allowedNodes, obj.metadata.namespace ?? ""),
      ...(secretPresent !== undefined ? { secretPresent } : {}),
      lease: await this.d.store.lease(conn),
      now: new Date((this.d.clock ?? realClock).now()),
    };
    const plan = planConnection(input);
    await this.d.store.upsertConnection(plan.projection);
    let fenced: { fence: number; holder?: string; token?: number } | undefined;
    if (plan.fence !== undefined) {
      const ended = await this.d.store.fence(conn, plan.fence);
      if (ended !== false) {
        fenced = { fence: plan.fence, ...(ended !== undefined ? { holder: ended.holder, token: ended.token } : {}) };
        ctx.log.info("vpn connection fenced", { connection: conn, fence: plan.fence, endedHolder: ended?.holder, endedToken: ended?.token });
      }
    }
    if (plan.endHolder !== undefined) {
      const ended = await this.d.store.endIneligible(conn, plan.endHolder.holder, plan.endHolder.token);
      if (ended !== undefined) ctx.log.info("vpn lease ended: holder no longer eligible", { connection: conn, holder: ended.holder, token: ended.token });
    }
    const lease = await this.d.store.lease(conn);
    const holder = lease?.holder;
    const report = holder === undefined ? undefined : await statusReportOf(this.d.pool, holder, "vpn");
    const ownerReport = report === undefined ? undefined : ownerReportOf(report.body, conn);
    const after: VpnPlanInput = { ...input, lease, ...(ownerReport !== undefined ? { ownerReport } : {}) };
    const observedFence = (await this.d.store.observedFence(conn)) ?? 0;
    const status = desiredVpnStatus(after, plan, observedFence);
    const last = (await this.d.store.grants(conn, 2)).find((g) => g.endReason !== undefined);
    recordAll(this.d.events, obj, vpnEvents(obj.status, status, { ...(fenced !== undefined ? { fenced } : {}), ...(last !== undefined ? { lastEnd: { holder: last.holder, token: last.token, reason: last.endReason ?? "ended" } } : {}) }));
    await patchStatusIfChanged(this.d.api, { group: res.group, version: res.version, plural: res.plural, namespace: key.namespace, name: key.name }, obj.status, status);
    // Grants, ends and expiries wake the connection through the lease watch; the periodic look refreshes
    // renewTime/expiresAt and the owner's report (once a minute: 10,000 connections renewing every 10 s
    // must not become 1,000 status writes a second).
    return { requeueAfterMs: 60_000 };
  }

  private async secretHas(namespace: string, name: string, key: string): Promise<boolean> {
    try {
      const s = await this.d.core.readNamespacedSecret({ name, namespace });
      return s.data?.[key] !== undefined;
    } catch (err) {
      if (httpStatusOf(err) === 404) return false;
      throw err;
    }
  }
}

export { connectionKey };
