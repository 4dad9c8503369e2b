/**
 * metadata.managedFields in and out of its working form, with kube's rules
 * for identity, ordering and the cap on update managers.
 */

import { isObj } from "../object.js";
import type { Obj } from "../object.js";
import { FieldSet } from "./field-set.js";

/** One entry of metadata.managedFields, as kube serves it. */
export interface ManagedFieldsEntry {
  manager: string;
  operation: "Apply" | "Update";
  apiVersion: string;
  time: string;
  fieldsType: "FieldsV1";
  fieldsV1: Obj;
  subresource?: string;
}

/** A managedFields entry with its fields decoded. */
export interface Manager {
  manager: string;
  operation: "Apply" | "Update";
  apiVersion: string;
  time: string | undefined;
  subresource: string | undefined;
  set: FieldSet;
}

/** The manager kube merges the oldest update managers into. */
export const ANCIENT_CHANGES = "ancient-changes";

/** Kube keeps at most this many Update entries (DefaultMaxUpdateManagers). */
export const MAX_UPDATE_MANAGERS = 10;

/**
 * Kube's manager identity: name, operation and subresource, plus the API
 * version for Update entries (appliers keep one entry across versions).
 */
export function sameManager(
  m: Manager,
  id: { manager: string; operation: "Apply" | "Update"; subresource: string | undefined; apiVersion: string },
): boolean {
  return (
    m.manager === id.manager &&
    m.operation === id.operation &&
    (m.subresource ?? "") === (id.subresource ?? "") &&
    (m.operation === "Apply" || m.apiVersion === id.apiVersion)
  );
}

/** True when a request asks to clear managedFields: `[]` or `[{}]`. */
export function isResetRequest(v: unknown): boolean {
  if (!Array.isArray(v)) return false;
  if (v.length === 0) return true;
  const [only] = v;
  return v.length === 1 && isObj(only) && Object.keys(only).length === 0;
}

/**
 * Decodes metadata.managedFields. Entries that are not FieldsV1 or lack a
 * manager identity are dropped; duplicate identities are merged.
 */
export function decodeManagers(v: unknown): Manager[] {
  const out: Manager[] = [];
  if (!Array.isArray(v)) return out;
  for (const raw of v) {
    if (!isObj(raw)) continue;
    const { manager, operation, apiVersion, time, fieldsType, fieldsV1, subresource } = raw;
    if (typeof manager !== "string" || (operation !== "Apply" && operation !== "Update")) continue;
    if (fieldsType !== undefined && fieldsType !== "FieldsV1") continue;
    const decoded: Manager = {
      manager,
      operation,
      apiVersion: typeof apiVersion === "string" ? apiVersion : "",
      time: typeof time === "string" ? time : undefined,
      subresource: typeof subresource === "string" && subresource !== "" ? subresource : undefined,
      set: FieldSet.fromFieldsV1(fieldsV1),
    };
    const existing = out.find((m) => sameManager(m, decoded));
    if (existing === undefined) out.push(decoded);
    else existing.set = existing.set.union(decoded.set);
  }
  return out;
}

/**
 * Kube's metav1.Time form of an RFC 3339 time: UTC, whole seconds
 * ("2024-01-01T00:00:00Z"). Unparseable input is returned as given.
 */
export function kubeTime(time: string): string {
  const ms = Date.parse(time);
  if (Number.isNaN(ms)) return time;
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(".000Z", "Z");
}

function seconds(time: string | undefined): number {
  if (time === undefined) return 0;
  const ms = Date.parse(time);
  return Number.isNaN(ms) ? 0 : Math.floor(ms / 1000);
}

function cmpStr(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Encodes managers as kube does: empty sets dropped, entries sorted by
 * operation (Apply first), time (seconds), manager, apiVersion, subresource.
 * An entry without a time gets `fallbackTime`.
 */
export function encodeManagers(managers: readonly Manager[], fallbackTime: string): ManagedFieldsEntry[] {
  const kept = managers.filter((m) => !m.set.isEmpty());
  kept.sort(
    (p, q) =>
      cmpStr(p.operation, q.operation) ||
      seconds(p.time) - seconds(q.time) ||
      cmpStr(p.manager, q.manager) ||
      cmpStr(p.apiVersion, q.apiVersion) ||
      cmpStr(p.subresource ?? "", q.subresource ?? ""),
  );
  return kept.map((m) => {
    const entry: ManagedFieldsEntry = {
      manager: m.manager,
      operation: m.operation,
      apiVersion: m.apiVersion,
      time: kubeTime(m.time ?? fallbackTime),
      fieldsType: "FieldsV1",
      fieldsV1: m.set.toFieldsV1(),
    };
    if (m.subresource !== undefined) entry.subresource = m.subresource;
    return entry;
  });
}

/**
 * Kube's capManagersManager: when there are more than `max` Update entries,
 * the oldest are merged into an "ancient-changes" entry per API version.
 */
export function capUpdateManagers(managers: readonly Manager[], max = MAX_UPDATE_MANAGERS): Manager[] {
  let out = [...managers];
  const updaters = () => out.filter((m) => m.operation === "Update" && !m.set.isEmpty());
  if (updaters().length <= max) return out;
  const oldestFirst = updaters()
    .filter((m) => m.manager !== ANCIENT_CHANGES)
    .sort((p, q) => seconds(p.time) - seconds(q.time) || cmpStr(p.manager, q.manager));
  for (const victim of oldestFirst) {
    if (updaters().length <= max) break;
    const bucketId = { manager: ANCIENT_CHANGES, operation: "Update" as const, subresource: undefined, apiVersion: victim.apiVersion };
    const bucket = out.find((m) => sameManager(m, bucketId));
    out = out.filter((m) => m !== victim && m !== bucket);
    out.push({
      ...bucketId,
      // The merged entry is as recent as the newest update it holds.
      time: victim.time,
      set: bucket === undefined ? victim.set : bucket.set.union(victim.set),
    });
  }
  return out;
}
