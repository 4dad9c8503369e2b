/**
 * Structural pruning as kube-apiserver does for CRDs: fields not described by
 * the schema are dropped before storage (unless the schema preserves unknown
 * fields there).
 */
import { isObj, type Obj } from "./object.js";

type Schema = Record<string, unknown>;

/** Returns a copy of `value` without fields the schema does not describe. */
export function prune(schema: Schema | undefined, value: unknown, root = true): unknown {
  if (!schema) return value;
  if (schema["x-kubernetes-preserve-unknown-fields"] === true && !schema.properties) return value;
  if (Array.isArray(value)) {
    const items = isObj(schema.items) ? (schema.items as Schema) : undefined;
    return value.map((v) => prune(items, v, false));
  }
  if (!isObj(value)) return value;
  const props = isObj(schema.properties) ? (schema.properties as Record<string, Schema>) : undefined;
  const additional = schema.additionalProperties;
  const preserve = schema["x-kubernetes-preserve-unknown-fields"] === true;
  const out: Obj = {};
  for (const [k, v] of Object.entries(value)) {
    if (root && (k === "apiVersion" || k === "kind" || k === "metadata")) {
      out[k] = v;
      continue;
    }
    const p = props?.[k];
    if (p) out[k] = prune(p, v, false);
    else if (isObj(additional)) out[k] = prune(additional as Schema, v, false);
    else if (additional === true || preserve) out[k] = v;
  }
  return out;
}
