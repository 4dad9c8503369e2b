/**
 * Structural pruning as kube-apiserver does it: fields the schema does not
 * describe are dropped before storage (unless the schema preserves unknown
 * fields there). Custom kinds are pruned against their CRD schema, built-in
 * kinds against their OpenAPI definition (they are decoded into Go structs in
 * kube, which drops unknown fields the same way), metadata against ObjectMeta.
 */
import { isObj, type Obj } from "./object.js";

type Schema = Record<string, unknown>;

/** Turns a schema node into the schema it stands for (follows `$ref`); identity for inlined schemas. */
export type SchemaResolver = (node: unknown) => Schema | undefined;

const inlined: SchemaResolver = (node) => (isObj(node) ? node : undefined);

/**
 * Returns a copy of `value` without the fields the schema does not describe.
 * Walks like `unknownFields` in validation.ts, so what a Warn request is told
 * about is exactly what is dropped: `additionalProperties` and
 * `x-kubernetes-preserve-unknown-fields` keep their fields, int-or-string
 * values are kept whole.
 */
export function prune(schemaNode: unknown, value: unknown, resolve: SchemaResolver = inlined): unknown {
  const schema = resolve(schemaNode);
  if (schema === undefined || schema["x-kubernetes-int-or-string"] === true) return value;
  if (Array.isArray(value)) return schema.items === undefined ? value : value.map((v) => prune(schema.items, v, resolve));
  if (!isObj(value)) return value;
  const props = isObj(schema.properties) ? schema.properties : undefined;
  const additional = schema.additionalProperties;
  const preserve = schema["x-kubernetes-preserve-unknown-fields"] === true;
  const out: Obj = {};
  for (const [k, v] of Object.entries(value)) {
    const p = props?.[k];
    if (p !== undefined) out[k] = prune(p, v, resolve);
    else if (isObj(additional)) out[k] = prune(additional, v, resolve);
    else if (additional === true || preserve) out[k] = v;
  }
  return out;
}
