/**
 * JoinTokenReconciler: generates each token once, stores the raw value only
 * in a Secret (namespace fabric-system, key `token`) and only the hash in
 * PostgreSQL, records revocation and expiry (audited), deletes the Secret as
 * soon as the token can no longer be used, deletes every token object a
 * retention period after its expiry (exhausted and revoked ones too), and
 * publishes uses, expiry and the Ready condition (reasons Active, Expired,
 * Exhausted, Revoked).
 */
import type { CoreV1Api, CustomObjectsApi, V1Secret } from "@kubernetes/client-node";
import { RESOURCES } from "../../lib/api/types.generated.js";
import { generateToken, hashSecret, parseDuration, parseToken } from "../../lib/enrollment/token.js";
import { FABRIC_NAMESPACE } from "../../lib/kube/namespace.js";
import type { ClusterStore, TokenStore } from "../../lib/state/index.js";
import type { JoinTokenObject as JoinToken } from "../objects.js";
import { TerminalError, httpStatusOf, patchStatusIfChanged, realClock, recordAll, setCondition, type Clock, type Condition, type EventRecorderLike, type Informer, type ObjectKey, type ReconcileContext, type ReconcileResult, type Reconciler } from "../runtime/index.js";
import { tokenCreatedEvent, tokenStateEvents } from "./events.js";
import { TokenReasons, desiredTokenStatus, tokenExpiry, tokenState } from "./plan.js";

/** Secret name of a token. */
export function tokenSecretName(token: string): string {
  return `jointoken-${token}`;
}

/** Dependencies of JoinTokenReconciler. */
export interface JoinTokenReconcilerDeps {
  informer: Informer<JoinToken>;
  tokens: TokenStore;
  clusters: ClusterStore;
  api: CustomObjectsApi;
  core: CoreV1Api;
  /** How long an expired token object is kept before deletion (default 1 h). */
  expiredRetentionMs?: number;
  clock?: Clock;
  /** Kubernetes Events (created, expired, exhausted, revoked). */
  events?: EventRecorderLike;
}

const res = RESOURCES.JoinToken;
const DEFAULT_TTL = "30m";
const DEFAULT_MAX_TTL = "24h";

/** See the module comment. */
export class JoinTokenReconciler implements Reconciler {
  private namespaceReady = false;
  constructor(private readonly d: JoinTokenReconcilerDeps) {}

  private now(): Date {
    return new Date((this.d.clock ?? realClock).now());
  }

  async reconcile(key: ObjectKey, ctx: ReconcileContext): Promise<ReconcileResult | void> {
    const obj = this.d.informer.get(key);
    if (obj === undefined) {
      await this.deleteSecret(key.name);
      if (await this.d.tokens.delete(key.name)) ctx.log.info("token row deleted", { token: key.name });
      return;
    }
    const uid = obj.metadata.uid;
    if (uid === undefined || uid === "") throw new TerminalError(`JoinToken ${key.name} has no metadata.uid`);
    const generation = obj.metadata.generation ?? 0;
    const target = { group: res.group, version: res.version, plural: res.plural, name: key.name };
    let row = await this.d.tokens.get(key.name);
    if (row === undefined || row.uid !== uid) {
      const cluster = await this.d.clusters.get(obj.spec.cluster);
      if (cluster === undefined) {
        const conditions = setCondition(
          obj.status?.conditions as Condition[] | undefined,
          { type: "Ready", status: "False", reason: TokenReasons.ClusterNotFound, message: `cluster ${obj.spec.cluster} does not exist (yet)`, observedGeneration: generation },
          this.now(),
        );
        await patchStatusIfChanged(this.d.api, target, obj.status, { ...obj.status, observedGeneration: generation, conditions });
        return { requeueAfterMs: 5_000 };
      }
      const policy = (cluster.spec.enrollmentPolicy ?? {}) as { maxTokenTTL?: string };
      let ttlMs: number;
      try {
        ttlMs = parseDuration(obj.spec.ttl ?? DEFAULT_TTL);
      } catch (err) {
        throw new TerminalError(`JoinToken ${key.name}: invalid ttl`, { cause: err });
      }
      const created = obj.metadata.creationTimestamp === undefined ? this.now() : new Date(obj.metadata.creationTimestamp);
      const expiresAt = tokenExpiry(created, ttlMs, parseDuration(policy.maxTokenTTL ?? DEFAULT_MAX_TTL));
      const raw = await this.ensureSecret(key.name, uid);
      const parsed = parseToken(raw);
      if (parsed === undefined) throw new Error(`token Secret of ${key.name} holds a malformed token`);
      await this.d.tokens.create({
        name: key.name,
        uid,
        tokenId: parsed.id,
        secretHash: hashSecret(parsed.secret),
        cluster: obj.spec.cluster,
        expiresAt,
        maxUses: obj.spec.maxUses ?? 1,
        allowedRoles: obj.spec.allowedRoles ?? [],
        autoApprove: obj.spec.autoApprove ?? false,
        nodeGroup: obj.spec.nodeGroup ?? null,
      });
      ctx.log.info("join token created", { token: key.name, cluster: obj.spec.cluster, expiresAt: expiresAt.toISOString() });
      recordAll(this.d.events, obj, [tokenCreatedEvent(obj.spec.cluster, expiresAt, obj.spec.maxUses ?? 1)]);
      row = await this.d.tokens.get(key.name);
      if (row === undefined) throw new Error("token row missing after create");
    }
    const now = this.now();
    const state = tokenState(row, obj.spec.revoked === true, now);
    if (state === "Revoked" && row.revokedAt === null) {
      await this.d.tokens.revoke(key.name, "spec.revoked set");
      ctx.log.info("join token revoked", { token: key.name, cluster: row.cluster, used: row.used, maxUses: row.maxUses });
    }
    if (state === "Expired" && row.expiredAt === null) await this.d.tokens.markExpired(key.name);
    let secretRef: { name: string; namespace: string } | undefined;
    if (state === "Active") secretRef = { name: tokenSecretName(key.name), namespace: FABRIC_NAMESPACE };
    else await this.deleteSecret(key.name);

    // Every token expires, also an exhausted or revoked one: its object goes a retention period after its expiry.
    const retention = this.d.expiredRetentionMs ?? 3_600_000;
    const deleteAt = row.expiresAt.getTime() + retention;
    if (now.getTime() >= deleteAt) {
      try {
        await this.d.api.deleteClusterCustomObject({ group: res.group, version: res.version, plural: res.plural, name: key.name });
        ctx.log.info("expired join token deleted", { token: key.name });
      } catch (err) {
        if (httpStatusOf(err) !== 404) throw err;
      }
      return;
    }
    const status = desiredTokenStatus(obj.status, generation, row, state, secretRef, now);
    const published = (obj.status?.conditions as Condition[] | undefined)?.find((c) => c.type === "Ready")?.reason;
    recordAll(this.d.events, obj, tokenStateEvents(published, state, row));
    await patchStatusIfChanged(this.d.api, target, obj.status, status);
    if (state === "Active") return { requeueAfterMs: Math.max(50, row.expiresAt.getTime() - now.getTime() + 50) };
    // Unusable: look again at the expiry (an exhausted token then reads Expired) and when the object is due for deletion.
    const next = now.getTime() < row.expiresAt.getTime() ? row.expiresAt.getTime() : deleteAt;
    return { requeueAfterMs: Math.max(1000, next - now.getTime() + 50) };
  }

  /** The raw token from the Secret, creating both on first sight (idempotent across retries). */
  private async ensureSecret(name: string, uid: string): Promise<string> {
    await this.ensureNamespace();
    const secretName = tokenSecretName(name);
    try {
      const s = await this.d.core.readNamespacedSecret({ name: secretName, namespace: FABRIC_NAMESPACE });
      const ownerUid = s.metadata?.annotations?.["accessfabric.io/jointoken-uid"];
      const data = s.data?.token;
      if (ownerUid === uid && data !== undefined) return Buffer.from(data, "base64").toString("utf8");
      // A Secret left from an older token of the same name: replace it.
      await this.d.core.deleteNamespacedSecret({ name: secretName, namespace: FABRIC_NAMESPACE });
    } catch (err) {
      if (httpStatusOf(err) !== 404) throw err;
    }
    const t = generateToken();
    const body: V1Secret = {
      apiVersion: "v1",
      kind: "Secret",
      metadata: {
        name: secretName,
        namespace: FABRIC_NAMESPACE,
        labels: { "accessfabric.io/jointoken": name },
        annotations: { "accessfabric.io/jointoken-uid": uid },
      },
      type: "accessfabric.io/join-token",
      data: { token: Buffer.from(t.token).toString("base64"), "token-id": Buffer.from(t.id).toString("base64") },
    };
    await this.d.core.createNamespacedSecret({ namespace: FABRIC_NAMESPACE, body });
    return t.token;
  }

  private async ensureNamespace(): Promise<void> {
    if (this.namespaceReady) return;
    try {
      await this.d.core.createNamespace({ body: { apiVersion: "v1", kind: "Namespace", metadata: { name: FABRIC_NAMESPACE } } });
    } catch (err) {
      if (httpStatusOf(err) !== 409) throw err;
    }
    this.namespaceReady = true;
  }

  private async deleteSecret(name: string): Promise<void> {
    try {
      await this.d.core.deleteNamespacedSecret({ name: tokenSecretName(name), namespace: FABRIC_NAMESPACE });
    } catch (err) {
      if (httpStatusOf(err) !== 404) throw err;
    }
  }
}
