/**
 * Turning a request into a candidate object: reading and decoding the body
 * (JSON, YAML, Kubernetes protobuf), checking its type meta, the write
 * options (dryRun, fieldManager, fieldValidation), then pruning, defaulting
 * and validating the object before a write stores it.
 */
import { randomUUID } from "node:crypto";
import type Koa from "koa";
import { validateBuiltin } from "../builtin-validation.js";
import { applyDefaults, pruneUnknownFields, unknownFields, validate } from "../validation.js";
import { badRequest, conflict, invalid, StatusError, unsupportedMediaType, type StatusCause } from "../errors.js";
import { nameRuleFor, validateObjectMeta, validateObjectMetaUpdate } from "../object-meta.js";
import { decodeKubeProtobuf, kubeProtobufMediaType, UnsupportedProtobufKind } from "../kube-protobuf.js";
import { isObj, type KubeObject, type Obj } from "../object.js";
import { groupVersion, type ResourceDef } from "../registry.js";
import { checkDecoded, decodeJson, decodeYaml } from "./decode.js";
import { checkDryRun, checkFieldManager, optionsKind } from "./params.js";
import { queryOf, type Query } from "./request.js";
import { addWarnings } from "./warning.js";

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
 * Applies field validation, pruning, defaulting and validation to a candidate
 * object, before anything is stored. `old` is the stored object on an update
 * and absent on a create. As kube-apiserver's BeforeCreate/BeforeUpdate: a
 * cluster-scoped object loses any namespace, and a created object gets a
 * server uid and no deletion fields whatever the client sent. Validation is
 * ObjectMeta (per kind name rules), the kind's schema, then the built-in
 * kinds' own rules. Throws 400 (strict unknown fields) or 422 (invalid); with
 * fieldValidation=Warn, unknown fields become a Warning header.
 */
export function prepareObject(ctx: Koa.Context, def: ResourceDef, body: KubeObject, old?: KubeObject): KubeObject {
  const q = queryOf(ctx);
  const mode = q.fieldValidation ?? "Warn";
  if (mode !== "Strict" && mode !== "Warn" && mode !== "Ignore") {
    throw badRequest(`fieldValidation must be one of Strict, Warn, Ignore (got ${mode})`);
  }
  if (mode !== "Ignore") {
    const unknown = unknownFields(def.group, def.version, def.kind, body);
    if (unknown.length > 0) {
      if (mode === "Strict") {
        throw new StatusError(400, "BadRequest", `strict decoding error: ${unknown.map((f) => `unknown field "${f}"`).join(", ")}`);
      }
      addWarnings(ctx, unknown.map((f) => `unknown field "${f}"`));
    }
  }
  let obj = pruneUnknownFields(def.group, def.version, def.kind, body);
  obj = applyDefaults(def.group, def.version, def.kind, obj);
  if (!isObj(obj.metadata)) obj.metadata = {};
  const meta = obj.metadata;
  // Every ObjectMeta field is omitempty: kube decodes a null into the zero value and stores nothing.
  for (const [k, v] of Object.entries(meta)) if (v === null) delete meta[k];
  if (!def.namespaced) delete meta.namespace;
  if (old === undefined) {
    meta.uid = randomUUID();
    delete meta.deletionTimestamp;
    delete meta.deletionGracePeriodSeconds;
    delete meta.selfLink;
  }
  const name = typeof meta.name === "string" ? meta.name : "";
  const causes: StatusCause[] = [
    ...validateObjectMeta(meta, { namespaced: def.namespaced, nameRule: nameRuleFor(def) }),
    ...validate(def.group, def.version, def.kind, obj),
    ...validateBuiltin(def, obj, old),
  ];
  if (causes.length > 0) throw invalid(def.group, def.kind, name, causes);
  return obj;
}

/**
 * Checks an update's candidate object against the stored one before the
 * server copies its own metadata over it, as kube's update and patch handlers
 * do: a different name or (namespaced) namespace is 400 BadRequest, a
 * different uid fails the uid precondition with 409 Conflict (so a malformed
 * uid never reaches storage), and on the main resource the server-owned
 * deletion fields and finalizers of an object being deleted follow
 * `ValidateObjectMetaUpdate` (422).
 */
export function checkMetaUpdate(def: ResourceDef, cur: KubeObject, candidate: KubeObject, subresource?: string): void {
  const meta = isObj(candidate.metadata) ? candidate.metadata : {};
  const name = cur.metadata.name ?? "";
  if (typeof meta.name === "string" && meta.name !== "" && meta.name !== name) {
    throw badRequest(`the name of the object (${meta.name}) does not match the name on the URL (${name})`);
  }
  if (def.namespaced && typeof meta.namespace === "string" && meta.namespace !== "" && meta.namespace !== cur.metadata.namespace) {
    throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
  }
  if (typeof meta.uid === "string" && meta.uid !== "" && meta.uid !== cur.metadata.uid) {
    throw conflict(def.group, def.plural, name, `Precondition failed: UID in precondition: ${meta.uid}, UID in object meta: ${cur.metadata.uid ?? ""}`);
  }
  if (subresource !== undefined) return;
  const causes = validateObjectMetaUpdate(def.namespaced ? meta : { ...meta, namespace: undefined }, cur.metadata);
  if (causes.length > 0) throw invalid(def.group, def.kind, name, causes);
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
