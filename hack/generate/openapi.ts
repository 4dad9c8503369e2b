/**
 * Emits the OpenAPI documents the API server publishes: one OpenAPI 3.0
 * document per group-version (`/openapi/v3/<path>`) plus an index, and one
 * Swagger 2.0 document for everything (`/openapi/v2`).
 *
 * The shapes follow kube-apiserver's, because kubectl reads them: `explain`
 * finds a kind through `x-kubernetes-group-version-kind` on
 * `components.schemas` (v3) or `definitions` (v2), and `apply` uses
 * server-side field validation when the PATCH operation of a kind carries
 * `x-kubernetes-group-version-kind` and a `fieldValidation` query parameter.
 */
import { referencedDefinitions, type ResourceDefinition, type SchemaCatalog, type SchemaNode } from "../../lib/api/schemas.js";
import { GENERATOR, sortedKeys, toJson } from "./output.js";

const STATUS = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const DELETE_OPTIONS = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const PATCH = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";

/**
 * Patch content types of custom resources, as kube-apiserver publishes them.
 * Strategic merge patch is deliberately absent: kubectl >= 1.27 sends it for
 * any kind whose PATCH operation lists it in OpenAPI v3, and custom resources
 * (like here) do not support it, so `kubectl apply` would fail with 415.
 */
export const CUSTOM_PATCH_CONTENT_TYPES = ["application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json"];
/** Patch content types of the built-in kinds (kubectl uses strategic merge patch for them anyway). */
export const BUILTIN_PATCH_CONTENT_TYPES = [...CUSTOM_PATCH_CONTENT_TYPES, "application/strategic-merge-patch+json"];
const PRODUCES = ["application/json", "application/yaml"];
const PRODUCES_LIST = ["application/json", "application/json;stream=watch", "application/yaml"];

/** One group-version the server publishes. */
export interface GroupVersion {
  group: string;
  version: string;
  resources: ResourceDefinition[];
}

/** The /openapi/v3 path key of a group-version, e.g. `apis/accessfabric.io/v1alpha1` or `api/v1`. */
export function pathKey(gv: { group: string; version: string }): string {
  return gv.group === "" ? `api/${gv.version}` : `apis/${gv.group}/${gv.version}`;
}

/** The file name of a group-version document, e.g. `apis__accessfabric.io__v1alpha1.json`. */
export function fileNameOf(gv: { group: string; version: string }): string {
  return `${pathKey(gv).replace(/\//g, "__")}.json`;
}

/** Group-versions served, fabric first, in a stable order. */
export function groupVersions(catalog: SchemaCatalog): GroupVersion[] {
  const out: GroupVersion[] = [];
  for (const res of catalog.resources) {
    let gv = out.find((g) => g.group === res.group && g.version === res.version);
    if (gv === undefined) {
      gv = { group: res.group, version: res.version, resources: [] };
      out.push(gv);
    }
    gv.resources.push(res);
  }
  return out;
}

function isObject(v: unknown): v is SchemaNode {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** kube's operation id spelling of a group-version: CoreV1, CoordinationV1, AccessfabricIoV1alpha1. */
function opGroupVersion(gv: { group: string; version: string }): string {
  const group = gv.group === "" ? "core" : gv.group.replace(/\.k8s\.io$/, "");
  const camel = group
    .split(/[.-]/)
    .map((p) => p.charAt(0).toUpperCase() + p.slice(1))
    .join("");
  return camel + gv.version.charAt(0).toUpperCase() + gv.version.slice(1);
}

function tagOf(gv: { group: string; version: string }): string {
  const g = opGroupVersion(gv).replace(/V\d.*$/, "");
  return `${g.charAt(0).toLowerCase()}${g.slice(1)}_${gv.version}`;
}

/** Rewrites references for the target document; v3 wraps a `$ref` with siblings in `allOf` (like kube). */
function convertSchema(node: unknown, target: "v2" | "v3"): unknown {
  if (Array.isArray(node)) return node.map((n) => convertSchema(n, target));
  if (!isObject(node)) return node;
  const out: SchemaNode = {};
  if (typeof node.$ref === "string") {
    const name = node.$ref.replace(/^#\/definitions\//, "");
    const ref = target === "v3" ? `#/components/schemas/${name}` : `#/definitions/${name}`;
    const siblings = Object.keys(node).filter((k) => k !== "$ref");
    if (target === "v2" || siblings.length === 0) {
      out.$ref = ref;
    } else {
      out.allOf = [{ $ref: ref }];
    }
    for (const k of siblings) out[k] = structuredClone(node[k]);
    return out;
  }
  for (const [k, v] of Object.entries(node)) {
    if (k === "default" || k === "enum" || k === "x-kubernetes-group-version-kind") {
      out[k] = structuredClone(v);
    } else if (k === "properties" && isObject(v)) {
      out[k] = Object.fromEntries(Object.entries(v).map(([pk, pv]) => [pk, convertSchema(pv, target)]));
    } else if (target === "v2" && (k === "anyOf" || k === "oneOf" || k === "allOf" || k === "not" || k === "nullable")) {
      // Swagger 2.0 has none of these; kube drops them when publishing CRDs in v2.
      continue;
    } else {
      out[k] = convertSchema(v, target);
    }
  }
  if (target === "v2" && node["x-kubernetes-preserve-unknown-fields"] === true && node.properties === undefined) {
    // Let old clients (kubectl 1.20 validation) accept arbitrary content here.
    delete out.type;
  }
  return out;
}

interface Param {
  name: string;
  in: "query" | "path";
  description: string;
  type: "string" | "boolean" | "integer";
  required?: boolean;
}

const P = {
  pretty: { name: "pretty", in: "query", type: "string", description: "If 'true', then the output is pretty printed." },
  dryRun: {
    name: "dryRun",
    in: "query",
    type: "string",
    description: "When present, indicates that modifications should not be persisted. The only valid value is All.",
  },
  fieldManager: {
    name: "fieldManager",
    in: "query",
    type: "string",
    description: "fieldManager is a name associated with the actor or entity that is making these changes. Required for apply requests.",
  },
  fieldValidation: {
    name: "fieldValidation",
    in: "query",
    type: "string",
    description:
      "How the server handles fields the schema does not know: Ignore drops them silently, Warn drops them with a warning header per field (the default), Strict fails the request with a BadRequest error listing every unknown or duplicate field.",
  },
  force: {
    name: "force",
    in: "query",
    type: "boolean",
    description: "Force is going to \"force\" Apply requests: re-acquire conflicting fields owned by other people. Must be unset for non-apply patch requests.",
  },
  allowWatchBookmarks: {
    name: "allowWatchBookmarks",
    in: "query",
    type: "boolean",
    description: "allowWatchBookmarks requests watch events with type BOOKMARK.",
  },
  continue: { name: "continue", in: "query", type: "string", description: "The continue option should be set when retrieving more results from the server (pagination)." },
  fieldSelector: { name: "fieldSelector", in: "query", type: "string", description: "A selector to restrict the list of returned objects by their fields (metadata.name, metadata.namespace)." },
  labelSelector: { name: "labelSelector", in: "query", type: "string", description: "A selector to restrict the list of returned objects by their labels." },
  limit: { name: "limit", in: "query", type: "integer", description: "limit is a maximum number of responses to return for a list call; more results are signalled by metadata.continue." },
  resourceVersion: { name: "resourceVersion", in: "query", type: "string", description: "resourceVersion sets a constraint on what resource versions a request may be served from." },
  resourceVersionMatch: { name: "resourceVersionMatch", in: "query", type: "string", description: "resourceVersionMatch determines how resourceVersion is applied to list calls." },
  sendInitialEvents: { name: "sendInitialEvents", in: "query", type: "boolean", description: "Whether a watch starts with synthetic ADDED events for the current state." },
  timeoutSeconds: { name: "timeoutSeconds", in: "query", type: "integer", description: "Timeout for the list/watch call." },
  watch: { name: "watch", in: "query", type: "boolean", description: "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications." },
  gracePeriodSeconds: { name: "gracePeriodSeconds", in: "query", type: "integer", description: "The duration in seconds before the object should be deleted." },
  propagationPolicy: {
    name: "propagationPolicy",
    in: "query",
    type: "string",
    description: "Whether and how garbage collection will be performed: Orphan, Background or Foreground.",
  },
  namespace: { name: "namespace", in: "path", type: "string", required: true, description: "object name and auth scope, such as for teams and projects" },
} satisfies Record<string, Param>;

const LIST_PARAMS: Param[] = [
  P.allowWatchBookmarks,
  P.continue,
  P.fieldSelector,
  P.labelSelector,
  P.limit,
  P.resourceVersion,
  P.resourceVersionMatch,
  P.sendInitialEvents,
  P.timeoutSeconds,
  P.watch,
];
const WRITE_PARAMS: Param[] = [P.dryRun, P.fieldManager, P.fieldValidation];
const DELETE_PARAMS: Param[] = [P.dryRun, P.gracePeriodSeconds, P.propagationPolicy];

function nameParam(res: ResourceDefinition): Param {
  return { name: "name", in: "path", type: "string", required: true, description: `name of the ${res.kind}` };
}

function v3Param(p: Param): SchemaNode {
  const out: SchemaNode = { name: p.name, in: p.in, description: p.description };
  if (p.required === true) out.required = true;
  out.schema = { type: p.type, uniqueItems: true };
  return out;
}

function v2Param(p: Param): SchemaNode {
  const out: SchemaNode = { name: p.name, in: p.in, description: p.description, type: p.type, uniqueItems: true };
  if (p.required === true) out.required = true;
  return out;
}

type Verb = "list" | "post" | "get" | "put" | "patch" | "delete" | "deletecollection";

/** A format-neutral operation, rendered into v2 or v3. */
interface Operation {
  method: "get" | "post" | "put" | "patch" | "delete";
  action: Verb;
  operationId: string;
  description: string;
  params: Param[];
  body?: { schema: string; required: boolean; patch: boolean };
  /** Content types of a patch body. */
  patchTypes: string[];
  responses: Array<{ code: string; description: string; schema?: string }>;
  produces: string[];
  gvk: { group: string; kind: string; version: string };
}

interface PathItem {
  path: string;
  params: Param[];
  ops: Operation[];
}

function resourcePaths(res: ResourceDefinition): PathItem[] {
  const gv = { group: res.group, version: res.version };
  const base = res.group === "" ? `/api/${res.version}` : `/apis/${res.group}/${res.version}`;
  const namespaced = res.scope === "Namespaced";
  const ns = namespaced ? "Namespaced" : "";
  const id = (verb: string, suffix = ""): string => `${verb}${opGroupVersion(gv)}${ns}${res.kind}${suffix}`;
  const gvk = { group: res.group, kind: res.kind, version: res.version };
  const patchTypes = res.fabric ? CUSTOM_PATCH_CONTENT_TYPES : BUILTIN_PATCH_CONTENT_TYPES;
  const collection = namespaced ? `${base}/namespaces/{namespace}/${res.plural}` : `${base}/${res.plural}`;
  const scopeParams = namespaced ? [P.namespace] : [];
  const obj = res.definitionName;
  const ok = (schema?: string) => ({ code: "200", description: "OK", ...(schema === undefined ? {} : { schema }) });
  const created = (schema: string) => ({ code: "201", description: "Created", schema });
  const accepted = (schema: string) => ({ code: "202", description: "Accepted", schema });
  const unauthorized = { code: "401", description: "Unauthorized" };

  const paths: PathItem[] = [];
  if (namespaced) {
    paths.push({
      path: `${base}/${res.plural}`,
      params: [P.pretty],
      ops: [
        {
          method: "get",
          action: "list",
          operationId: `list${opGroupVersion(gv)}${res.kind}ForAllNamespaces`,
          description: `list or watch objects of kind ${res.kind} in all namespaces`,
          params: LIST_PARAMS,
          responses: [ok(res.listDefinitionName), unauthorized],
          produces: PRODUCES_LIST,
          gvk,
          patchTypes,
        },
      ],
    });
  }
  paths.push({
    path: collection,
    params: [...scopeParams, P.pretty],
    ops: [
      {
        method: "get",
        action: "list",
        operationId: id("list"),
        description: `list or watch objects of kind ${res.kind}`,
        params: LIST_PARAMS,
        responses: [ok(res.listDefinitionName), unauthorized],
        produces: PRODUCES_LIST,
        gvk,
        patchTypes,
      },
      {
        method: "post",
        action: "post",
        operationId: id("create"),
        description: `create a ${res.kind}`,
        params: WRITE_PARAMS,
        body: { schema: obj, required: true, patch: false },
        responses: [ok(obj), created(obj), accepted(obj), unauthorized],
        produces: PRODUCES,
        gvk,
        patchTypes,
      },
      {
        method: "delete",
        action: "deletecollection",
        operationId: `delete${opGroupVersion(gv)}Collection${ns}${res.kind}`,
        description: `delete collection of ${res.kind}`,
        params: [...LIST_PARAMS.filter((p) => p.name !== "watch" && p.name !== "allowWatchBookmarks"), ...DELETE_PARAMS],
        body: { schema: DELETE_OPTIONS, required: false, patch: false },
        responses: [ok(STATUS), unauthorized],
        produces: PRODUCES,
        gvk,
        patchTypes,
      },
    ],
  });
  const item = `${collection}/{name}`;
  paths.push({
    path: item,
    params: [nameParam(res), ...scopeParams, P.pretty],
    ops: [
      {
        method: "get",
        action: "get",
        operationId: id("read"),
        description: `read the specified ${res.kind}`,
        params: [],
        responses: [ok(obj), unauthorized],
        produces: PRODUCES,
        gvk,
        patchTypes,
      },
      {
        method: "put",
        action: "put",
        operationId: id("replace"),
        description: `replace the specified ${res.kind}`,
        params: WRITE_PARAMS,
        body: { schema: obj, required: true, patch: false },
        responses: [ok(obj), created(obj), unauthorized],
        produces: PRODUCES,
        gvk,
        patchTypes,
      },
      {
        method: "patch",
        action: "patch",
        operationId: id("patch"),
        description: `partially update the specified ${res.kind}`,
        params: [...WRITE_PARAMS, P.force],
        body: { schema: PATCH, required: true, patch: true },
        responses: [ok(obj), created(obj), unauthorized],
        produces: PRODUCES,
        gvk,
        patchTypes,
      },
      {
        method: "delete",
        action: "delete",
        operationId: id("delete"),
        description: `delete a ${res.kind}`,
        params: DELETE_PARAMS,
        body: { schema: DELETE_OPTIONS, required: false, patch: false },
        responses: [ok(STATUS), accepted(STATUS), unauthorized],
        produces: PRODUCES,
        gvk,
        patchTypes,
      },
    ],
  });
  if (res.statusSubresource) {
    paths.push({
      path: `${item}/status`,
      params: [nameParam(res), ...scopeParams, P.pretty],
      ops: [
        {
          method: "get",
          action: "get",
          operationId: id("read", "Status"),
          description: `read status of the specified ${res.kind}`,
          params: [],
          responses: [ok(obj), unauthorized],
          produces: PRODUCES,
          gvk,
          patchTypes,
        },
        {
          method: "put",
          action: "put",
          operationId: id("replace", "Status"),
          description: `replace status of the specified ${res.kind}`,
          params: WRITE_PARAMS,
          body: { schema: obj, required: true, patch: false },
          responses: [ok(obj), created(obj), unauthorized],
          produces: PRODUCES,
          gvk,
          patchTypes,
        },
        {
          method: "patch",
          action: "patch",
          operationId: id("patch", "Status"),
          description: `partially update status of the specified ${res.kind}`,
          params: [...WRITE_PARAMS, P.force],
          body: { schema: PATCH, required: true, patch: true },
          responses: [ok(obj), created(obj), unauthorized],
          produces: PRODUCES,
          gvk,
          patchTypes,
        },
      ],
    });
  }
  return paths;
}

function schemaRoots(resources: ResourceDefinition[]): string[] {
  return [...resources.flatMap((r) => [r.definitionName, r.listDefinitionName]), STATUS, DELETE_OPTIONS, PATCH];
}

function v3Operation(op: Operation, tag: string): SchemaNode {
  const out: SchemaNode = {
    tags: [tag],
    description: op.description,
    operationId: op.operationId,
    parameters: op.params.map(v3Param),
  };
  if (op.body !== undefined) {
    const ref = { $ref: `#/components/schemas/${op.body.schema}` };
    const types = op.body.patch ? op.patchTypes : ["*/*"];
    out.requestBody = {
      content: Object.fromEntries(types.map((t) => [t, { schema: ref }])),
      required: op.body.required,
    };
  }
  out.responses = Object.fromEntries(
    op.responses.map((r) => [
      r.code,
      r.schema === undefined
        ? { description: r.description }
        : {
            description: r.description,
            content: Object.fromEntries(op.produces.map((t) => [t, { schema: { $ref: `#/components/schemas/${r.schema}` } }])),
          },
    ]),
  );
  out["x-kubernetes-action"] = op.action;
  out["x-kubernetes-group-version-kind"] = { ...op.gvk };
  return out;
}

function v2Operation(op: Operation, tag: string): SchemaNode {
  const out: SchemaNode = {
    description: op.description,
    consumes: op.body?.patch === true ? [...op.patchTypes] : ["*/*"],
    produces: [...op.produces],
    schemes: ["https"],
    tags: [tag],
    operationId: op.operationId,
  };
  const params: SchemaNode[] = [];
  if (op.body !== undefined) {
    params.push({ name: "body", in: "body", required: op.body.required, schema: { $ref: `#/definitions/${op.body.schema}` } });
  }
  params.push(...op.params.map(v2Param));
  out.parameters = params;
  out.responses = Object.fromEntries(
    op.responses.map((r) => [
      r.code,
      r.schema === undefined ? { description: r.description } : { description: r.description, schema: { $ref: `#/definitions/${r.schema}` } },
    ]),
  );
  out["x-kubernetes-action"] = op.action;
  out["x-kubernetes-group-version-kind"] = { ...op.gvk };
  return out;
}

function sourcesOf(resources: ResourceDefinition[], catalog: SchemaCatalog): string[] {
  const files = new Set<string>(resources.map((r) => r.source));
  if (resources.some((r) => r.fabric)) files.add("schemas/common.yaml");
  files.add("schemas/core/meta-v1.yaml");
  return [...files].filter((f) => catalog.sources.includes(f)).sort();
}

const SECURITY_V3 = { BearerToken: { type: "apiKey", description: "Bearer Token authentication", name: "authorization", in: "header" } };

/** The OpenAPI 3.0 document of one group-version. */
export function openapiV3Document(catalog: SchemaCatalog, gv: GroupVersion): SchemaNode {
  const tag = tagOf(gv);
  const paths: Record<string, SchemaNode> = {};
  for (const res of gv.resources) {
    for (const item of resourcePaths(res)) {
      const entry: SchemaNode = {};
      for (const op of item.ops) entry[op.method] = v3Operation(op, tag);
      entry.parameters = item.params.map(v3Param);
      paths[item.path] = entry;
    }
  }
  const schemas: Record<string, unknown> = {};
  for (const name of referencedDefinitions(catalog, schemaRoots(gv.resources))) {
    schemas[name] = convertSchema(catalog.definitions[name], "v3");
  }
  const sources = sourcesOf(gv.resources, catalog);
  return {
    openapi: "3.0.0",
    info: {
      title: "Access Fabric",
      version: `${pathKey(gv)}`,
      description: `Code generated by ${GENERATOR} from ${sources.join(", ")}. DO NOT EDIT.`,
    },
    "x-generated-from": sources,
    paths: sortedKeys(paths),
    components: { schemas, securitySchemes: SECURITY_V3 },
    security: [{ BearerToken: [] }],
  };
}

/** The Swagger 2.0 document of every served group-version. */
export function openapiV2Document(catalog: SchemaCatalog): SchemaNode {
  const paths: Record<string, SchemaNode> = {};
  for (const gv of groupVersions(catalog)) {
    const tag = tagOf(gv);
    for (const res of gv.resources) {
      for (const item of resourcePaths(res)) {
        const entry: SchemaNode = {};
        for (const op of item.ops) entry[op.method] = v2Operation(op, tag);
        entry.parameters = item.params.map(v2Param);
        paths[item.path] = entry;
      }
    }
  }
  const definitions: Record<string, unknown> = {};
  for (const name of referencedDefinitions(catalog, schemaRoots(catalog.resources))) {
    definitions[name] = convertSchema(catalog.definitions[name], "v2");
  }
  return {
    swagger: "2.0",
    info: {
      title: "Access Fabric",
      version: "v1alpha1",
      description: `Code generated by ${GENERATOR} from ${catalog.sources.join(", ")}. DO NOT EDIT.`,
    },
    "x-generated-from": [...catalog.sources],
    paths: sortedKeys(paths),
    definitions,
    securityDefinitions: SECURITY_V3,
    security: [{ BearerToken: [] }],
  };
}

/**
 * Every OpenAPI file, keyed by path relative to the repository root.
 *
 * `openapi-v3/index.json` is a flat map from the /openapi/v3 path key to the
 * document's file name (`{"apis/accessfabric.io/v1alpha1": "apis__accessfabric.io__v1alpha1.json"}`);
 * it holds nothing else, so the API server can iterate it as is. The server
 * computes the content hashes for `serverRelativeURL` itself.
 */
export function generateOpenapi(catalog: SchemaCatalog): Map<string, string> {
  const out = new Map<string, string>();
  const dir = "apiserver/generated/openapi-v3";
  const index: Record<string, string> = {};
  for (const gv of groupVersions(catalog)) {
    const file = fileNameOf(gv);
    out.set(`${dir}/${file}`, toJson(openapiV3Document(catalog, gv)));
    index[pathKey(gv)] = file;
  }
  out.set(`${dir}/index.json`, toJson(sortedKeys(index)));
  out.set("apiserver/generated/openapi-v2.json", toJson(openapiV2Document(catalog)));
  return out;
}
