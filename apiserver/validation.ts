/**
 * Server-side validation, pruning checks and defaulting for every served kind,
 * driven by the same schemas the CRDs and OpenAPI documents are generated from
 * (`schemas/`, read through `loadCatalog`).
 *
 * Behaviour follows kube-apiserver for custom resources:
 * - `validate` returns field causes shaped like `metav1.StatusCause`
 *   (`FieldValueRequired`, `FieldValueInvalid`, ...) with dotted field paths
 *   such as `spec.allowedRoles[0]`; unknown fields are not errors there
 *   (kube prunes them).
 * - `unknownFields` lists the fields a `fieldValidation=Strict` request must
 *   refuse: keys not declared by the schema, except under
 *   `x-kubernetes-preserve-unknown-fields` or `additionalProperties`.
 * - `applyDefaults` applies `default` values top-down, like CRD structural
 *   defaulting: a defaulted object gets its own properties defaulted too.
 *
 * Built-in kinds (Namespace, Secret, ConfigMap, Event, Lease) are validated
 * against the hand-written schemas in `schemas/core`, and are not defaulted.
 * Only the API server validates; the pruning walk itself is prune.ts.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import addFormats from "ajv-formats";
import { findResource, loadCatalog, type ResourceDefinition, type SchemaCatalog, type SchemaNode } from "../lib/api/schemas.js";
import { prune } from "./prune.js";

/** The reasons kube uses for field causes (`metav1.CauseType`) that this validator produces. */
export type ValidationReason =
  | "FieldValueInvalid"
  | "FieldValueRequired"
  | "FieldValueNotSupported"
  | "FieldValueTypeInvalid"
  | "FieldValueTooLong"
  | "FieldValueTooMany"
  | "FieldValueDuplicate";

/** One field error, shaped like `metav1.StatusCause`. */
export interface ValidationCause {
  reason: ValidationReason;
  message: string;
  /** Dotted kube field path, e.g. `spec.maxUses` or `spec.allowedRoles[0]`. */
  field: string;
}

/** Thrown when a group/version/kind is not served. */
export class UnknownKindError extends Error {
  constructor(
    readonly group: string,
    readonly version: string,
    readonly kind: string,
  ) {
    super(`no schema for kind ${kind} in ${group === "" ? "" : `${group}/`}${version}`);
    this.name = "UnknownKindError";
  }
}

const SCHEMA_ID = "https://accessfabric.io/schemas/definitions.json";

/** Keywords that only annotate a schema (kube extensions); ajv must accept and ignore them. */
const ANNOTATION_KEYWORDS = [
  "x-kubernetes-preserve-unknown-fields",
  "x-kubernetes-int-or-string",
  "x-kubernetes-map-type",
  "x-kubernetes-list-map-keys",
  "x-kubernetes-embedded-resource",
  "x-kubernetes-group-version-kind",
  "x-kubernetes-patch-merge-key",
  "x-kubernetes-patch-strategy",
  "x-kubernetes-validations", // CEL rules: evaluated by cel-validation.ts
];

/** Go `time.ParseDuration` syntax, which kube's `format: duration` accepts (ajv-formats' is ISO 8601). */
const GO_DURATION = /^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$/u;

/** A compiled custom keyword check (ajv's DataValidateFunction, which ajv does not export). */
interface KeywordCheck {
  (data: unknown[]): boolean;
  errors?: Partial<ErrorObject>[];
}

interface Compiled {
  catalog: SchemaCatalog;
  ajv: Ajv;
  validators: Map<string, ValidateFunction>;
}

let compiled: Compiled | undefined;

function isObject(v: unknown): v is SchemaNode {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function listKeyOf(item: unknown, keys: string[]): string {
  if (!isObject(item)) return JSON.stringify(item);
  return JSON.stringify(keys.map((k) => item[k] ?? null));
}

function buildAjv(): Ajv {
  const ajv = new Ajv({
    allErrors: true,
    verbose: true,
    strict: true,
    strictTypes: false,
    strictRequired: false,
    allowUnionTypes: true,
  });
  addFormats.default(ajv);
  ajv.addFormat("duration", GO_DURATION);
  for (const keyword of ANNOTATION_KEYWORDS) ajv.addKeyword({ keyword });
  // List semantics kube enforces on CRDs: `set` items and `map` keys are unique.
  ajv.addKeyword({
    keyword: "x-kubernetes-list-type",
    type: "array",
    schemaType: "string",
    errors: true,
    compile(listType: string, parentSchema: SchemaNode): KeywordCheck {
      const rawKeys = parentSchema["x-kubernetes-list-map-keys"];
      const keys = Array.isArray(rawKeys) ? rawKeys.filter((k): k is string => typeof k === "string") : [];
      const check: KeywordCheck = (data: unknown[]) => {
        if (listType !== "set" && listType !== "map") return true;
        const seen = new Set<string>();
        const errors: Partial<ErrorObject>[] = [];
        data.forEach((item, index) => {
          const key = listType === "map" ? listKeyOf(item, keys) : JSON.stringify(item);
          if (seen.has(key)) {
            const value = listType === "map" && isObject(item) ? Object.fromEntries(keys.map((k) => [k, item[k]])) : item;
            errors.push({ keyword: "x-kubernetes-list-type", message: "duplicate", params: { index, value } });
          }
          seen.add(key);
        });
        check.errors = errors;
        return errors.length === 0;
      };
      return check;
    },
  });
  return ajv;
}

function state(): Compiled {
  if (compiled !== undefined) return compiled;
  const catalog = loadCatalog();
  const ajv = buildAjv();
  ajv.addSchema({ $id: SCHEMA_ID, definitions: catalog.definitions });
  compiled = { catalog, ajv, validators: new Map() };
  return compiled;
}

function resourceOf(group: string, version: string, kind: string): ResourceDefinition {
  const res = findResource(state().catalog, group, version, kind);
  if (res === undefined) throw new UnknownKindError(group, version, kind);
  return res;
}

function validatorFor(res: ResourceDefinition): ValidateFunction {
  const s = state();
  const hit = s.validators.get(res.definitionName);
  if (hit !== undefined) return hit;
  const fn = s.ajv.getSchema(`${SCHEMA_ID}#/definitions/${res.definitionName}`);
  if (fn === undefined) throw new Error(`compiling schema ${res.definitionName}`);
  s.validators.set(res.definitionName, fn);
  return fn;
}

/** Whether the kind is served (and therefore validated). */
export function isKnownKind(group: string, version: string, kind: string): boolean {
  return findResource(state().catalog, group, version, kind) !== undefined;
}

/** Turns a JSON pointer into a kube field path against the data it points into. */
function fieldPath(data: unknown, pointer: string): string {
  if (pointer === "") return "";
  const segments = pointer
    .split("/")
    .slice(1)
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
  let out = "";
  let cur: unknown = data;
  for (const seg of segments) {
    if (Array.isArray(cur)) {
      out += `[${seg}]`;
      cur = cur[Number(seg)];
    } else {
      out += out === "" ? seg : `.${seg}`;
      cur = isObject(cur) ? cur[seg] : undefined;
    }
  }
  return out;
}

function join(base: string, key: string): string {
  return base === "" ? key : `${base}.${key}`;
}

/** Formats a value the way kube's field errors print it. */
function show(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  if (v === null || v === undefined) return "null";
  const s = JSON.stringify(v);
  return s.length > 200 ? `${s.slice(0, 200)}...` : s;
}

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

function num(p: Record<string, unknown>, key: string): string {
  const v = p[key];
  return typeof v === "number" || typeof v === "string" ? String(v) : "";
}

function toCause(err: ErrorObject, data: unknown): ValidationCause | undefined {
  // Errors from inside an anyOf (int-or-string) are summarised by the anyOf error itself.
  if (/\/anyOf\/\d+\//.test(err.schemaPath)) return undefined;
  const field = fieldPath(data, err.instancePath);
  const value: unknown = err.data;
  const p = err.params as Record<string, unknown>;
  const invalid = (detail: string): ValidationCause => ({
    reason: "FieldValueInvalid",
    field,
    message: `Invalid value: ${show(value)}: ${field} in body ${detail}`,
  });
  switch (err.keyword) {
    case "required":
      return { reason: "FieldValueRequired", field: join(field, String(p.missingProperty)), message: "Required value" };
    case "enum": {
      const allowed = Array.isArray(p.allowedValues) ? p.allowedValues.map(show).join(", ") : "";
      return { reason: "FieldValueNotSupported", field, message: `Unsupported value: ${show(value)}: supported values: ${allowed}` };
    }
    case "type":
      return {
        reason: "FieldValueTypeInvalid",
        field,
        message: `Invalid value: ${show(typeName(value))}: ${field} in body must be of type ${String(p.type)}: ${show(typeName(value))}`,
      };
    case "anyOf":
      return {
        reason: "FieldValueTypeInvalid",
        field,
        message: `Invalid value: ${show(typeName(value))}: ${field} in body must be of type integer or string: ${show(typeName(value))}`,
      };
    case "maxLength":
      return { reason: "FieldValueTooLong", field, message: `Too long: may not be more than ${num(p, "limit")} bytes` };
    case "maxItems":
      return {
        reason: "FieldValueTooMany",
        field,
        message: `Too many: ${Array.isArray(value) ? value.length : "?"}: must have at most ${num(p, "limit")} items`,
      };
    case "x-kubernetes-list-type":
      return { reason: "FieldValueDuplicate", field: `${field}[${num(p, "index")}]`, message: `Duplicate value: ${show(p.value)}` };
    case "uniqueItems":
      return { reason: "FieldValueDuplicate", field: `${field}[${num(p, "i")}]`, message: `Duplicate value: ${show(Array.isArray(value) ? value[Number(p.i)] : value)}` };
    case "minimum":
      return invalid(`should be greater than or equal to ${num(p, "limit")}`);
    case "maximum":
      return invalid(`should be less than or equal to ${num(p, "limit")}`);
    case "exclusiveMinimum":
      return invalid(`should be greater than ${num(p, "limit")}`);
    case "exclusiveMaximum":
      return invalid(`should be less than ${num(p, "limit")}`);
    case "minLength":
      return invalid(`should be at least ${num(p, "limit")} chars long`);
    case "pattern":
      return invalid(`should match '${String(p.pattern)}'`);
    case "format":
      return invalid(`must be of type ${String(p.format)}`);
    case "minItems":
      return invalid(`should have at least ${num(p, "limit")} items`);
    case "minProperties":
      return invalid(`should have at least ${num(p, "limit")} properties`);
    case "maxProperties":
      return invalid(`should have at most ${num(p, "limit")} properties`);
    default:
      return invalid(err.message ?? "is invalid");
  }
}

/** kube accepts `null` for unset metadata fields (e.g. `creationTimestamp: null` written by some clients). */
function withoutNullMetadata(obj: unknown): unknown {
  if (!isObject(obj) || !isObject(obj.metadata)) return obj;
  const metadata = Object.fromEntries(Object.entries(obj.metadata).filter(([, v]) => v !== null));
  return { ...obj, metadata };
}

/**
 * Validates `obj` against the schema of group/version/kind and returns kube
 * field causes; an empty array means valid. Unknown fields are not reported
 * here (see `unknownFields`). Throws `UnknownKindError` for a kind that is not served.
 */
export function validate(group: string, version: string, kind: string, obj: unknown): ValidationCause[] {
  const fn = validatorFor(resourceOf(group, version, kind));
  const data = withoutNullMetadata(obj);
  if (fn(data)) return [];
  const causes: ValidationCause[] = [];
  const seen = new Set<string>();
  for (const err of fn.errors ?? []) {
    const cause = toCause(err, data);
    if (cause === undefined) continue;
    const key = `${cause.reason}\u0000${cause.field}\u0000${cause.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    causes.push(cause);
  }
  return causes;
}

/** Follows `$ref` and single-element `allOf` wrappers to the schema that describes a value. */
function resolve(catalog: SchemaCatalog, node: unknown): SchemaNode | undefined {
  let cur: unknown = node;
  for (let i = 0; i < 32 && isObject(cur); i++) {
    if (typeof cur.$ref === "string") {
      cur = catalog.definitions[cur.$ref.replace(/^#\/definitions\//, "")];
      continue;
    }
    const allOf = cur.allOf;
    if (Array.isArray(allOf) && allOf.length === 1 && cur.properties === undefined) {
      cur = allOf[0];
      continue;
    }
    return cur;
  }
  return undefined;
}

function collectUnknown(catalog: SchemaCatalog, schemaNode: unknown, value: unknown, path: string, out: string[]): void {
  const schema = resolve(catalog, schemaNode);
  if (schema === undefined || schema["x-kubernetes-int-or-string"] === true) return;
  if (Array.isArray(value)) {
    if (schema.items === undefined) return;
    value.forEach((item, i) => collectUnknown(catalog, schema.items, item, `${path}[${i}]`, out));
    return;
  }
  if (!isObject(value)) return;
  const props = isObject(schema.properties) ? schema.properties : undefined;
  const additional = schema.additionalProperties;
  const preserve = schema["x-kubernetes-preserve-unknown-fields"] === true;
  for (const [key, child] of Object.entries(value)) {
    const childPath = join(path, key);
    const propSchema = props?.[key];
    if (propSchema !== undefined) collectUnknown(catalog, propSchema, child, childPath, out);
    else if (isObject(additional)) collectUnknown(catalog, additional, child, childPath, out);
    else if (additional === true || preserve) continue;
    else out.push(childPath);
  }
}

/**
 * Lists the paths of fields the schema does not declare (e.g. `spec.foo`,
 * `spec.artifacts[0].checksum`), in document order. Fields under
 * `x-kubernetes-preserve-unknown-fields` or `additionalProperties` are
 * allowed; metadata is checked against ObjectMeta's known fields.
 */
export function unknownFields(group: string, version: string, kind: string, obj: unknown): string[] {
  const res = resourceOf(group, version, kind);
  const catalog = state().catalog;
  const out: string[] = [];
  collectUnknown(catalog, catalog.definitions[res.definitionName], obj, "", out);
  return out;
}

/**
 * Returns a copy of `obj` without the fields `unknownFields` lists (the same
 * walk, through the served definition, ObjectMeta included), as kube-apiserver
 * prunes custom resources and drops unknown fields of built-in kinds when
 * decoding. `obj` is not modified.
 */
export function pruneUnknownFields<T extends object>(group: string, version: string, kind: string, obj: T): T {
  const res = resourceOf(group, version, kind);
  const catalog = state().catalog;
  return prune(catalog.definitions[res.definitionName], obj, (node) => resolve(catalog, node)) as T;
}

function defaultInto(catalog: SchemaCatalog, schemaNode: unknown, value: unknown): unknown {
  const schema = resolve(catalog, schemaNode);
  if (schema === undefined) return value;
  if (Array.isArray(value)) {
    return schema.items === undefined ? value : value.map((item) => defaultInto(catalog, schema.items, item));
  }
  if (!isObject(value) || schema["x-kubernetes-int-or-string"] === true) return value;
  const out: SchemaNode = {};
  const props = isObject(schema.properties) ? schema.properties : {};
  for (const [key, child] of Object.entries(value)) {
    const propSchema = props[key] ?? (isObject(schema.additionalProperties) ? schema.additionalProperties : undefined);
    out[key] = propSchema === undefined ? structuredClone(child) : defaultInto(catalog, propSchema, child);
  }
  for (const [key, propNode] of Object.entries(props)) {
    const prop = resolve(catalog, propNode);
    const def = isObject(propNode) && "default" in propNode ? propNode.default : prop?.default;
    if (def === undefined) continue;
    const current = out[key];
    // Like kube: a null for a non-nullable field with a default is replaced by the default.
    if (current === undefined || (current === null && prop?.nullable !== true)) {
      out[key] = defaultInto(catalog, propNode, structuredClone(def));
    }
  }
  return out;
}

/**
 * Returns a copy of `obj` with schema defaults applied (CRD structural
 * defaulting: absent fields get their `default`, and defaulted objects are
 * defaulted in turn). `obj` is not modified. Built-in kinds are returned as
 * a plain copy: kube does not default them from their OpenAPI schema.
 */
export function applyDefaults<T extends object>(group: string, version: string, kind: string, obj: T): T {
  const res = resourceOf(group, version, kind);
  if (!res.fabric) return structuredClone(obj);
  const catalog = state().catalog;
  return defaultInto(catalog, catalog.definitions[res.definitionName], obj) as T;
}
