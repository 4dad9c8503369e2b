/**
 * Random values shaped by a schema: the right types, enum members and
 * required fields, but arbitrary content. They reach deeper than pure
 * garbage because most of them pass the type checks and meet the semantic
 * ones (patterns, formats, cross-field rules).
 */
import type { SchemaNode } from "../../../lib/api/schemas.js";
import type { Rng } from "./rng.js";
import type { Fields, Value } from "./json-text.js";

function isNode(v: unknown): v is SchemaNode {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const words = ["demo", "edge", "a", "eu-fra1", "10.0.0.0/8", "fd00::/64", "30s", "1h", "Route", "x", "0", "true", "", "zz-top"];

/** Follows `$ref` (to the catalog's definitions) and single `allOf`s. */
function resolve(definitions: Record<string, SchemaNode>, node: unknown): SchemaNode {
  let cur = node;
  for (let i = 0; i < 16 && isNode(cur); i++) {
    if (typeof cur.$ref === "string") {
      cur = definitions[cur.$ref.replace(/^#\/definitions\//, "")];
      continue;
    }
    if (Array.isArray(cur.allOf) && cur.allOf.length === 1 && cur.properties === undefined) {
      cur = cur.allOf[0];
      continue;
    }
    return cur;
  }
  return {};
}

/** A random value for `schema`; `depth` bounds recursion into nested objects. */
export function valueFor(rng: Rng, definitions: Record<string, SchemaNode>, node: unknown, depth = 0): Value {
  const schema = resolve(definitions, node);
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return structuredClone(rng.pick(schema.enum)) as Value;
  if (schema["x-kubernetes-int-or-string"] === true) return rng.chance(0.5) ? rng.int(0, 65535) : rng.pick(words);
  const type = Array.isArray(schema.type) ? rng.pick(schema.type as unknown[]) : schema.type;
  switch (type) {
    case "boolean":
      return rng.chance(0.5);
    case "integer": {
      const min = typeof schema.minimum === "number" ? schema.minimum : -5;
      const max = typeof schema.maximum === "number" ? schema.maximum : 1000;
      return rng.int(min, Math.min(max, min + 100_000));
    }
    case "number":
      return rng.float() * 100;
    case "string":
      if (schema.format === "date-time") return new Date(Date.UTC(2024, 0, 1) + rng.int(0, 1e9) * 1000).toISOString().replace(/\.\d+Z$/, "Z");
      if (schema.format === "byte") return Buffer.from(rng.string("abc", 0, 8)).toString("base64");
      if (schema.format === "duration") return `${rng.int(1, 90)}${rng.pick(["s", "m", "h"])}`;
      return rng.pick(words);
    case "array": {
      if (depth > 4) return [];
      const n = rng.int(0, 3);
      const out: Value[] = [];
      for (let i = 0; i < n; i++) out.push(valueFor(rng, definitions, schema.items, depth + 1));
      return out;
    }
    default:
      return objectFor(rng, definitions, schema, depth);
  }
}

function objectFor(rng: Rng, definitions: Record<string, SchemaNode>, schema: SchemaNode, depth: number): Value {
  const out: Fields = {};
  if (depth > 5) return out;
  const props = isNode(schema.properties) ? schema.properties : {};
  const required = new Set(Array.isArray(schema.required) ? schema.required.filter((r): r is string => typeof r === "string") : []);
  for (const [key, prop] of Object.entries(props)) {
    if (required.has(key) || rng.chance(0.4)) out[key] = valueFor(rng, definitions, prop, depth + 1);
  }
  if (isNode(schema.additionalProperties)) {
    for (let i = rng.int(0, 2); i > 0; i--) out[rng.pick(words) || "k"] = valueFor(rng, definitions, schema.additionalProperties, depth + 1);
  }
  return out;
}
