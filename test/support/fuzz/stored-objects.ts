/**
 * Checks what the API server stored, independently of the server's own
 * validation: each object against its kind's JSON Schema (ajv over the same
 * catalog, lib/api/schemas.ts) and against the ObjectMeta rules of
 * kube-apiserver (names, namespace, labels, annotations, uid).
 */
import { Ajv, type ValidateFunction } from "ajv";
import addFormats from "ajv-formats";
import { loadCatalog, type ResourceDefinition } from "../../../lib/api/schemas.js";

const SCHEMA_ID = "https://accessfabric.io/fuzz/definitions.json";

/** kube extensions that only annotate a schema. */
const annotationKeywords = [
  "x-kubernetes-preserve-unknown-fields",
  "x-kubernetes-int-or-string",
  "x-kubernetes-map-type",
  "x-kubernetes-list-map-keys",
  "x-kubernetes-list-type",
  "x-kubernetes-embedded-resource",
  "x-kubernetes-group-version-kind",
  "x-kubernetes-patch-merge-key",
  "x-kubernetes-patch-strategy",
  // CEL rules in this project are transition rules (oldSelf): they judge a change, not a stored object.
  "x-kubernetes-validations",
];

let validators: { ajv: Ajv; byDefinition: Map<string, ValidateFunction> } | undefined;

function schemaValidator(res: ResourceDefinition): ValidateFunction {
  if (validators === undefined) {
    const ajv = new Ajv({ allErrors: true, strict: true, strictTypes: false, strictRequired: false, allowUnionTypes: true });
    addFormats.default(ajv);
    // kube's `format: duration` is Go's time.ParseDuration syntax.
    ajv.addFormat("duration", /^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$/u);
    for (const keyword of annotationKeywords) ajv.addKeyword({ keyword });
    ajv.addSchema({ $id: SCHEMA_ID, definitions: loadCatalog().definitions });
    validators = { ajv, byDefinition: new Map() };
  }
  const hit = validators.byDefinition.get(res.definitionName);
  if (hit !== undefined) return hit;
  const fn = validators.ajv.getSchema(`${SCHEMA_ID}#/definitions/${res.definitionName}`);
  if (fn === undefined) throw new Error(`no schema ${res.definitionName}`);
  validators.byDefinition.set(res.definitionName, fn);
  return fn;
}

const dns1123Label = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const dns1123Subdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const qualifiedNamePart = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const labelValue = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Why `key` is not a qualified name (`[prefix/]name`), or undefined when it is one. */
export function qualifiedNameProblem(key: string): string | undefined {
  const parts = key.split("/");
  if (parts.length > 2) return "more than one '/'";
  const name = parts.length === 2 ? (parts[1] ?? "") : key;
  const prefix = parts.length === 2 ? parts[0] : undefined;
  if (prefix !== undefined && (prefix.length > 253 || !dns1123Subdomain.test(prefix))) return "prefix is not a DNS-1123 subdomain";
  if (name.length === 0 || name.length > 63 || !qualifiedNamePart.test(name)) return "name part is not a qualified name";
  return undefined;
}

/** The ObjectMeta rules kube-apiserver enforces on every object it stores; each problem as a sentence. */
export function objectMetaProblems(res: ResourceDefinition, obj: unknown): string[] {
  if (!isRecord(obj) || !isRecord(obj.metadata)) return ["metadata is not an object"];
  const m = obj.metadata;
  const out: string[] = [];
  const name = m.name;
  if (typeof name !== "string" || name === "") out.push("metadata.name missing");
  else if (res.kind === "Namespace") {
    if (name.length > 63 || !dns1123Label.test(name)) out.push(`namespace name ${JSON.stringify(name)} is not a DNS-1123 label`);
  } else if (res.kind === "Event" && res.group === "") {
    // kube validates core/v1 Event names as path segments only (legacyValidateEvent, for old clients).
    if (name === "." || name === ".." || /[/%]/.test(name)) out.push(`event name ${JSON.stringify(name)} is not a path segment`);
  } else if (name.length > 253 || !dns1123Subdomain.test(name)) out.push(`metadata.name ${JSON.stringify(name)} is not a DNS-1123 subdomain`);
  if (res.scope === "Cluster") {
    if (m.namespace !== undefined && m.namespace !== "") out.push(`cluster-scoped object has metadata.namespace ${JSON.stringify(m.namespace)}`);
  } else if (typeof m.namespace !== "string" || m.namespace.length > 63 || !dns1123Label.test(m.namespace)) {
    out.push(`metadata.namespace ${JSON.stringify(m.namespace)} is not a DNS-1123 label`);
  }
  if (typeof m.uid !== "string" || !uuid.test(m.uid)) out.push(`metadata.uid ${JSON.stringify(m.uid)} is not a UUID`);
  if (m.labels !== undefined) {
    if (!isRecord(m.labels)) out.push("metadata.labels is not a map");
    else {
      for (const [k, v] of Object.entries(m.labels)) {
        const p = qualifiedNameProblem(k);
        if (p !== undefined) out.push(`label key ${JSON.stringify(k)}: ${p}`);
        if (typeof v !== "string" || v.length > 63 || !labelValue.test(v)) out.push(`label ${JSON.stringify(k)} has invalid value ${JSON.stringify(v)}`);
      }
    }
  }
  if (m.annotations !== undefined) {
    if (!isRecord(m.annotations)) out.push("metadata.annotations is not a map");
    else {
      let size = 0;
      for (const [k, v] of Object.entries(m.annotations)) {
        const p = qualifiedNameProblem(k);
        if (p !== undefined) out.push(`annotation key ${JSON.stringify(k)}: ${p}`);
        if (typeof v !== "string") out.push(`annotation ${JSON.stringify(k)} is not a string`);
        size += k.length + (typeof v === "string" ? v.length : 0);
      }
      if (size > 256 * 1024) out.push(`annotations total ${size} bytes, more than 256 KiB`);
    }
  }
  return out;
}

/** Every problem of one stored object: schema errors, then ObjectMeta rules. */
export function storedObjectProblems(res: ResourceDefinition, obj: unknown): string[] {
  const fn = schemaValidator(res);
  const out: string[] = [];
  if (!fn(obj)) for (const e of fn.errors ?? []) out.push(`schema: ${e.instancePath || "/"} ${e.message ?? e.keyword}`);
  out.push(...objectMetaProblems(res, obj));
  return out;
}

/** All served resources, for listing everything after a run. */
export function servedResources(): ResourceDefinition[] {
  return loadCatalog().resources;
}
