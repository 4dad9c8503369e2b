/**
 * Turning a request into a candidate object: reading and decoding the body
 * (JSON, YAML, Kubernetes protobuf), checking its type meta, the write
 * options (dryRun, fieldManager, fieldValidation), then pruning, defaulting
 * and validating the object before a write stores it.
 */
import type Koa from "koa";
import { applyDefaults, unknownFields, validate } from "../validation.js";
import { badRequest, invalid, StatusError, unsupportedMediaType, type StatusCause } from "../errors.js";
import { decodeKubeProtobuf, kubeProtobufMediaType, UnsupportedProtobufKind } from "../kube-protobuf.js";
import { isObj, type KubeObject, type Obj } from "../object.js";
import { prune } from "../prune.js";
import { groupVersion, type ResourceDef } from "../registry.js";
import { checkDecoded, decodeJson, decodeYaml } from "./decode.js";
import { checkDryRun, checkFieldManager, optionsKind } from "./params.js";
import { queryOf, type Query } from "./request.js";
import { addWarnings } from "./warning.js";

const nameRe = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Reads the raw body, refusing more than `limit` bytes with 413. */
export async function readBody(ctx: Koa.Context, limit: number): Promise<Buffer> {
  const declared = Number.parseInt(ctx.get("content-length") || "0", 10);
  if (declared > limit) {
    throw new StatusError(413, "RequestEntityTooLarge", `the request body is too large: limit is ${limit} bytes`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    const b = chunk as Buffer;
    size += b.length;
    if (size > limit) {
      throw new StatusError(413, "RequestEntityTooLarge", `the request body is too large: limit is ${limit} bytes`);
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

/**
 * Reads a JSON, YAML or Kubernetes protobuf object body; 400 when it is not
 * an object, nests too deep or holds a string jsonb cannot store (see decode.ts).
 */
export async function readObject(ctx: Koa.Context, limit: number): Promise<Obj> {
  const raw = await readBody(ctx, limit);
  const type = mediaType(ctx);
  let v: unknown;
  if (type === kubeProtobufMediaType) {
    v = decodeProtobufBody(raw);
    checkDecoded(v, "request body");
  } else if (type === "application/yaml" || type === "application/apply-patch+yaml") v = decodeYaml(raw, "request body");
  else v = decodeJson(raw, "request body");
  if (!isObj(v)) throw badRequest("the request body must be a JSON object");
  return v;
}

/** The request's Content-Type without parameters, lower-cased. */
export function mediaType(ctx: Koa.Context): string {
  return (ctx.get("content-type").split(";")[0] ?? "").trim().toLowerCase();
}

/** Decodes a Kubernetes protobuf body (kubectl/client-go send built-in kinds so): 415 for kinds without a schema, 400 when malformed. */
export function decodeProtobufBody(raw: Buffer): Obj {
  try {
    return decodeKubeProtobuf(raw);
  } catch (err) {
    if (err instanceof UnsupportedProtobufKind) throw unsupportedMediaType(`${kubeProtobufMediaType} for ${err.kind} ${err.apiVersion}`);
    throw badRequest(`error decoding protobuf request body: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** Checks a body's apiVersion and kind against the resource (400 on a mismatch) and fills them in when absent. */
export function checkTypeMeta(def: ResourceDef, body: Obj): void {
  const gv = groupVersion(def);
  if (body.apiVersion !== undefined && body.apiVersion !== gv) {
    throw badRequest(`the API version in the data (${String(body.apiVersion)}) does not match the expected API version (${gv})`);
  }
  if (body.kind !== undefined && body.kind !== def.kind) {
    throw badRequest(`the kind in the data (${String(body.kind)}) does not match the expected kind (${def.kind})`);
  }
  body.apiVersion = gv;
  body.kind = def.kind;
}

/** Whether the request is a dry run; 422 (as kube validates the write's options) for any dryRun value but All. */
export function isDryRun(q: Query, method = "POST"): boolean {
  const v = q.dryRun;
  if (v === undefined || v === "") return false;
  return checkDryRun([v], optionsKind(method));
}

/** The field manager of a request: the query parameter, else the user agent's program name like kube-apiserver. */
export function fieldManager(ctx: Koa.Context, required = false): string {
  const q = queryOf(ctx);
  if (q.fieldManager) {
    checkFieldManager(q.fieldManager, optionsKind(ctx.method));
    return q.fieldManager;
  }
  if (required) throw badRequest("PATCH requests with apply-patch+yaml must include fieldManager");
  const ua = ctx.get("user-agent");
  const prog = ua.split("/")[0]?.trim();
  return prog && prog.length > 0 ? prog.slice(0, 128) : "unknown";
}

/**
 * Applies field validation, pruning, defaulting and schema validation to a
 * candidate object. Throws 400 (strict unknown fields) or 422 (invalid); with
 * fieldValidation=Warn, unknown fields become a Warning header.
 */
export function prepareObject(ctx: Koa.Context, def: ResourceDef, body: KubeObject): KubeObject {
  const q = queryOf(ctx);
  const mode = q.fieldValidation ?? "Warn";
  if (mode !== "Strict" && mode !== "Warn" && mode !== "Ignore") {
    throw badRequest(`fieldValidation must be one of Strict, Warn, Ignore (got ${mode})`);
  }
  let obj = body;
  if (mode !== "Ignore") {
    const unknown = unknownFields(def.group, def.version, def.kind, obj);
    if (unknown.length > 0) {
      if (mode === "Strict") {
        throw new StatusError(400, "BadRequest", `strict decoding error: ${unknown.map((f) => `unknown field "${f}"`).join(", ")}`);
      }
      addWarnings(ctx, unknown.map((f) => `unknown field "${f}"`));
    }
  }
  if (def.schema) obj = prune(def.schema, obj) as KubeObject;
  obj = applyDefaults(def.group, def.version, def.kind, obj) as KubeObject;
  const name = typeof obj.metadata?.name === "string" ? obj.metadata.name : "";
  const causes: StatusCause[] = [];
  if (name !== "" && (!nameRe.test(name) || name.length > 253)) {
    causes.push({
      reason: "FieldValueInvalid",
      field: "metadata.name",
      message: `Invalid value: "${name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character`,
    });
  }
  causes.push(...validate(def.group, def.version, def.kind, obj));
  if (causes.length > 0) throw invalid(def.group, def.kind, name, causes);
  return obj;
}

/** Folds a Secret's write-only stringData into base64 data, as kube-apiserver does on every write. */
export function secretStringData(obj: KubeObject): void {
  if (!isObj(obj.stringData)) {
    delete obj.stringData;
    return;
  }
  const data: Obj = isObj(obj.data) ? { ...obj.data } : {};
  for (const [k, v] of Object.entries(obj.stringData)) data[k] = Buffer.from(String(v), "utf8").toString("base64");
  obj.data = data;
  delete obj.stringData;
}

/** What kube-apiserver's strategies set on built-in kinds at creation. */
export function builtinDefaults(def: ResourceDef, obj: KubeObject): void {
  if (def.group !== "") return;
  if (def.plural === "secrets") {
    if (obj.type === undefined) obj.type = "Opaque";
    secretStringData(obj);
  }
  if (def.plural === "namespaces") {
    const name = obj.metadata.name ?? "";
    obj.metadata.labels = { ...(obj.metadata.labels ?? {}), "kubernetes.io/metadata.name": name };
    obj.spec = { finalizers: ["kubernetes"] };
    obj.status = { phase: "Active" };
  }
}
