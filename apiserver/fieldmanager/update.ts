/**
 * Field tracking for writes that are not apply: create, update (PUT), merge
 * and JSON patches (structured-merge-diff's Updater.Update behind kube's
 * managedFieldsUpdater, skipNonAppliedManager and capManagersManager).
 */

import { isObj } from "../object.js";
import type { Obj } from "../object.js";
import { compare } from "./fields.js";
import { capUpdateManagers, decodeManagers, encodeManagers, isResetRequest, sameManager } from "./managers.js";
import type { Manager } from "./managers.js";
import { defaultExclusion, excludePaths, trackable } from "./schema.js";

/** Options of {@link trackUpdate}. */
export interface UpdateOptions {
  /** The field manager (the request's fieldManager, else derived from the user agent). */
  manager: string;
  /** RFC 3339 time recorded on the manager's entry when it changed something. */
  now: string;
  /** "status" for writes to the status subresource. */
  subresource?: "status";
  /** As in apply: default [["status"]] on the main resource, everything but status on the status subresource. */
  ignorePaths?: string[][];
}

function metadataOf(o: Obj | undefined): Obj {
  const m = o?.metadata;
  return isObj(m) ? m : {};
}

/**
 * Which managers the write starts from, as kube's decodeLiveOrNew: a
 * subresource write cannot set managedFields; `[]` or `[{}]` in the request
 * clears them; a request without (valid) managedFields keeps the live ones.
 */
function startingManagers(previous: Obj | undefined, requested: unknown, subresource: string | undefined): Manager[] {
  const live = decodeManagers(metadataOf(previous).managedFields);
  if (subresource !== undefined) return live;
  if (isResetRequest(requested)) return [];
  const fromRequest = decodeManagers(requested);
  return fromRequest.length > 0 ? fromRequest : live;
}

/**
 * Tracks a non-apply write. Returns a copy of `next` whose managedFields say:
 * fields added or changed between `previous` and `next` now belong to
 * `manager` (operation Update) and to no one else; fields removed from the
 * object belong to no one; managers left without fields are dropped; past
 * ten Update managers the oldest merge into "ancient-changes". The entry's
 * time moves only when the write changed something.
 *
 * As kube does, an existing object without managedFields (legacy, or cleared
 * by the request sending `managedFields: []`) stays untracked until the next
 * apply; a create (`previous` undefined) is always tracked.
 */
export function trackUpdate(previous: Obj | undefined, next: Obj, opts: UpdateOptions): Obj {
  const result = structuredClone(next);
  const meta = metadataOf(result);
  const requested = meta.managedFields;
  delete meta.managedFields;
  result.metadata = meta;

  const before = startingManagers(previous, requested, opts.subresource);
  if (before.length === 0 && previous !== undefined) return result;

  const excluded = opts.ignorePaths !== undefined ? excludePaths(opts.ignorePaths) : defaultExclusion(opts.subresource);
  const live = structuredClone(previous ?? {});
  delete metadataOf(live).managedFields;
  const diff = compare(live, result);
  const changed = trackable(diff.modified.union(diff.added), excluded);
  const removed = trackable(diff.removed, excluded);

  let after: Manager[] = before.map((m) => ({ ...m, set: m.set.difference(changed).difference(removed) }));
  if (!changed.isEmpty()) {
    const prevApiVersion = previous?.apiVersion;
    const apiVersion =
      typeof result.apiVersion === "string" ? result.apiVersion : typeof prevApiVersion === "string" ? prevApiVersion : "";
    const id = { manager: opts.manager, operation: "Update" as const, subresource: opts.subresource, apiVersion };
    const mine = after.find((m) => sameManager(m, id));
    after = after.filter((m) => m !== mine);
    after.push({ ...id, time: opts.now, set: mine === undefined ? changed : mine.set.union(changed) });
  }

  const entries = encodeManagers(capUpdateManagers(after), opts.now);
  if (entries.length > 0) meta.managedFields = entries;
  return result;
}
