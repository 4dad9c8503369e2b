/**
 * The little schema knowledge field management needs without OpenAPI: which
 * lists are associative, which fields are never tracked, and which fields an
 * operation ignores.
 */

import { isObj } from "../object.js";
import type { Obj } from "../object.js";
import { fieldToken, keyToken, valueToken } from "./field-set.js";
import type { FieldPath, FieldSet } from "./field-set.js";

/** How a list is merged and owned. */
export type ListType =
  | { kind: "atomic" }
  /** x-kubernetes-list-type: set — scalar items, owned one by one as `v:`. */
  | { kind: "set" }
  /** x-kubernetes-list-type: map — object items, owned one by one as `k:` by `keys`. */
  | { kind: "map"; keys: readonly string[] };

/** Marks a list item in a schema path (the path of field names used to look up list types). */
export const ITEM = "[]";

const ASSOCIATIVE_LISTS: ReadonlyArray<{ path: readonly string[]; type: ListType }> = [
  { path: ["metadata", "finalizers"], type: { kind: "set" } },
  { path: ["metadata", "ownerReferences"], type: { kind: "map", keys: ["uid"] } },
  { path: ["status", "conditions"], type: { kind: "map", keys: ["type"] } },
];

/** The declared type of the list at `schemaPath` (field names, ITEM for list items). */
export function listTypeAt(schemaPath: readonly string[]): ListType {
  for (const rule of ASSOCIATIVE_LISTS) {
    if (rule.path.length === schemaPath.length && rule.path.every((p, i) => p === schemaPath[i])) return rule.type;
  }
  return { kind: "atomic" };
}

/**
 * The token of each item when `list` can be treated as `type`, else undefined
 * (then the list is handled as atomic): map items must be objects carrying
 * every key, set items must be scalars, and no two items may share a token.
 */
export function itemTokens(type: ListType, list: readonly unknown[]): string[] | undefined {
  if (type.kind === "atomic") return undefined;
  const tokens: string[] = [];
  for (const item of list) {
    let token: string;
    if (type.kind === "set") {
      if (typeof item === "object" && item !== null) return undefined;
      token = valueToken(item);
    } else {
      if (!isObj(item)) return undefined;
      const key: Obj = {};
      for (const k of type.keys) {
        const v = item[k];
        if (v === undefined || v === null || typeof v === "object") return undefined;
        key[k] = v;
      }
      token = keyToken(key);
    }
    if (tokens.includes(token)) return undefined;
    tokens.push(token);
  }
  return tokens;
}

/** Metadata the server owns: never tracked, never taken from an applied configuration. */
export const SERVER_METADATA: readonly string[] = [
  "managedFields",
  "resourceVersion",
  "uid",
  "creationTimestamp",
  "generation",
  "deletionTimestamp",
  "deletionGracePeriodSeconds",
  "selfLink",
];

/** Identity fields: kept in the object, never tracked (kube's stripMetaManager). */
const UNTRACKED_ROOT = new Set([fieldToken("apiVersion"), fieldToken("kind")]);
const UNTRACKED_METADATA = new Set([...SERVER_METADATA, "name", "namespace", "clusterName"].map(fieldToken));

function isUntracked(path: FieldPath): boolean {
  if (path.length === 1) return UNTRACKED_ROOT.has(path[0] ?? "");
  return path.length === 2 && path[0] === fieldToken("metadata") && UNTRACKED_METADATA.has(path[1] ?? "");
}

/** Which fields an operation leaves alone: they are neither written nor tracked. */
export type Exclusion = (path: FieldPath) => boolean;

/** Excludes the given field-name paths and everything below them. */
export function excludePaths(paths: readonly (readonly string[])[]): Exclusion {
  const tokenPaths = paths.map((p) => p.map(fieldToken));
  return (path) => tokenPaths.some((p) => p.length > 0 && p.length <= path.length && p.every((t, i) => t === path[i]));
}

/**
 * The default exclusion: the main resource leaves `status` to the status
 * subresource; the status subresource only touches `status`.
 */
export function defaultExclusion(subresource: string | undefined): Exclusion {
  if (subresource === "status") return (path) => path[0] !== fieldToken("status");
  return excludePaths([["status"]]);
}

/** `set` without untracked fields, excluded fields, and the `metadata` node itself. */
export function trackable(set: FieldSet, excluded: Exclusion): FieldSet {
  const out = set.without((path) => isUntracked(path) || excluded(path));
  const metadata = out.at([fieldToken("metadata")]);
  if (metadata !== undefined) metadata.member = false;
  return out;
}

/**
 * A copy of an applied configuration without excluded fields and without the
 * server's metadata; identity fields (apiVersion, kind, name, namespace) stay.
 */
export function applicableConfig(config: Obj, excluded: Exclusion): Obj {
  const walk = (v: Obj, prefix: string[]): Obj => {
    const out: Obj = {};
    for (const [k, child] of Object.entries(v)) {
      const path = [...prefix, k];
      const tokens = path.map(fieldToken);
      const identity =
        (path.length === 1 && (k === "apiVersion" || k === "kind")) ||
        (path.length === 2 && path[0] === "metadata" && (k === "name" || k === "namespace"));
      if (identity) {
        out[k] = structuredClone(child);
        continue;
      }
      const isMetadata = path.length === 1 && k === "metadata";
      if (path.length === 2 && path[0] === "metadata" && SERVER_METADATA.includes(k)) continue;
      if (!isMetadata && excluded(tokens)) continue;
      if (isObj(child) && Object.keys(child).length > 0) {
        const sub = walk(child, path);
        // A map emptied by exclusions is not part of the configuration.
        if (Object.keys(sub).length > 0 || isMetadata) out[k] = sub;
      } else {
        out[k] = structuredClone(child);
      }
    }
    return out;
  };
  return walk(config, []);
}
