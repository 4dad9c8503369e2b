/**
 * Pure decisions of the release controller.
 *
 * Trust (planTrust): a cluster's release trust set is the one the controller
 * accepted and recorded in PostgreSQL. The first `spec.releaseTrust` of a
 * cluster is accepted as written (whoever may write the FabricCluster sets
 * the root, as with the cluster itself); from then on a different set is
 * accepted only with `spec.releaseTrust.rotation`, an envelope of the new
 * set signed by the accepted set's threshold. A refused rotation leaves the
 * accepted set in force; a removed releaseTrust trusts nothing.
 *
 * Release (planRelease): verify the envelope against the trust in force
 * (lib/release verifyEnvelope: payload type, threshold of distinct known
 * keys, manifest, component, expiry, rollback against the highest version
 * ever verified for the cluster and component), then the spec's copies of
 * component and version, the uniqueness of a version, and the presence of
 * every artifact in the version store. Only when all pass is the release
 * verified; everything else is a reason.
 */
import { createHash } from "node:crypto";
import {
  compareSemver,
  isReleaseError,
  normalizeTrust,
  parseTrust,
  sameTrust,
  verifyEnvelope,
  verifyTrustRotation,
  type ArtifactRef,
  type ReleaseErrorCode,
  type TrustSet,
} from "../../lib/release/index.js";

/** Reasons of the Verified condition besides the ReleaseError codes. */
export type ReleaseReason = ReleaseErrorCode | "Verified" | "ClusterNotFound" | "NoTrust" | "ArtifactMissing" | "DuplicateVersion";

/** What to do with a cluster's trust. */
export type TrustDecision =
  | { kind: "none"; reason: "NoTrust" | "BadTrust"; message: string }
  | { kind: "use"; trust: TrustSet }
  | { kind: "accept"; trust: TrustSet; how: "initial" | "rotation"; previous: TrustSet | undefined }
  | { kind: "keep"; trust: TrustSet; refused: string };

/** See the module comment. `spec` is FabricCluster.spec.releaseTrust as written. */
export function planTrust(accepted: TrustSet | undefined, spec: unknown): TrustDecision {
  if (spec === undefined || spec === null) return { kind: "none", reason: "NoTrust", message: "the cluster has no spec.releaseTrust" };
  let wanted;
  try {
    wanted = parseTrust(spec);
  } catch (err) {
    const message = `spec.releaseTrust is invalid: ${(err as Error).message}`;
    return accepted ? { kind: "keep", trust: accepted, refused: message } : { kind: "none", reason: "BadTrust", message };
  }
  if (accepted === undefined) return { kind: "accept", trust: normalizeTrust(wanted), how: "initial", previous: undefined };
  if (sameTrust(parseTrust(accepted), wanted)) return { kind: "use", trust: accepted };
  const rotation = (spec as { rotation?: unknown }).rotation;
  if (rotation === undefined) {
    return { kind: "keep", trust: accepted, refused: "spec.releaseTrust changed without a rotation envelope signed by the accepted threshold" };
  }
  try {
    verifyTrustRotation(accepted, wanted, rotation);
  } catch (err) {
    return { kind: "keep", trust: accepted, refused: (err as Error).message };
  }
  return { kind: "accept", trust: normalizeTrust(wanted), how: "rotation", previous: accepted };
}

/** What planRelease needs. */
export interface ReleaseInput {
  spec: { cluster: string; component: string; version: string; envelope: unknown };
  /** The trust in force, or why there is none. */
  trust: { trust: TrustSet; note?: string } | { reason: "ClusterNotFound" | "NoTrust" | "BadTrust"; message: string };
  /** Highest version ever verified for (cluster, component). */
  highWater: string | undefined;
  /** Digest of the payload this release had when its signatures were last accepted (exempts it from the rollback check). */
  trustedPayload: string | undefined;
  /** Whether another release of the same (cluster, component, version) is verified. */
  twinVerified: boolean;
  /** Digests the version store holds. */
  present: ReadonlySet<string>;
  now: Date;
}

/** The outcome. */
export interface ReleasePlan {
  verified: boolean;
  reason: ReleaseReason;
  message: string;
  payloadSha256: string;
  /** Set once the signatures and manifest are accepted (even when artifacts are missing). */
  signedBy: string[];
  expires: Date | null;
  artifacts: Array<ArtifactRef & { present: boolean }>;
  /** The new high-water version to record, if it rises. */
  newHighWater: string | undefined;
  /** When to look again (expiry, missing artifacts). */
  requeueAfterMs: number | undefined;
}

/**
 * Recheck period while an artifact is missing: only the safety net, a push
 * wakes the controller at once (artifact-listener.ts).
 */
export const ARTIFACT_RECHECK_MS = 60_000;
/** Longest wait before a verified release is checked again (its expiry may be years away; timers hold 24.8 days). */
export const MAX_RECHECK_MS = 6 * 3_600_000;

export function payloadDigest(envelope: unknown): string {
  const p = (envelope as { payload?: unknown } | null)?.payload;
  return createHash("sha256").update(typeof p === "string" ? p : "").digest("hex");
}

/** See the module comment. */
export function planRelease(i: ReleaseInput): ReleasePlan {
  const payloadSha256 = payloadDigest(i.spec.envelope);
  const base = { payloadSha256, signedBy: [], expires: null, artifacts: [], newHighWater: undefined, requeueAfterMs: undefined };
  const reject = (reason: ReleaseReason, message: string, extra: Partial<ReleasePlan> = {}): ReleasePlan => ({ ...base, verified: false, reason, message, ...extra });
  if ("reason" in i.trust) return reject(i.trust.reason, i.trust.message);
  const exempt = i.trustedPayload === payloadSha256;
  let v;
  try {
    v = verifyEnvelope(i.spec.envelope, i.trust.trust, {
      component: i.spec.component,
      lastTrustedVersion: exempt ? undefined : i.highWater,
      now: i.now,
    });
  } catch (err) {
    if (isReleaseError(err)) return reject(err.code, err.message);
    throw err;
  }
  const m = v.manifest;
  const expires = new Date(m.expires);
  if (m.version !== i.spec.version) return reject("MismatchedVersion", `spec.version ${i.spec.version} differs from the signed version ${m.version}`);
  if (i.twinVerified) return reject("DuplicateVersion", `another verified Release already holds ${m.component} ${m.version} for cluster ${i.spec.cluster}`);
  const artifacts = m.artifacts.map((a) => ({ ...a, present: i.present.has(a.sha256) }));
  const newHighWater = i.highWater === undefined || compareSemver(m.version, i.highWater) > 0 ? m.version : undefined;
  const untilExpiry = Math.min(MAX_RECHECK_MS, Math.max(1_000, expires.getTime() - i.now.getTime() + 50));
  const accepted = { signedBy: v.keyIds, expires, artifacts, newHighWater };
  const missing = artifacts.filter((a) => !a.present);
  if (missing.length > 0) {
    return reject("ArtifactMissing", `the version store lacks ${missing.map((a) => `${a.os}/${a.arch} ${a.sha256.slice(0, 12)}`).join(", ")}; push with fabricctl release push`, {
      ...accepted,
      requeueAfterMs: Math.min(ARTIFACT_RECHECK_MS, untilExpiry),
    });
  }
  const note = i.trust.note ? ` (${i.trust.note})` : "";
  return {
    ...base,
    ...accepted,
    verified: true,
    reason: "Verified",
    message: `signed by ${v.keyIds.join(", ")}; ${artifacts.length} artifact(s) stored${note}`,
    requeueAfterMs: untilExpiry,
  };
}
