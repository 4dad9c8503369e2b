/**
 * ReleaseReconciler: verifies each Release against the release trust of the
 * cluster it names (plan.ts), records the outcome in PostgreSQL with an
 * audit row (lib/state/releases.ts), and publishes status.verified, the
 * reason, the keys that signed, the expiry, the artifacts and whether the
 * version store holds each, with the Verified and Ready conditions. A
 * Release is looked at again when it expires and while an artifact is
 * missing; a FabricCluster change re-verifies the cluster's releases.
 */
import type { CustomObjectsApi } from "@kubernetes/client-node";
import type pg from "pg";
import { RESOURCES } from "../../lib/api/types.generated.js";
import { presentArtifacts } from "../../lib/state/artifacts.js";
import type { ReleaseRow, ReleaseStore } from "../../lib/state/releases.js";
import type { FabricClusterObject, Kube } from "../objects.js";
import type { Release } from "../../lib/api/types.generated.js";
import { TerminalError, patchStatusIfChanged, realClock, setCondition, type Clock, type Condition, type Informer, type ObjectKey, type ReconcileContext, type ReconcileResult, type Reconciler } from "../runtime/index.js";
import { planRelease, planTrust, type ReleaseInput } from "./plan.js";

export type ReleaseObject = Kube<Release>;

export interface ReleaseReconcilerDeps {
  informer: Informer<ReleaseObject>;
  clusters: Informer<FabricClusterObject>;
  releases: ReleaseStore;
  pool: pg.Pool;
  api: CustomObjectsApi;
  clock?: Clock;
}

const res = RESOURCES.Release;

export class ReleaseReconciler implements Reconciler {
  /** Refused trust changes already audited (cluster and reason), so each is audited once per process. */
  private readonly refusalsAudited = new Set<string>();

  constructor(private readonly d: ReleaseReconcilerDeps) {}

  async reconcile(key: ObjectKey, ctx: ReconcileContext): Promise<ReconcileResult | void> {
    const obj = this.d.informer.get(key);
    if (obj === undefined) {
      if (await this.d.releases.delete(key.name)) ctx.log.info("release forgotten", { release: key.name });
      return;
    }
    const uid = obj.metadata.uid;
    if (uid === undefined || uid === "") throw new TerminalError(`Release ${key.name} has no metadata.uid`);
    const now = new Date((this.d.clock ?? realClock).now());
    const spec = obj.spec;
    const trust = await this.trustFor(spec.cluster, ctx);
    const previous = await this.d.releases.get(key.name);
    const samePrevious = previous !== undefined && previous.uid === uid ? previous : undefined;
    const input: ReleaseInput = {
      spec,
      trust,
      highWater: await this.d.releases.highWater(spec.cluster, spec.component),
      trustedPayload: samePrevious && samePrevious.signedBy.length > 0 ? samePrevious.payloadSha256 : undefined,
      twinVerified: (await this.d.releases.verifiedTwin(spec.cluster, spec.component, spec.version, key.name)) !== undefined,
      present: new Set(),
      now,
    };
    let plan = planRelease(input);
    if (plan.artifacts.length > 0) {
      input.present = await presentArtifacts(this.d.pool, plan.artifacts.map((a) => a.sha256));
      plan = planRelease(input);
    }
    const row: ReleaseRow = {
      name: key.name,
      uid,
      cluster: spec.cluster,
      component: spec.component,
      version: spec.version,
      payloadSha256: plan.payloadSha256,
      verified: plan.verified,
      reason: plan.reason,
      message: plan.message,
      signedBy: plan.signedBy,
      expires: plan.expires,
      artifacts: plan.artifacts.map(({ os, arch, length, sha256 }) => ({ os, arch, length, sha256 })),
    };
    if (await this.d.releases.record(row, previous, plan.newHighWater)) {
      ctx.log.info(plan.verified ? "release verified" : "release rejected", { release: key.name, reason: plan.reason, message: plan.message });
    }
    const generation = obj.metadata.generation ?? 0;
    const old = obj.status;
    const outcomeChanged = old?.verified !== plan.verified || old?.conditions?.find((c) => c.type === "Verified")?.reason !== plan.reason;
    const outcome = { status: plan.verified ? ("True" as const) : ("False" as const), reason: plan.reason, message: plan.message, observedGeneration: generation };
    let conditions = setCondition(old?.conditions as Condition[] | undefined, { type: "Verified", ...outcome }, now);
    conditions = setCondition(conditions, { type: "Ready", ...outcome }, now);
    const next = {
      observedGeneration: generation,
      verified: plan.verified,
      verifiedTime: outcomeChanged || old?.verifiedTime === undefined ? now.toISOString() : old.verifiedTime,
      ...(plan.verified ? {} : { rejectionReason: `${plan.reason}: ${plan.message}`.slice(0, 1024) }),
      ...(plan.signedBy.length > 0 ? { signedBy: plan.signedBy } : {}),
      ...(plan.expires ? { expires: plan.expires.toISOString() } : {}),
      ...(plan.artifacts.length > 0 ? { artifacts: plan.artifacts } : {}),
      conditions,
    };
    await patchStatusIfChanged(this.d.api, { group: res.group, version: res.version, plural: res.plural, name: key.name }, old, next);
    return plan.requeueAfterMs === undefined ? undefined : { requeueAfterMs: plan.requeueAfterMs };
  }

  /** The trust in force for a cluster, accepting a first set or a signed rotation on the way. */
  private async trustFor(cluster: string, ctx: ReconcileContext): Promise<ReleaseInput["trust"]> {
    const obj = this.d.clusters.get({ name: cluster });
    if (obj === undefined) return { reason: "ClusterNotFound", message: `cluster ${cluster} does not exist` };
    for (let attempt = 0; attempt < 3; attempt++) {
      const accepted = (await this.d.releases.trustOf(cluster))?.trust;
      const decision = planTrust(accepted, obj.spec.releaseTrust);
      switch (decision.kind) {
        case "none":
          return { reason: decision.reason, message: decision.message };
        case "use":
          return { trust: decision.trust };
        case "keep":
          if (!this.refusalsAudited.has(`${cluster}\n${decision.refused}`)) {
            ctx.log.warn("release trust change refused; the accepted set stays in force", { cluster, reason: decision.refused });
            await this.d.releases.refuseRotation(cluster, decision.refused);
            this.refusalsAudited.add(`${cluster}\n${decision.refused}`);
          }
          return { trust: decision.trust, note: `trust change refused: ${decision.refused}` };
        case "accept":
          if (await this.d.releases.acceptTrust(cluster, decision.trust, decision.how, decision.previous)) {
            ctx.log.info("release trust accepted", { cluster, how: decision.how, keys: decision.trust.keys.map((k) => k.keyId), threshold: decision.trust.threshold });
            return { trust: decision.trust };
          }
      }
    }
    throw new Error(`release trust of cluster ${cluster} kept changing under the controller`);
  }
}
