/**
 * Patch formats other than server-side apply: JSON merge patch (RFC 7386),
 * JSON patch (RFC 6902, via fast-json-patch) and, for the built-in kinds
 * only, a strategic merge patch approximated by a merge patch that honours
 * the `$patch`/`$retainKeys`/`$setElementOrder`/`$deleteFromPrimitiveList`
 * directives kubectl sends for the few list fields of those kinds.
 */
import jsonpatch from "fast-json-patch";
import { badRequest, StatusError } from "./errors.js";
import { clone, isObj, type Obj } from "./object.js";

/** RFC 7386 merge patch. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObj(patch)) return clone(patch);
  const out: Obj = isObj(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** A strategic merge patch for built-in kinds whose lists are all atomic or sets of strings. */
export function strategicMergePatch(target: unknown, patch: unknown): unknown {
  if (!isObj(patch)) return clone(patch);
  if (patch.$patch === "delete") return undefined;
  if (patch.$patch === "replace") {
    const rest = { ...patch };
    delete rest.$patch;
    return stripDirectives(rest);
  }
  const out: Obj = isObj(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith("$setElementOrder/") || k === "$retainKeys" || k === "$patch") continue;
    if (k.startsWith("$deleteFromPrimitiveList/")) {
      const field = k.slice("$deleteFromPrimitiveList/".length);
      const cur = out[field];
      if (Array.isArray(cur) && Array.isArray(v)) out[field] = cur.filter((x) => !v.includes(x));
      continue;
    }
    if (v === null) delete out[k];
    else {
      const merged = strategicMergePatch(out[k], v);
      if (merged === undefined) delete out[k];
      else out[k] = merged;
    }
  }
  return out;
}

function stripDirectives(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stripDirectives);
  if (!isObj(v)) return v;
  const out: Obj = {};
  for (const [k, x] of Object.entries(v)) if (!k.startsWith("$")) out[k] = stripDirectives(x);
  return out;
}

/** Applies an RFC 6902 JSON patch; a failing operation is a 422 like kube-apiserver answers. */
export function jsonPatch(target: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw badRequest("json patch must be an array of operations");
  for (const op of ops as unknown[]) {
    const o = op as { op?: unknown; from?: unknown; path?: unknown } | null;
    // RFC 6902 4.4: a move's from must not be a proper prefix of its path (the library would build a cycle).
    if (o !== null && typeof o === "object" && o.op === "move" && typeof o.from === "string" && typeof o.path === "string" && o.from !== o.path && (o.from === "" || o.path.startsWith(`${o.from}/`))) {
      throw new StatusError(422, "Invalid", `the server rejected our request due to an error in our request: move from ${JSON.stringify(o.from)} into its own child ${JSON.stringify(o.path)}`);
    }
  }
  try {
    const errors = jsonpatch.validate(ops as jsonpatch.Operation[], clone(target));
    if (errors) throw errors;
    return jsonpatch.applyPatch(clone(target), ops as jsonpatch.Operation[], true, false).newDocument;
  } catch (cause) {
    const msg = cause instanceof Error ? cause.message.split("\n")[0] : String(cause);
    throw new StatusError(422, "Invalid", `the server rejected our request due to an error in our request: ${msg}`);
  }
}
