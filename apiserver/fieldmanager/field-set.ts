/**
 * A set of field paths, the model behind a managedFields entry's fieldsV1.
 *
 * A path is a list of path-element tokens exactly as FieldsV1 spells them:
 * `f:<name>` (map field), `k:<json>` (list-map item by key), `v:<json>` (set
 * item by value). Tokens from stored entries that this module does not
 * produce (for example `i:<index>`) are kept as opaque strings.
 */

import { isObj } from "../object.js";
import type { Obj } from "../object.js";

/** A path of FieldsV1 tokens from the object root. */
export type FieldPath = readonly string[];

/** Token for a map field. */
export function fieldToken(name: string): string {
  return `f:${name}`;
}

/** Token for a list-map item: its key fields, sorted by name, as compact JSON. */
export function keyToken(key: Obj): string {
  const sorted: Obj = {};
  for (const name of Object.keys(key).sort()) sorted[name] = key[name];
  return `k:${JSON.stringify(sorted)}`;
}

/** Token for a set item. */
export function valueToken(v: unknown): string {
  return `v:${JSON.stringify(v)}`;
}

/** Re-spells a stored token so it compares equal to the tokens this module builds. */
function canonicalToken(token: string): string {
  try {
    if (token.startsWith("k:")) {
      const key: unknown = JSON.parse(token.slice(2));
      if (isObj(key)) return keyToken(key);
    } else if (token.startsWith("v:")) {
      return valueToken(JSON.parse(token.slice(2)));
    }
  } catch {
    // Not JSON: keep the token as it was written.
  }
  return token;
}

// Kube orders path elements field names first, then keys, values, indexes.
const KIND_ORDER: Record<string, number> = { f: 0, k: 1, v: 2, i: 3 };

function compareTokens(a: string, b: string): number {
  const ka = KIND_ORDER[a.slice(0, 1)] ?? 4;
  const kb = KIND_ORDER[b.slice(0, 1)] ?? 4;
  if (ka !== kb) return ka - kb;
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Kube's human form of a path, as used in conflict messages:
 * `.spec.replicas`, `.status.conditions[type="Ready"].status`,
 * `.metadata.finalizers[="x"]`.
 */
export function pathString(path: FieldPath): string {
  return path
    .map((token) => {
      const kind = token.slice(0, 2);
      const rest = token.slice(2);
      if (kind === "f:") return `.${rest}`;
      if (kind === "i:") return `[${rest}]`;
      try {
        const parsed: unknown = JSON.parse(rest);
        if (kind === "k:" && isObj(parsed)) {
          return `[${Object.keys(parsed)
            .map((k) => `${k}=${JSON.stringify(parsed[k])}`)
            .join(",")}]`;
        }
        if (kind === "v:") return `[=${JSON.stringify(parsed)}]`;
      } catch {
        // Fall through to the raw token.
      }
      return `[${token}]`;
    })
    .join("");
}

/** A mutable tree of paths; a node is a member when its own path is in the set. */
export class FieldSet {
  member = false;
  readonly children = new Map<string, FieldSet>();

  /** Parses a FieldsV1 object; `".": {}` marks a node that has children and is itself a member. */
  static fromFieldsV1(v: unknown): FieldSet {
    const set = new FieldSet();
    if (isObj(v)) set.readChildren(v);
    return set;
  }

  private readChildren(v: Obj): void {
    for (const [rawToken, sub] of Object.entries(v)) {
      if (rawToken === ".") continue;
      const child = this.ensureChild(canonicalToken(rawToken));
      if (isObj(sub) && Object.keys(sub).length > 0) {
        if ("." in sub) child.member = true;
        child.readChildren(sub);
      } else {
        child.member = true;
      }
    }
  }

  /** The FieldsV1 encoding, keys in kube's order. */
  toFieldsV1(): Obj {
    const out: Obj = {};
    for (const token of [...this.children.keys()].sort(compareTokens)) {
      const child = this.children.get(token);
      if (child === undefined || child.isEmpty()) continue;
      const sub = child.toFieldsV1();
      out[token] = child.member && Object.keys(sub).length > 0 ? { ".": {}, ...sub } : sub;
    }
    return out;
  }

  private ensureChild(token: string): FieldSet {
    let child = this.children.get(token);
    if (child === undefined) {
      child = new FieldSet();
      this.children.set(token, child);
    }
    return child;
  }

  /** The node at `path`, if any. */
  at(path: FieldPath): FieldSet | undefined {
    let node: FieldSet | undefined = this;
    for (const token of path) {
      node = node.children.get(token);
      if (node === undefined) return undefined;
    }
    return node;
  }

  /** Adds `path`; the empty path (the object itself) is never a member. */
  insert(path: FieldPath): void {
    if (path.length === 0) return;
    let node: FieldSet = this;
    for (const token of path) node = node.ensureChild(token);
    node.member = true;
  }

  /** True when `path` is a member. */
  has(path: FieldPath): boolean {
    return this.at(path)?.member === true;
  }

  /** True when no path is a member. */
  isEmpty(): boolean {
    if (this.member) return false;
    for (const child of this.children.values()) if (!child.isEmpty()) return false;
    return true;
  }

  /** Every member path, in kube's order. */
  paths(): string[][] {
    const out: string[][] = [];
    const walk = (node: FieldSet, prefix: string[]): void => {
      if (node.member && prefix.length > 0) out.push(prefix);
      for (const token of [...node.children.keys()].sort(compareTokens)) {
        const child = node.children.get(token);
        if (child !== undefined) walk(child, [...prefix, token]);
      }
    };
    walk(this, []);
    return out;
  }

  /** Members of either set. */
  union(other: FieldSet): FieldSet {
    const out = this.clone();
    out.addAll(other);
    return out;
  }

  private addAll(other: FieldSet): void {
    if (other.member) this.member = true;
    for (const [token, child] of other.children) this.ensureChild(token).addAll(child);
  }

  /** Members of this set that are not members of `other` (exact paths, not subtrees). */
  difference(other: FieldSet): FieldSet {
    return this.combine(other, (a, b) => a && !b);
  }

  /** Members of both sets. */
  intersection(other: FieldSet): FieldSet {
    return this.combine(other, (a, b) => a && b);
  }

  private combine(other: FieldSet | undefined, keep: (a: boolean, b: boolean) => boolean): FieldSet {
    const out = new FieldSet();
    out.member = keep(this.member, other?.member === true);
    for (const [token, child] of this.children) {
      const sub = child.combine(other?.children.get(token), keep);
      if (!sub.isEmpty()) out.children.set(token, sub);
    }
    return out;
  }

  /** A copy without the paths for which `excluded` is true, nor anything below them. */
  without(excluded: (path: FieldPath) => boolean): FieldSet {
    const walk = (node: FieldSet, prefix: string[]): FieldSet => {
      const out = new FieldSet();
      out.member = node.member;
      for (const [token, child] of node.children) {
        const path = [...prefix, token];
        if (excluded(path)) continue;
        const sub = walk(child, path);
        if (!sub.isEmpty()) out.children.set(token, sub);
      }
      return out;
    };
    return walk(this, []);
  }

  /** A deep copy. */
  clone(): FieldSet {
    const out = new FieldSet();
    out.member = this.member;
    for (const [token, child] of this.children) out.children.set(token, child.clone());
    return out;
  }

  /** Same members. */
  equals(other: FieldSet): boolean {
    return this.difference(other).isEmpty() && other.difference(this).isEmpty();
  }
}
