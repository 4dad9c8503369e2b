/**
 * Loads the API schema source (`schemas/`) into one catalog.
 *
 * This is the only reader of `schemas/`: the generators (CRDs, OpenAPI v2/v3,
 * TypeScript types, API reference) and the runtime validator all start from
 * the catalog it returns, so they cannot disagree.
 *
 * Fabric kinds (`schemas/*.yaml`) hold spec and status schemas; references to
 * `common.yaml#/definitions/X` are inlined here because CRD structural schemas
 * cannot hold references. Core kinds (`schemas/core/*.yaml`) are kept as named
 * definitions referring to each other with `#/definitions/<name>`, like the
 * upstream Swagger documents.
 */
import { readFileSync, readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";

/** A JSON-Schema / OpenAPI schema node, as plain JSON. */
export type SchemaNode = { [key: string]: unknown };

/** The group served for the fabric kinds. */
export const FABRIC_GROUP = "accessfabric.io";
/** The version served for the fabric kinds. */
export const FABRIC_VERSION = "v1alpha1";
/** Prefix of the OpenAPI definition names of the fabric kinds (reversed group, like kube). */
export const FABRIC_DEFINITION_PREFIX = "io.accessfabric.v1alpha1";

/** Name of the ObjectMeta definition. */
export const OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
/** Name of the ListMeta definition. */
export const LIST_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

/** An additional printer column of a resource (CRD and Table output). */
export interface PrinterColumn {
  name: string;
  type: "string" | "integer" | "number" | "boolean" | "date";
  jsonPath: string;
  description?: string;
  priority?: number;
  format?: string;
}

/** One served resource: names, scope and where its schema lives. */
export interface ResourceDefinition {
  group: string;
  version: string;
  kind: string;
  plural: string;
  singular: string;
  listKind: string;
  shortNames: string[];
  categories: string[];
  scope: "Cluster" | "Namespaced";
  /** Whether the resource has a /status subresource. */
  statusSubresource: boolean;
  description: string;
  printerColumns: PrinterColumn[];
  /** Name of the object's definition in `definitions`. */
  definitionName: string;
  /** Name of the list's definition in `definitions`. */
  listDefinitionName: string;
  /** Source file, relative to the repository root (e.g. `schemas/jointoken.yaml`). */
  source: string;
  /** True for the accessfabric.io kinds (CRDs); false for the built-in core kinds. */
  fabric: boolean;
  /** Fully inlined spec schema (fabric kinds only). */
  spec?: SchemaNode;
  /** Fully inlined status schema (fabric kinds only). */
  status?: SchemaNode;
}

/** Everything the schema source defines. */
export interface SchemaCatalog {
  /** Repository root the catalog was read from. */
  root: string;
  /** Fabric kinds first (sorted by kind), then core kinds (sorted by group, kind). */
  resources: ResourceDefinition[];
  /** Named definitions (meta, core, fabric objects and lists), referring to each other as `#/definitions/<name>`. */
  definitions: Record<string, SchemaNode>;
  /** The inlined fragments of `schemas/common.yaml`, by name. */
  common: Record<string, SchemaNode>;
  /** Every source file read, relative to the root, sorted. */
  sources: string[];
}

/** The repository root, derived from this file's location (lib/api/). */
export function repositoryRoot(): string {
  return fileURLToPath(new URL("../../", import.meta.url));
}

function isObject(v: unknown): v is SchemaNode {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function readYaml(path: string): SchemaNode {
  let doc: unknown;
  try {
    doc = parse(readFileSync(path, "utf8"));
  } catch (cause) {
    throw new Error(`reading schema file ${path}`, { cause });
  }
  if (!isObject(doc)) throw new Error(`schema file ${path} is not a YAML mapping`);
  return doc;
}

function str(doc: SchemaNode, key: string, file: string): string {
  const v = doc[key];
  if (typeof v !== "string" || v === "") throw new Error(`schema file ${file}: ${key} must be a non-empty string`);
  return v;
}

function strList(doc: SchemaNode, key: string, file: string): string[] {
  const v = doc[key] ?? [];
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) throw new Error(`schema file ${file}: ${key} must be a list of strings`);
  return v as string[];
}

function clone<T>(v: T): T {
  return structuredClone(v);
}

/** Inlines `common.yaml#/definitions/X` references; sibling keys override the definition. */
function inlineCommon(node: unknown, common: Record<string, SchemaNode>, file: string, depth = 0): unknown {
  if (depth > 64) throw new Error(`schema file ${file}: reference cycle`);
  if (Array.isArray(node)) return node.map((n) => inlineCommon(n, common, file, depth + 1));
  if (!isObject(node)) return node;
  const out: SchemaNode = {};
  const ref = node.$ref;
  if (typeof ref === "string") {
    const m = /^common\.yaml#\/definitions\/([A-Za-z0-9]+)$/.exec(ref);
    const name = m?.[1];
    const target = name === undefined ? undefined : common[name];
    if (target === undefined) throw new Error(`schema file ${file}: unknown reference ${ref}`);
    const base = inlineCommon(clone(target), common, file, depth + 1) as SchemaNode;
    Object.assign(out, base);
  }
  for (const [k, v] of Object.entries(node)) {
    if (k === "$ref") continue;
    // Overriding keys keep the position they have in the referenced definition.
    out[k] = k === "default" || k === "enum" ? clone(v) : inlineCommon(v, common, file, depth + 1);
  }
  return out;
}

function loadCommon(root: string, sources: string[]): Record<string, SchemaNode> {
  const file = join(root, "schemas", "common.yaml");
  sources.push(relative(root, file));
  const doc = readYaml(file);
  const defs = doc.definitions;
  if (!isObject(defs)) throw new Error(`schema file ${file}: definitions must be a mapping`);
  const raw: Record<string, SchemaNode> = {};
  for (const [k, v] of Object.entries(defs)) {
    if (!isObject(v)) throw new Error(`schema file ${file}: definition ${k} must be a mapping`);
    raw[k] = v;
  }
  const out: Record<string, SchemaNode> = {};
  for (const k of Object.keys(raw)) out[k] = inlineCommon(raw[k], raw, file) as SchemaNode;
  return out;
}

function printerColumns(doc: SchemaNode, file: string): PrinterColumn[] {
  const cols = doc.additionalPrinterColumns ?? [];
  if (!Array.isArray(cols)) throw new Error(`schema file ${file}: additionalPrinterColumns must be a list`);
  return cols.map((c, i) => {
    if (!isObject(c)) throw new Error(`schema file ${file}: additionalPrinterColumns[${i}] must be a mapping`);
    const type = c.type;
    if (type !== "string" && type !== "integer" && type !== "number" && type !== "boolean" && type !== "date") {
      throw new Error(`schema file ${file}: additionalPrinterColumns[${i}].type is invalid`);
    }
    const col: PrinterColumn = { name: str(c, "name", file), type, jsonPath: str(c, "jsonPath", file) };
    if (typeof c.description === "string") col.description = c.description;
    if (typeof c.priority === "number") col.priority = c.priority;
    if (typeof c.format === "string") col.format = c.format;
    return col;
  });
}

function scopeOf(doc: SchemaNode, file: string): "Cluster" | "Namespaced" {
  const s = doc.scope;
  if (s !== "Cluster" && s !== "Namespaced") throw new Error(`schema file ${file}: scope must be Cluster or Namespaced`);
  return s;
}

const typeMetaProps = {
  apiVersion: {
    type: "string",
    description:
      "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values.",
  },
  kind: {
    type: "string",
    description:
      "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. In CamelCase.",
  },
} satisfies Record<string, SchemaNode>;

/** Builds the definition of a list kind whose items are `itemDefinition`. */
function listDefinition(res: ResourceDefinition): SchemaNode {
  return {
    type: "object",
    description: `${res.listKind} is a list of ${res.kind}.`,
    required: ["items"],
    properties: {
      apiVersion: clone(typeMetaProps.apiVersion),
      items: {
        type: "array",
        description: `List of ${res.plural}.`,
        items: { $ref: `#/definitions/${res.definitionName}` },
      },
      kind: clone(typeMetaProps.kind),
      metadata: {
        $ref: `#/definitions/${LIST_META}`,
        description: "Standard list metadata.",
      },
    },
    "x-kubernetes-group-version-kind": [{ group: res.group, kind: res.listKind, version: res.version }],
  };
}

function loadFabricKind(root: string, file: string, common: Record<string, SchemaNode>): ResourceDefinition {
  const doc = readYaml(file);
  const rel = relative(root, file);
  const kind = str(doc, "kind", rel);
  const spec = doc.spec;
  const status = doc.status;
  if (!isObject(spec) || !isObject(status)) throw new Error(`schema file ${rel}: spec and status must be mappings`);
  const listKind = typeof doc.listKind === "string" ? doc.listKind : `${kind}List`;
  return {
    group: FABRIC_GROUP,
    version: FABRIC_VERSION,
    kind,
    plural: str(doc, "plural", rel),
    singular: str(doc, "singular", rel),
    listKind,
    shortNames: strList(doc, "shortNames", rel),
    categories: strList(doc, "categories", rel),
    scope: scopeOf(doc, rel),
    statusSubresource: true,
    description: str(doc, "description", rel),
    printerColumns: printerColumns(doc, rel),
    definitionName: `${FABRIC_DEFINITION_PREFIX}.${kind}`,
    listDefinitionName: `${FABRIC_DEFINITION_PREFIX}.${listKind}`,
    source: rel,
    fabric: true,
    spec: inlineCommon(spec, common, rel) as SchemaNode,
    status: inlineCommon(status, common, rel) as SchemaNode,
  };
}

/** The full object schema of a fabric kind, with metadata as a reference to ObjectMeta. */
export function fabricObjectSchema(res: ResourceDefinition): SchemaNode {
  if (res.spec === undefined || res.status === undefined) throw new Error(`resource ${res.kind} is not a fabric kind`);
  return {
    type: "object",
    description: res.description,
    required: ["spec"],
    properties: {
      apiVersion: clone(typeMetaProps.apiVersion),
      kind: clone(typeMetaProps.kind),
      metadata: {
        $ref: `#/definitions/${OBJECT_META}`,
        description: "Standard object's metadata.",
      },
      spec: clone(res.spec),
      status: clone(res.status),
    },
    "x-kubernetes-group-version-kind": [{ group: res.group, kind: res.kind, version: res.version }],
  };
}

function loadCoreFile(root: string, file: string, definitions: Record<string, SchemaNode>): ResourceDefinition[] {
  const rel = relative(root, file);
  const doc = readYaml(file);
  const defs = doc.definitions;
  if (!isObject(defs)) throw new Error(`schema file ${rel}: definitions must be a mapping`);
  for (const [name, def] of Object.entries(defs)) {
    if (!isObject(def)) throw new Error(`schema file ${rel}: definition ${name} must be a mapping`);
    if (name in definitions) throw new Error(`schema file ${rel}: definition ${name} defined twice`);
    definitions[name] = clone(def);
  }
  const resources = doc.resources ?? [];
  if (!Array.isArray(resources)) throw new Error(`schema file ${rel}: resources must be a list`);
  const group = typeof doc.group === "string" ? doc.group : "";
  const version = typeof doc.version === "string" ? doc.version : "";
  if (resources.length > 0 && version === "") throw new Error(`schema file ${rel}: version is required with resources`);
  return resources.map((r, i) => {
    if (!isObject(r)) throw new Error(`schema file ${rel}: resources[${i}] must be a mapping`);
    const kind = str(r, "kind", rel);
    const definitionName = str(r, "definition", rel);
    const listKind = typeof r.listKind === "string" ? r.listKind : `${kind}List`;
    const sub = strList(r, "subresources", rel);
    const def = definitions[definitionName];
    if (def === undefined) throw new Error(`schema file ${rel}: resource ${kind} names unknown definition ${definitionName}`);
    const res: ResourceDefinition = {
      group,
      version,
      kind,
      plural: str(r, "plural", rel),
      singular: str(r, "singular", rel),
      listKind,
      shortNames: strList(r, "shortNames", rel),
      categories: strList(r, "categories", rel),
      scope: scopeOf(r, rel),
      statusSubresource: sub.includes("status"),
      description: typeof def.description === "string" ? def.description : kind,
      printerColumns: [],
      definitionName,
      listDefinitionName: definitionName.replace(/[A-Za-z0-9]+$/, listKind),
      source: rel,
      fabric: false,
    };
    def["x-kubernetes-group-version-kind"] = [{ group, kind, version }];
    return res;
  });
}

const cache = new Map<string, SchemaCatalog>();

/**
 * Reads and checks the whole schema source. The result is cached per root and
 * must be treated as read-only; callers that change a schema clone it first.
 */
export function loadCatalog(root: string = repositoryRoot()): SchemaCatalog {
  const hit = cache.get(root);
  if (hit !== undefined) return hit;
  const sources: string[] = [];
  const common = loadCommon(root, sources);
  const definitions: Record<string, SchemaNode> = {};

  const coreDir = join(root, "schemas", "core");
  const coreResources: ResourceDefinition[] = [];
  for (const f of readdirSync(coreDir).filter((n) => n.endsWith(".yaml")).sort()) {
    const path = join(coreDir, f);
    sources.push(relative(root, path));
    coreResources.push(...loadCoreFile(root, path, definitions));
  }

  const kindDir = join(root, "schemas");
  const fabric: ResourceDefinition[] = [];
  for (const f of readdirSync(kindDir).filter((n) => n.endsWith(".yaml") && n !== "common.yaml").sort()) {
    const path = join(kindDir, f);
    sources.push(relative(root, path));
    fabric.push(loadFabricKind(root, path, common));
  }
  fabric.sort((a, b) => a.kind.localeCompare(b.kind));
  coreResources.sort((a, b) => (a.group === b.group ? a.kind.localeCompare(b.kind) : a.group.localeCompare(b.group)));

  for (const res of fabric) definitions[res.definitionName] = fabricObjectSchema(res);
  const resources = [...fabric, ...coreResources];
  for (const res of resources) {
    if (res.listDefinitionName in definitions) throw new Error(`list definition ${res.listDefinitionName} defined twice`);
    definitions[res.listDefinitionName] = listDefinition(res);
  }
  const seen = new Set<string>();
  for (const res of resources) {
    const key = `${res.group}/${res.plural}`;
    if (seen.has(key)) throw new Error(`resource ${key} defined twice`);
    seen.add(key);
  }
  checkRefs(definitions);
  const catalog: SchemaCatalog = { root, resources, definitions, common, sources: sources.sort() };
  cache.set(root, catalog);
  return catalog;
}

function checkRefs(definitions: Record<string, SchemaNode>): void {
  const walk = (node: unknown, where: string): void => {
    if (Array.isArray(node)) return node.forEach((n) => walk(n, where));
    if (!isObject(node)) return;
    const ref = node.$ref;
    if (typeof ref === "string") {
      const name = ref.replace(/^#\/definitions\//, "");
      if (!ref.startsWith("#/definitions/") || !(name in definitions)) throw new Error(`definition ${where}: unresolved reference ${ref}`);
    }
    for (const [k, v] of Object.entries(node)) if (k !== "default" && k !== "enum" && k !== "example") walk(v, where);
  };
  for (const [name, def] of Object.entries(definitions)) walk(def, name);
}

/** Finds a served resource by group, version and kind. */
export function findResource(catalog: SchemaCatalog, group: string, version: string, kind: string): ResourceDefinition | undefined {
  return catalog.resources.find((r) => r.group === group && r.version === version && r.kind === kind);
}

/** Names of the definitions `roots` refer to, transitively, including the roots; sorted. */
export function referencedDefinitions(catalog: SchemaCatalog, roots: string[]): string[] {
  const out = new Set<string>();
  const visit = (name: string): void => {
    if (out.has(name)) return;
    const def = catalog.definitions[name];
    if (def === undefined) throw new Error(`unknown definition ${name}`);
    out.add(name);
    const walk = (node: unknown): void => {
      if (Array.isArray(node)) return node.forEach(walk);
      if (!isObject(node)) return;
      if (typeof node.$ref === "string") visit(node.$ref.replace(/^#\/definitions\//, ""));
      for (const [k, v] of Object.entries(node)) if (k !== "default" && k !== "enum") walk(v);
    };
    walk(def);
  };
  roots.forEach(visit);
  return [...out].sort();
}
