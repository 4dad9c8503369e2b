/**
 * CEL validation rules (`x-kubernetes-validations`) of custom resources,
 * evaluated on every write like kube-apiserver does from the CRD schema, so
 * the embedded API server refuses what a real cluster refuses.
 *
 * Semantics followed (apiextensions-apiserver, "Validation rules"):
 * - A rule sits on a schema node; `self` is the value at that node. A rule
 *   is evaluated only where the value is present.
 * - A rule that mentions `oldSelf` is a transition rule: evaluated on update
 *   only, and only where the old object has a value at the same place
 *   (object properties and map keys correlate; list items only in
 *   `x-kubernetes-list-type: map` lists, by their keys).
 * - A rule that is not `true` yields a cause at the node's field path (plus
 *   `fieldPath`, when given) with the rule's `reason` (default
 *   FieldValueInvalid) and `message` (default "failed rule: <rule>").
 *   `messageExpression` is not evaluated; `message` (or the default) is used.
 * - Integers in the object are CEL ints, other numbers doubles.
 *
 * Rules are compiled once per schema node; a rule that does not parse throws
 * when its kind is first written, as a CRD with such a rule would not be
 * accepted by a real cluster.
 */
import { parse, type ParseResult } from "@marcbachmann/cel-js";
import { invalid, type StatusCause } from "./errors.js";
import { isObj, type KubeObject, type Obj } from "./object.js";
import type { ResourceDef } from "./registry.js";

/** One `x-kubernetes-validations` entry, compiled. */
interface CompiledRule {
  rule: string;
  message: string;
  fieldPath: string;
  reason: string;
  transition: boolean;
  program: ParseResult;
}

type Schema = Record<string, unknown>;

const compiledRules = new WeakMap<Schema, CompiledRule[]>();

function rulesOf(schema: Schema): CompiledRule[] {
  const cached = compiledRules.get(schema);
  if (cached !== undefined) return cached;
  const raw = schema["x-kubernetes-validations"];
  const out: CompiledRule[] = [];
  if (Array.isArray(raw)) {
    for (const entry of raw) {
      if (!isObj(entry) || typeof entry.rule !== "string") continue;
      let program: ParseResult;
      try {
        program = parse(entry.rule);
      } catch (cause) {
        throw new Error(`compiling validation rule ${JSON.stringify(entry.rule)}`, { cause });
      }
      out.push({
        rule: entry.rule,
        message: typeof entry.message === "string" && entry.message !== "" ? entry.message : `failed rule: ${entry.rule}`,
        fieldPath: typeof entry.fieldPath === "string" ? entry.fieldPath : "",
        reason: typeof entry.reason === "string" ? entry.reason : "FieldValueInvalid",
        transition: /\boldSelf\b/.test(entry.rule),
        program,
      });
    }
  }
  compiledRules.set(schema, out);
  return out;
}

/** A JSON value as CEL sees it: integers become ints (bigint), the rest stays. */
function toCel(v: unknown): unknown {
  if (typeof v === "number") return Number.isInteger(v) ? BigInt(v) : v;
  if (Array.isArray(v)) return v.map(toCel);
  if (isObj(v)) {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) o[k] = toCel(x);
    return o;
  }
  return v;
}

function schemaOf(v: unknown): Schema | undefined {
  return isObj(v) ? (v as Schema) : undefined;
}

/** The message of a failed rule, worded like kube's field errors. */
function causeFor(r: CompiledRule, path: string, schema: Schema, detail?: string): StatusCause {
  const field = `${path}${r.fieldPath}`.replace(/^\./, "");
  const message = detail ?? r.message;
  switch (r.reason) {
    case "FieldValueForbidden":
      return { reason: r.reason, field, message: `Forbidden: ${message}` };
    case "FieldValueRequired":
      return { reason: r.reason, field, message: `Required value: ${message}` };
    case "FieldValueDuplicate":
      return { reason: r.reason, field, message: `Duplicate value: ${message}` };
    default:
      return { reason: "FieldValueInvalid", field, message: `Invalid value: "${typeof schema.type === "string" ? schema.type : "object"}": ${message}` };
  }
}

function oldListItem(schema: Schema, item: unknown, old: unknown): unknown {
  if (schema["x-kubernetes-list-type"] !== "map" || !Array.isArray(old) || !isObj(item)) return undefined;
  const keys = Array.isArray(schema["x-kubernetes-list-map-keys"]) ? schema["x-kubernetes-list-map-keys"].filter((k): k is string => typeof k === "string") : [];
  if (keys.length === 0) return undefined;
  return old.find((o) => isObj(o) && keys.every((k) => JSON.stringify(o[k]) === JSON.stringify(item[k])));
}

function walk(schema: Schema, value: unknown, old: unknown, path: string, causes: StatusCause[]): void {
  if (value === undefined) return;
  for (const r of rulesOf(schema)) {
    if (r.transition && old === undefined) continue;
    let result: unknown;
    try {
      result = r.program(r.transition ? { self: toCel(value), oldSelf: toCel(old) } : { self: toCel(value) });
    } catch (err) {
      causes.push(causeFor({ ...r, reason: "FieldValueInvalid" }, path, schema, `rule evaluation error: ${err instanceof Error ? err.message : String(err)}`));
      continue;
    }
    if (result !== true) causes.push(causeFor(r, path, schema));
  }
  if (isObj(value)) {
    const props = schemaOf(schema.properties);
    const additional = schemaOf(schema.additionalProperties);
    const oldObj: Obj | undefined = isObj(old) ? old : undefined;
    for (const [k, v] of Object.entries(value)) {
      const sub = schemaOf(props?.[k]) ?? additional;
      if (sub === undefined) continue;
      walk(sub, v, oldObj?.[k], props?.[k] !== undefined ? `${path}.${k}` : `${path}[${k}]`, causes);
    }
  } else if (Array.isArray(value)) {
    const items = schemaOf(schema.items);
    if (items === undefined) return;
    value.forEach((item, i) => walk(items, item, oldListItem(schema, item, old), `${path}[${String(i)}]`, causes));
  }
}

/**
 * The causes of every `x-kubernetes-validations` rule of the kind's schema
 * that `obj` fails; `old` is the stored object on an update (transition
 * rules are evaluated only then). Empty for kinds without rules.
 */
export function validationRuleCauses(def: ResourceDef, obj: KubeObject, old?: KubeObject): StatusCause[] {
  const schema = schemaOf(def.schema);
  if (schema === undefined) return [];
  const causes: StatusCause[] = [];
  walk(schema, obj, old, "", causes);
  return causes;
}

/** Throws 422 Invalid (kube's metav1.Status) when `obj` fails a validation rule of its kind; see {@link validationRuleCauses}. */
export function checkValidationRules(def: ResourceDef, obj: KubeObject, old?: KubeObject): void {
  const causes = validationRuleCauses(def, obj, old);
  if (causes.length > 0) throw invalid(def.group, def.kind, obj.metadata.name ?? "", causes);
}
