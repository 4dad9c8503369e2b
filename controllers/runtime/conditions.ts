/**
 * metav1.Condition helpers and a status writer that writes only changes.
 *
 * Conditions here are plain JSON (what CustomObjectsApi returns): times are
 * RFC 3339 strings with second precision, like metav1.Time.
 */
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";

/** Condition status values. */
export type ConditionStatus = "True" | "False" | "Unknown";

/** A metav1.Condition. */
export interface Condition {
  type: string;
  status: ConditionStatus;
  /** PascalCase, e.g. CertificateIssued. */
  reason: string;
  message: string;
  observedGeneration?: number;
  /** RFC 3339; moves only when status changes. */
  lastTransitionTime: string;
}

/** The fields a controller sets; lastTransitionTime is managed by setCondition. */
export type ConditionInput = Omit<Condition, "lastTransitionTime">;

/** Formats a time as metav1.Time does (RFC 3339, whole seconds, UTC). */
export function formatTime(t: Date): string {
  return t.toISOString().replace(/\.\d+Z$/, "Z");
}

/**
 * Returns a new condition list with c set (the input is not modified, so it
 * may come from a frozen cache object). lastTransitionTime is now when the
 * condition is new or its status flips, and kept otherwise. Order is stable:
 * an existing condition keeps its place, a new one is appended.
 */
export function setCondition(conditions: readonly Condition[] | undefined, c: ConditionInput, now: Date): Condition[] {
  const list = conditions ?? [];
  const existing = list.find((x) => x.type === c.type);
  const next: Condition = {
    type: c.type,
    status: c.status,
    reason: c.reason,
    message: c.message,
    ...(c.observedGeneration !== undefined ? { observedGeneration: c.observedGeneration } : {}),
    lastTransitionTime:
      existing !== undefined && existing.status === c.status ? existing.lastTransitionTime : formatTime(now),
  };
  if (existing === undefined) return [...list.map((x) => ({ ...x })), next];
  return list.map((x) => (x.type === c.type ? next : { ...x }));
}

/** Returns a new list without the condition of type t. */
export function removeCondition(conditions: readonly Condition[] | undefined, t: string): Condition[] {
  return (conditions ?? []).filter((x) => x.type !== t).map((x) => ({ ...x }));
}

/** The condition of type t, if present. */
export function getCondition(conditions: readonly Condition[] | undefined, t: string): Condition | undefined {
  return conditions?.find((x) => x.type === t);
}

/** The status of an object's condition of type t ("True", "False", "Unknown"), or undefined when it has none. */
export function conditionStatusOf(obj: { status?: { conditions?: ReadonlyArray<{ type: string; status: string }> } }, t: string): string | undefined {
  return obj.status?.conditions?.find((x) => x.type === t)?.status;
}

/** True when the condition of type t is present with status True. */
export function isTrue(conditions: readonly Condition[] | undefined, t: string): boolean {
  return getCondition(conditions, t)?.status === "True";
}

/** True when the condition of type t is present with status False. */
export function isFalse(conditions: readonly Condition[] | undefined, t: string): boolean {
  return getCondition(conditions, t)?.status === "False";
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/**
 * Deep equality under JSON semantics: object key order is ignored and keys
 * whose value is undefined count as absent; array order matters.
 */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((x, i) => jsonEqual(x, b[i]));
  }
  if (isPlainObject(a) && isPlainObject(b)) {
    const ka = Object.keys(a).filter((k) => a[k] !== undefined);
    const kb = Object.keys(b).filter((k) => b[k] !== undefined);
    if (ka.length !== kb.length) return false;
    return ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && jsonEqual(a[k], b[k]));
  }
  return false;
}

/** True when the two statuses differ (jsonEqual semantics). */
export function statusChanged(oldStatus: unknown, newStatus: unknown): boolean {
  return !jsonEqual(oldStatus ?? {}, newStatus ?? {});
}

/**
 * An RFC 7386 merge patch turning `from` into `to`: changed keys set, removed
 * keys null, nested objects diffed, arrays replaced whole. Undefined when equal.
 */
export function mergePatch(from: unknown, to: unknown): unknown {
  if (jsonEqual(from, to)) return undefined;
  if (!isPlainObject(from) || !isPlainObject(to)) return to === undefined ? null : to;
  const patch: Record<string, unknown> = {};
  for (const k of Object.keys(from)) {
    if (from[k] !== undefined && to[k] === undefined) patch[k] = null;
  }
  for (const k of Object.keys(to)) {
    if (to[k] === undefined) continue;
    const p = mergePatch(from[k], to[k]);
    if (p !== undefined) patch[k] = p;
  }
  return patch;
}

/** The custom object whose status is written. */
export interface StatusTarget {
  group: string;
  version: string;
  plural: string;
  /** Omit for cluster-scoped kinds. */
  namespace?: string;
  name: string;
}

/** Options of patchStatusIfChanged. */
export interface PatchStatusOptions {
  /** Adds metadata.resourceVersion to the patch so a stale cache yields 409 Conflict (then retry). */
  resourceVersion?: string;
  fieldManager?: string;
}

/**
 * Writes status through the /status subresource with a JSON merge patch, but
 * only when newStatus differs from cachedStatus (the status of the object the
 * reconcile read). Removed fields are sent as null, so the server's status
 * ends up equal to newStatus. Returns whether a request was made.
 *
 * client-node 2.x sends json-patch+json by default for these calls; the
 * Content-Type is switched with setHeaderOptions(PatchStrategy.MergePatch).
 */
export async function patchStatusIfChanged(
  api: CustomObjectsApi,
  target: StatusTarget,
  cachedStatus: unknown,
  newStatus: unknown,
  opts: PatchStatusOptions = {},
): Promise<boolean> {
  const statusPatch = mergePatch(cachedStatus ?? {}, newStatus ?? {});
  if (statusPatch === undefined) return false;
  const body: Record<string, unknown> = { status: statusPatch };
  if (opts.resourceVersion !== undefined) body.metadata = { resourceVersion: opts.resourceVersion };
  const options = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);
  const { group, version, plural, name, namespace } = target;
  if (namespace === undefined) {
    await api.patchClusterCustomObjectStatus({ group, version, plural, name, body, fieldManager: opts.fieldManager }, options);
  } else {
    await api.patchNamespacedCustomObjectStatus(
      { group, version, plural, namespace, name, body, fieldManager: opts.fieldManager },
      options,
    );
  }
  return true;
}
