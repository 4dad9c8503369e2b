/**
 * Server-side apply (structured-merge-diff's Updater.Apply, without OpenAPI).
 */

import { isObj, jsonEqual } from "../object.js";
import type { Obj } from "../object.js";
import { FieldSet, pathString } from "./field-set.js";
import { compare, mergeConfig, removeFields, toFieldSet } from "./fields.js";
import { ApplyConflictError, ApplyInvalidError, describeManager } from "./errors.js";
import type { Conflict } from "./errors.js";
import { decodeManagers, encodeManagers, sameManager } from "./managers.js";
import type { Manager } from "./managers.js";
import { applicableConfig, defaultExclusion, excludePaths, trackable } from "./schema.js";

/** Options of {@link apply}. */
export interface ApplyOptions {
  /** The field manager (kubectl sends `fieldManager`; kubectl's default is "kubectl"). */
  manager: string;
  /** Take fields from other managers instead of failing on conflicts. */
  force: boolean;
  /** RFC 3339 time recorded on the manager's entry. */
  now: string;
  /** "status" when applying to the status subresource. */
  subresource?: "status";
  /**
   * Field-name paths the operation leaves alone (neither written nor owned).
   * Default: [["status"]] on the main resource; everything but status on the
   * status subresource.
   */
  ignorePaths?: string[][];
}

/** kubectl's client-side apply annotation, kept in step by `kubectl apply --server-side`. */
export const LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration";

/** Kube only upgrades the client-side apply annotation for this manager. */
const KUBECTL_MANAGER = "kubectl";

function metadataOf(o: Obj): Obj {
  const m = o.metadata;
  return isObj(m) ? m : {};
}

function withoutManagedFields(o: Obj): Obj {
  const copy = structuredClone(o);
  const meta = copy.metadata;
  if (isObj(meta)) delete meta.managedFields;
  return copy;
}

function sameManagers(a: readonly Manager[], b: readonly Manager[]): boolean {
  const live = (ms: readonly Manager[]) => ms.filter((m) => !m.set.isEmpty());
  const la = live(a);
  const lb = live(b);
  return (
    la.length === lb.length &&
    la.every((m) => {
      const other = lb.find((n) => sameManager(n, m));
      return other !== undefined && other.apiVersion === m.apiVersion && other.set.equals(m.set);
    })
  );
}

/**
 * Server-side apply. `current` is the live object (undefined when creating),
 * `applied` the user's configuration. Returns a new object with
 * metadata.managedFields updated; inputs are not modified. A no-op apply
 * returns a copy of `current` unchanged (entry times included).
 *
 * Throws {@link ApplyConflictError} when, without `force`, the apply would
 * change a field another manager owns; {@link ApplyInvalidError} when the
 * configuration carries managedFields or lacks apiVersion.
 */
export function apply(current: Obj | undefined, applied: Obj, opts: ApplyOptions): Obj {
  const apiVersion = applied.apiVersion;
  if (typeof apiVersion !== "string" || apiVersion === "") {
    throw new ApplyInvalidError("apiVersion must be set in the applied configuration");
  }
  const appliedManaged = metadataOf(applied).managedFields;
  if (Array.isArray(appliedManaged) ? appliedManaged.length > 0 : appliedManaged !== undefined && appliedManaged !== null) {
    throw new ApplyInvalidError("metadata.managedFields must be nil");
  }

  const excluded = opts.ignorePaths !== undefined ? excludePaths(opts.ignorePaths) : defaultExclusion(opts.subresource);
  const live = current === undefined ? {} : withoutManagedFields(current);
  const before = current === undefined ? [] : decodeManagers(metadataOf(current).managedFields);
  const config = applicableConfig(applied, excluded);
  const configSet = trackable(toFieldSet(config), excluded);
  const selfId = { manager: opts.manager, operation: "Apply" as const, subresource: opts.subresource, apiVersion };
  const self = before.find((m) => sameManager(m, selfId));
  const others = before.filter((m) => m !== self);

  let merged = mergeConfig(live, config);
  if (self !== undefined) {
    // Prune what this manager applied last time, no longer applies, and nobody else owns.
    const ownedByOthers = others.reduce((acc, m) => acc.union(m.set), new FieldSet());
    merged = removeFields(merged, self.set.difference(configSet).difference(ownedByOthers));
  }

  const diff = compare(live, merged);
  const changed = trackable(diff.modified.union(diff.added), excluded);
  const removed = trackable(diff.removed, excluded);

  const conflicts: Conflict[] = [];
  for (const other of others) {
    for (const path of other.set.intersection(changed).paths()) {
      conflicts.push({ manager: other.manager, field: pathString(path), message: `conflict with ${describeManager(other)}` });
    }
  }
  if (conflicts.length > 0 && !opts.force) throw new ApplyConflictError(conflicts);

  const after: Manager[] = others.map((m) => ({ ...m, set: m.set.difference(changed).difference(removed) }));
  after.push({ ...selfId, time: opts.now, set: configSet });

  if (current !== undefined && jsonEqual(merged, live) && sameManagers(before, after)) {
    return structuredClone(current);
  }

  if (opts.manager === KUBECTL_MANAGER) syncLastApplied(merged, applied);
  const entries = encodeManagers(after, opts.now);
  const meta = isObj(merged.metadata) ? merged.metadata : {};
  if (entries.length > 0) meta.managedFields = entries;
  else delete meta.managedFields;
  merged.metadata = meta;
  return merged;
}

/**
 * Kube's lastAppliedUpdater: when kubectl applies server-side to an object
 * that still carries the client-side apply annotation, the annotation is
 * rewritten to the applied configuration so a later client-side apply does
 * not undo the server-side one.
 */
function syncLastApplied(merged: Obj, applied: Obj): void {
  const annotations = metadataOf(merged).annotations;
  if (!isObj(annotations) || typeof annotations[LAST_APPLIED_ANNOTATION] !== "string") return;
  const config = structuredClone(applied);
  const configAnnotations = metadataOf(config).annotations;
  if (isObj(configAnnotations)) {
    delete configAnnotations[LAST_APPLIED_ANNOTATION];
    if (Object.keys(configAnnotations).length === 0) delete metadataOf(config).annotations;
  }
  annotations[LAST_APPLIED_ANNOTATION] = JSON.stringify(config);
}
