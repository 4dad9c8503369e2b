/**
 * Emits `lib/api/types.generated.ts`: TypeScript interfaces for every fabric
 * kind (Spec, Status, the object and its List), the shared meta types they
 * use, and constants naming the group, version and resources.
 */
import { FABRIC_GROUP, FABRIC_VERSION, LIST_META, OBJECT_META, type SchemaCatalog, type SchemaNode } from "../../lib/api/schemas.js";
import { tsHeader } from "./output.js";

/** Fragments of schemas/common.yaml that get a named TypeScript type wherever they are inlined. */
const NAMED_COMMON = ["Condition", "LabelSelector", "LocalObjectReference"];

/** Meta definitions rendered as plain TypeScript types. */
const SCALAR_REFS: Record<string, string> = {
  "io.k8s.apimachinery.pkg.apis.meta.v1.Time": "string",
  "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime": "string",
  "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1": "Record<string, unknown>",
};

function isObject(v: unknown): v is SchemaNode {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The schema without annotations, for recognising inlined common fragments. */
function shape(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(shape);
  if (!isObject(node)) return node;
  const out: SchemaNode = {};
  for (const k of Object.keys(node).sort()) {
    if (k === "description" || k === "default") continue;
    out[k] = k === "properties" && isObject(node[k]) ? Object.fromEntries(Object.entries(node[k]).map(([pk, pv]) => [pk, shape(pv)])) : shape(node[k]);
  }
  return out;
}

function pascal(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function singular(s: string): string {
  if (/ies$/.test(s)) return s.replace(/ies$/, "y");
  if (/(ss|us)$/.test(s)) return s;
  if (/s$/.test(s)) return s.slice(0, -1);
  return s;
}

function doc(lines: string[], indent: string): string {
  const text = lines.filter((l) => l !== "").join("\n\n").replace(/\*\//g, "*\\/");
  if (text === "") return "";
  const body = text.split("\n").map((l) => (l === "" ? `${indent} *` : `${indent} * ${l}`));
  return `${indent}/**\n${body.join("\n")}\n${indent} */\n`;
}

function propertyName(name: string): string {
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(name) ? name : JSON.stringify(name);
}

function fieldNotes(node: SchemaNode): string {
  const notes: string[] = [];
  if (node.default !== undefined) notes.push(`Default: \`${JSON.stringify(node.default)}\`.`);
  if (typeof node.minimum === "number") notes.push(`Minimum: ${node.minimum}.`);
  if (typeof node.maximum === "number") notes.push(`Maximum: ${node.maximum}.`);
  if (typeof node.pattern === "string") notes.push(`Pattern: \`${node.pattern}\`.`);
  if (typeof node.format === "string") notes.push(`Format: ${node.format}.`);
  return notes.join(" ");
}

class Emitter {
  private readonly decls: string[] = [];
  /** What each emitted name stands for (the schema's shape, extra fields and fixed types), to tell a reuse from a collision. */
  private readonly emitted = new Map<string, string>();
  private readonly commonShapes = new Map<string, string>();

  constructor(private readonly catalog: SchemaCatalog) {
    for (const name of NAMED_COMMON) {
      const def = catalog.common[name];
      if (def !== undefined) this.commonShapes.set(JSON.stringify(shape(def)), name);
    }
  }

  output(): string {
    return this.decls.join("\n");
  }

  /** The TypeScript type of a schema node; named object types are emitted on the way. */
  typeOf(node: unknown, hint: string): string {
    if (!isObject(node)) return "unknown";
    if (typeof node.$ref === "string") {
      const name = node.$ref.replace(/^#\/definitions\//, "");
      const scalar = SCALAR_REFS[name];
      if (scalar !== undefined) return scalar;
      const short = name.slice(name.lastIndexOf(".") + 1);
      const def = this.catalog.definitions[name];
      if (def === undefined) throw new Error(`unknown definition ${name}`);
      return this.emitInterface(short, def);
    }
    const common = this.commonShapes.get(JSON.stringify(shape(node)));
    if (common !== undefined) {
      const def = this.catalog.common[common];
      return def !== undefined ? this.emitInterface(common, def) : common;
    }
    if (node["x-kubernetes-int-or-string"] === true) return "number | string";
    if (Array.isArray(node.enum)) return node.enum.map((v) => JSON.stringify(v)).join(" | ");
    switch (node.type) {
      case "string":
        return "string";
      case "integer":
      case "number":
        return "number";
      case "boolean":
        return "boolean";
      case "array": {
        const item = this.typeOf(node.items, singular(hint));
        return /^[A-Za-z0-9_.<>, ]+$/.test(item) && !item.includes(" ") ? `${item}[]` : `Array<${item}>`;
      }
      case "object":
      case undefined:
        if (isObject(node.properties)) return this.emitInterface(hint, node);
        if (isObject(node.additionalProperties)) return `Record<string, ${this.typeOf(node.additionalProperties, `${hint}Value`)}>`;
        return "Record<string, unknown>";
      default:
        return "unknown";
    }
  }

  /**
   * Emits `export interface <name>` for an object schema, once, and returns
   * the name it got. Two different schemas can ask for one name (a field
   * `update` and the items of a field `updates` both ask for `…Update`):
   * the first keeps it, the next gets the first free `<name>2`, `<name>3`, …
   * in the schemas' own order, so the result is deterministic.
   */
  emitInterface(name: string, node: SchemaNode, extra: string[] = [], fixed: Record<string, string> = {}): string {
    const what = JSON.stringify([shape(node), extra, fixed]);
    let chosen = name;
    for (let n = 2; this.emitted.has(chosen) && this.emitted.get(chosen) !== what; n++) chosen = `${name}${n}`;
    if (this.emitted.has(chosen)) return chosen;
    this.emitted.set(chosen, what);
    name = chosen;
    const props = isObject(node.properties) ? node.properties : {};
    const required = new Set(Array.isArray(node.required) ? node.required.filter((r): r is string => typeof r === "string") : []);
    const fields: string[] = [...extra];
    for (const [prop, child] of Object.entries(props)) {
      if (!isObject(child)) continue;
      const type = fixed[prop] ?? this.typeOf(child, `${name}${pascal(prop)}`);
      const description = typeof child.description === "string" ? child.description : "";
      fields.push(`${doc([description, fieldNotes(child)], "  ")}  ${propertyName(prop)}${required.has(prop) ? "" : "?"}: ${type};`);
    }
    const description = typeof node.description === "string" ? node.description : "";
    this.decls.push(`${doc([description], "")}export interface ${name} {\n${fields.join("\n")}\n}\n`);
    return name;
  }

  /** emitInterface for a name other code refers to as written: a clash is a generator error, never a renamed type. */
  emitNamed(name: string, node: SchemaNode, extra: string[] = [], fixed: Record<string, string> = {}): void {
    const got = this.emitInterface(name, node, extra, fixed);
    if (got !== name) throw new Error(`generate: the type name ${name} is already taken by another schema's type (rename the field that produced it)`);
  }
}

/** The contents of lib/api/types.generated.ts. */
export function generateTypes(catalog: SchemaCatalog): Map<string, string> {
  const emitter = new Emitter(catalog);
  const objectMeta = catalog.definitions[OBJECT_META];
  const listMeta = catalog.definitions[LIST_META];
  if (objectMeta === undefined || listMeta === undefined) throw new Error("meta definitions are missing from schemas/core");
  emitter.emitNamed("ObjectMeta", objectMeta);
  emitter.emitNamed("ListMeta", listMeta);
  const condition = catalog.common.Condition;
  if (condition === undefined) throw new Error("schemas/common.yaml defines no Condition");
  emitter.emitNamed("Condition", condition);

  const fabric = catalog.resources.filter((r) => r.fabric);
  const apiVersion = `${FABRIC_GROUP}/${FABRIC_VERSION}`;
  for (const res of fabric) {
    if (res.spec === undefined || res.status === undefined) continue;
    emitter.emitNamed(`${res.kind}Spec`, res.spec);
    emitter.emitNamed(`${res.kind}Status`, res.status);
    const typeMeta = (kind: string) => [
      `${doc(["APIVersion of the object, always " + apiVersion + "."], "  ")}  apiVersion: ${JSON.stringify(apiVersion)};`,
      `${doc(["Kind of the object."], "  ")}  kind: ${JSON.stringify(kind)};`,
    ];
    emitter.emitNamed(
      res.kind,
      {
        description: res.description,
        required: ["metadata", "spec"],
        properties: {
          metadata: { description: "Standard object's metadata." },
          spec: { description: res.spec.description },
          status: { description: res.status.description },
        },
      },
      typeMeta(res.kind),
      { metadata: "ObjectMeta", spec: `${res.kind}Spec`, status: `${res.kind}Status` },
    );
    emitter.emitNamed(
      res.listKind,
      {
        description: `${res.listKind} is a list of ${res.kind}.`,
        required: ["metadata", "items"],
        properties: {
          metadata: { description: "Standard list metadata." },
          items: { description: `List of ${res.plural}.` },
        },
      },
      typeMeta(res.listKind),
      { metadata: "ListMeta", items: `${res.kind}[]` },
    );
  }

  const kinds = fabric.map((r) => r.kind);
  const resources = fabric
    .map(
      (r) =>
        `  ${r.kind}: {\n    group: ${JSON.stringify(r.group)},\n    version: ${JSON.stringify(r.version)},\n    kind: ${JSON.stringify(r.kind)},\n    listKind: ${JSON.stringify(r.listKind)},\n    plural: ${JSON.stringify(r.plural)},\n    singular: ${JSON.stringify(r.singular)},\n    shortNames: ${JSON.stringify(r.shortNames)},\n    namespaced: ${r.scope === "Namespaced"},\n  },`,
    )
    .join("\n");
  const constants = `/** API group of the fabric kinds. */
export const GROUP = ${JSON.stringify(FABRIC_GROUP)};
/** API version of the fabric kinds. */
export const VERSION = ${JSON.stringify(FABRIC_VERSION)};
/** The apiVersion field value of every fabric object. */
export const API_VERSION = ${JSON.stringify(apiVersion)};

/** Names of the fabric kinds. */
export type FabricKind = ${kinds.map((k) => JSON.stringify(k)).join(" | ")};

/** Every fabric object type. */
export type FabricObject = ${kinds.join(" | ")};

/** Naming and scope of one fabric resource. */
export interface ResourceInfo {
  readonly group: string;
  readonly version: string;
  readonly kind: FabricKind;
  readonly listKind: string;
  readonly plural: string;
  readonly singular: string;
  readonly shortNames: readonly string[];
  readonly namespaced: boolean;
}

/** Naming and scope of every fabric resource, by kind. */
export const RESOURCES = {
${resources}
} as const satisfies Record<FabricKind, ResourceInfo>;

/** Plural resource name of every fabric kind. */
export const PLURALS = {
${fabric.map((r) => `  ${r.kind}: ${JSON.stringify(r.plural)},`).join("\n")}
} as const satisfies Record<FabricKind, string>;
`;
  const sources = [...catalog.sources.filter((s) => !s.startsWith("schemas/core/") || s === "schemas/core/meta-v1.yaml")];
  const content = `${tsHeader(sources)}\n${constants}\n${emitter.output()}`;
  return new Map([["lib/api/types.generated.ts", content]]);
}
