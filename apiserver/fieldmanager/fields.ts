/**
 * Walks over JSON values in structured-merge-diff's terms: the fields a value
 * sets, how two values differ field by field, merging an applied
 * configuration, and removing fields.
 */

import { isObj, jsonEqual } from "../object.js";
import type { Obj } from "../object.js";
import { FieldSet, fieldToken } from "./field-set.js";
import { ITEM, itemTokens, listTypeAt } from "./schema.js";

function presentKeys(v: Obj): string[] {
  return Object.keys(v).filter((k) => v[k] !== undefined);
}

/**
 * The fields a configuration sets, as kube's ToFieldSet: scalars, atomic
 * lists, empty maps and list items are members; non-empty maps are not
 * members themselves (only their children are).
 */
export function toFieldSet(value: Obj): FieldSet {
  const set = new FieldSet();
  const walk = (v: unknown, path: string[], schema: string[]): void => {
    if (isObj(v)) {
      const keys = presentKeys(v);
      if (keys.length === 0) set.insert(path);
      for (const k of keys) walk(v[k], [...path, fieldToken(k)], [...schema, k]);
      return;
    }
    if (Array.isArray(v)) {
      const tokens = itemTokens(listTypeAt(schema), v);
      if (tokens === undefined) {
        set.insert(path);
        return;
      }
      v.forEach((item: unknown, i) => {
        const itemPath = [...path, tokens[i] ?? ""];
        walk(item, itemPath, [...schema, ITEM]);
        set.insert(itemPath);
      });
      return;
    }
    set.insert(path);
  };
  walk(value, [], []);
  return set;
}

/** How `rhs` differs from `lhs`; no path is in more than one set. */
export interface Comparison {
  added: FieldSet;
  modified: FieldSet;
  removed: FieldSet;
}

type Kind = "absent" | "map" | "list" | "scalar";

function kindOf(v: unknown): Kind {
  if (v === undefined) return "absent";
  if (isObj(v)) return "map";
  if (Array.isArray(v)) return "list";
  return "scalar";
}

function isEmptyContainer(v: unknown): boolean {
  if (v === undefined) return true;
  if (isObj(v)) return presentKeys(v).length === 0;
  return Array.isArray(v) && v.length === 0;
}

/**
 * Kube's Compare: scalars and atomic lists are leaves (added, removed or
 * modified); a map or list item present on one side only is itself added or
 * removed, along with everything below it.
 */
export function compare(lhs: Obj, rhs: Obj): Comparison {
  const out: Comparison = { added: new FieldSet(), modified: new FieldSet(), removed: new FieldSet() };

  const leaf = (l: unknown, r: unknown, path: string[]): void => {
    if (l === undefined) out.added.insert(path);
    else if (r === undefined) out.removed.insert(path);
    else if (!jsonEqual(l, r)) out.modified.insert(path);
  };

  const walk = (l: unknown, r: unknown, path: string[], schema: string[]): void => {
    const kl = kindOf(l);
    const kr = kindOf(r);
    if (kl !== "absent" && kr !== "absent" && kl !== kr) {
      // The field changed shape: what was below it is gone, what is below it now is new.
      walk(l, undefined, path, schema);
      walk(undefined, r, path, schema);
      out.removed = out.removed.difference(pathSet(path));
      out.added = out.added.difference(pathSet(path));
      out.modified.insert(path);
      return;
    }
    const kind = kl === "absent" ? kr : kl;
    if (kind === "map") {
      if (isEmptyContainer(l) && isEmptyContainer(r)) return leaf(l, r, path);
      const lm = isObj(l) ? l : {};
      const rm = isObj(r) ? r : {};
      const keys = new Set([...presentKeys(lm), ...presentKeys(rm)]);
      for (const k of keys) walk(lm[k], rm[k], [...path, fieldToken(k)], [...schema, k]);
    } else if (kind === "list") {
      if (isEmptyContainer(l) && isEmptyContainer(r)) return leaf(l, r, path);
      const ll = Array.isArray(l) ? l : [];
      const rl = Array.isArray(r) ? r : [];
      const type = listTypeAt(schema);
      const lt = itemTokens(type, ll);
      const rt = itemTokens(type, rl);
      if (lt === undefined || rt === undefined) return leaf(l, r, path);
      const lItems = new Map(lt.map((t, i) => [t, ll[i]]));
      const rItems = new Map(rt.map((t, i) => [t, rl[i]]));
      for (const t of new Set([...rt, ...lt])) walk(lItems.get(t), rItems.get(t), [...path, t], [...schema, ITEM]);
    } else {
      return leaf(l, r, path);
    }
    if (kl === "absent") out.added.insert(path);
    else if (kr === "absent") out.removed.insert(path);
  };

  walk(lhs, rhs, [], []);
  return out;
}

function pathSet(path: string[]): FieldSet {
  const s = new FieldSet();
  s.insert(path);
  return s;
}

/**
 * Merges an applied configuration into a live object: maps merge key by key,
 * associative lists item by item (live order, new items appended), atomic
 * lists and scalars are replaced, and a null in the configuration removes the
 * field. Returns a new value; inputs are not modified.
 */
export function mergeConfig(live: Obj, config: Obj): Obj {
  const merged = mergeValue(live, config, []);
  return isObj(merged) ? merged : {};
}

function mergeValue(l: unknown, r: unknown, schema: string[]): unknown {
  if (isObj(l) && isObj(r)) {
    const out: Obj = structuredClone(l);
    for (const k of presentKeys(r)) {
      if (r[k] === null) delete out[k];
      else out[k] = mergeValue(l[k], r[k], [...schema, k]);
    }
    return out;
  }
  if (Array.isArray(l) && Array.isArray(r)) {
    const type = listTypeAt(schema);
    const lt = itemTokens(type, l);
    const rt = itemTokens(type, r);
    if (lt !== undefined && rt !== undefined) {
      const rItems = new Map(rt.map((t, i): [string, unknown] => [t, r[i]]));
      const itemSchema = [...schema, ITEM];
      const out: unknown[] = l.map((item: unknown, i) => {
        const t = lt[i] ?? "";
        return rItems.has(t) ? mergeValue(item, rItems.get(t), itemSchema) : structuredClone(item);
      });
      rt.forEach((t, i) => {
        if (!lt.includes(t)) out.push(structuredClone(r[i]));
      });
      return out;
    }
  }
  return structuredClone(r);
}

/**
 * `value` without the fields that are members of `set`. A map or list that
 * becomes empty because of the removal is removed from its parent as well
 * (kube leaves it null).
 */
export function removeFields(value: Obj, set: FieldSet): Obj {
  const result = removeValue(value, set, []);
  return isObj(result) ? result : {};
}

function removeValue(v: unknown, node: FieldSet, schema: string[]): unknown {
  if (isObj(v)) {
    const out: Obj = {};
    let removedAny = false;
    for (const k of presentKeys(v)) {
      const child = node.children.get(fieldToken(k));
      if (child === undefined) {
        out[k] = v[k];
      } else if (child.member) {
        removedAny = true;
      } else {
        const sub = removeValue(v[k], child, [...schema, k]);
        if (sub === undefined) removedAny = true;
        else out[k] = sub;
      }
    }
    return removedAny && Object.keys(out).length === 0 && schema.length > 0 ? undefined : out;
  }
  if (Array.isArray(v)) {
    const tokens = itemTokens(listTypeAt(schema), v);
    if (tokens === undefined) return v;
    const out: unknown[] = [];
    let removedAny = false;
    v.forEach((item: unknown, i) => {
      const child = node.children.get(tokens[i] ?? "");
      if (child === undefined) {
        out.push(item);
      } else if (child.member) {
        removedAny = true;
      } else {
        const sub = removeValue(item, child, [...schema, ITEM]);
        if (sub === undefined) removedAny = true;
        else out.push(sub);
      }
    });
    return removedAny && out.length === 0 ? undefined : out;
  }
  return v;
}
