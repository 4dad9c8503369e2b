/**
 * Writes: create, update, patch (merge, JSON, strategic for built-ins,
 * server-side apply), delete with finalizers, delete of a collection, and
 * the /status subresource. Every write goes through one store mutation whose
 * callback sees the current object, so preconditions and the next version are
 * computed against what is stored.
 */
import type Koa from "koa";
import { apply as ssaApply, ApplyConflictError, trackUpdate } from "../fieldmanager/index.js";
import { badRequest, conflict, invalid, methodNotAllowed, notFound, StatusError, unsupportedMediaType } from "../errors.js";
import { generateNameFrom } from "../object-meta.js";
import { clone, isObj, jsonEqual, kubeTime, specPart, type KubeObject, type Obj } from "../object.js";
import { jsonPatch, mergePatch, strategicMergePatch } from "../patch.js";
import { groupVersion, type ResourceDef } from "../registry.js";
import type { ObjectKey, Store } from "../store.js";
import {
  builtinDefaults,
  checkMetaUpdate,
  checkTypeMeta,
  fieldManager,
  isDryRun,
  mediaType,
  prepareObject,
  readBody,
  readObject,
  secretStringData,
} from "./prepare.js";
import { decodeJson, decodeYaml } from "./decode.js";
import { deleteOptions } from "./delete-options.js";
import { boolParam } from "./params.js";
import { checkValidationRules } from "../cel-validation.js";
import { matchesSelectors, requestSelectors } from "./read.js";
import { objectKey, qualified, queryOf, withTypeMeta, type ResourceRequest, type RestEnv } from "./request.js";

/** The preconditions of a delete (metav1.Preconditions). */
export interface DeletePreconditions {
  uid?: string;
  resourceVersion?: string;
}

/** The mutation a write asks the store to perform. */
type NextVersion = { type: "update" | "delete" | "noop"; object: KubeObject };

/** POST: creates an object (201), naming it from generateName when it has no name. */
export async function createObject(env: RestEnv, ctx: Koa.Context, req: ResourceRequest): Promise<void> {
  if (req.subresource) throw methodNotAllowed();
  const q = queryOf(ctx);
  const body = await readObject(ctx, env.opts.maxBodyBytes);
  const def = req.def;
  checkTypeMeta(def, body);
  const meta = isObj(body.metadata) ? body.metadata : (body.metadata = {});
  if (req.namespace !== undefined && meta.namespace !== undefined && meta.namespace !== req.namespace) {
    throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
  }
  if (def.namespaced) {
    if (!req.namespace) throw badRequest("a namespace is required for this resource");
    await requireNamespace(env.store, req.namespace);
    meta.namespace = req.namespace;
  } else delete meta.namespace;
  if (typeof meta.name !== "string" || meta.name === "") {
    if (typeof meta.generateName === "string" && meta.generateName !== "") {
      meta.name = generateNameFrom(meta.generateName);
    } else {
      throw invalid(def.group, def.kind, "", [{ reason: "FieldValueRequired", message: "name or generateName is required", field: "metadata.name" }]);
    }
  }
  const name = String(meta.name);
  const manager = fieldManager(ctx);
  const obj = prepareObject(ctx, def, body as KubeObject);
  checkValidationRules(def, obj);
  obj.metadata.creationTimestamp = kubeTime();
  if (def.tracksGeneration) obj.metadata.generation = 1;
  else delete obj.metadata.generation;
  builtinDefaults(def, obj);
  delete obj.metadata.deletionTimestamp;
  delete obj.metadata.resourceVersion;
  if (def.statusSubresource && def.group !== "") delete obj.status;
  const withFields = trackUpdate(undefined, obj, { manager, now: kubeTime() }) as KubeObject;
  const res = await env.store.mutate(
    objectKey(req, name),
    (cur) => {
      if (cur) throw new StatusError(409, "AlreadyExists", `${qualified(def)} "${name}" already exists`, { name, group: def.group, kind: def.plural });
      return { type: "create", object: withFields };
    },
    { dryRun: isDryRun(q, ctx.method), expectAbsent: true },
  );
  ctx.status = 201;
  ctx.body = withTypeMeta(def, res.object);
}

/** PUT: replaces an object (or its status); 409 when the body's resourceVersion is stale. */
export async function updateObject(env: RestEnv, ctx: Koa.Context, req: ResourceRequest): Promise<void> {
  const q = queryOf(ctx);
  const body = (await readObject(ctx, env.opts.maxBodyBytes)) as KubeObject;
  const def = req.def;
  const name = req.name ?? "";
  checkTypeMeta(def, body);
  if (!isObj(body.metadata)) body.metadata = {};
  if (body.metadata.name !== undefined && body.metadata.name !== name) {
    throw badRequest(`the name of the object (${String(body.metadata.name)}) does not match the name on the URL (${name})`);
  }
  const manager = fieldManager(ctx);
  const res = await env.store.mutate(
    objectKey(req, name),
    (cur) => {
      if (!cur) throw notFound(def.group, def.plural, name);
      const rv = body.metadata.resourceVersion;
      if (rv === undefined || rv === "") {
        if (def.group !== "") {
          throw invalid(def.group, def.kind, name, [
            { reason: "FieldValueInvalid", field: "metadata.resourceVersion", message: "Invalid value: 0x0: must be specified for an update" },
          ]);
        }
      } else if (rv !== cur.metadata.resourceVersion) {
        throw conflict(def.group, def.plural, name, "the object has been modified; please apply your changes to the latest version and try again");
      }
      return nextVersion(ctx, req, cur, body, manager, {});
    },
    { dryRun: isDryRun(q, ctx.method) },
  );
  ctx.status = 200;
  ctx.body = withTypeMeta(def, res.object);
}

/** PATCH: merge, JSON or strategic merge patches; apply patches go to {@link applyObject}. */
export async function patchObject(env: RestEnv, ctx: Koa.Context, req: ResourceRequest): Promise<void> {
  const q = queryOf(ctx);
  const def = req.def;
  const name = req.name ?? "";
  const type = mediaType(ctx);
  const raw = await readBody(ctx, env.opts.maxBodyBytes);
  const manager = fieldManager(ctx, type === "application/apply-patch+yaml");
  if (type === "application/apply-patch+yaml") return applyObject(env, ctx, req, raw, manager);
  const patchDoc = decodeJson(raw, "patch");
  let fn: (cur: unknown, p: unknown) => unknown;
  if (type === "application/merge-patch+json") fn = mergePatch;
  else if (type === "application/json-patch+json") fn = jsonPatch;
  else if (type === "application/strategic-merge-patch+json") {
    if (def.group !== "" && def.group !== "coordination.k8s.io") throw unsupportedMediaType(type);
    fn = strategicMergePatch;
  } else throw unsupportedMediaType(type || "none");
  if (type !== "application/json-patch+json" && !isObj(patchDoc)) throw badRequest("a merge patch must be a JSON object");
  const res = await env.store.mutate(
    objectKey(req, name),
    (cur) => {
      if (!cur) throw notFound(def.group, def.plural, name);
      const patched = fn(withTypeMeta(def, cur), patchDoc);
      if (!isObj(patched) || !isObj(patched.metadata)) throw badRequest("the patch removed the object's metadata");
      const candidate = patched as KubeObject;
      const rv = candidate.metadata.resourceVersion;
      if (rv !== undefined && rv !== cur.metadata.resourceVersion) {
        throw conflict(def.group, def.plural, name, "the object has been modified; please apply your changes to the latest version and try again");
      }
      if (candidate.metadata.uid !== undefined && candidate.metadata.uid !== cur.metadata.uid) {
        throw conflict(def.group, def.plural, name, "Precondition failed: UID in precondition does not match the UID in record");
      }
      return nextVersion(ctx, req, cur, candidate, manager, {});
    },
    { dryRun: isDryRun(q, ctx.method) },
  );
  ctx.status = 200;
  ctx.body = withTypeMeta(def, res.object);
}

/** Server-side apply: creates the object (201) when absent, else merges the manager's fields (409 on conflicts unless forced). */
async function applyObject(env: RestEnv, ctx: Koa.Context, req: ResourceRequest, raw: Buffer, manager: string): Promise<void> {
  const q = queryOf(ctx);
  const def = req.def;
  const name = req.name ?? "";
  const applied = decodeYaml(raw, "apply patch");
  if (!isObj(applied)) throw badRequest("the applied configuration must be an object");
  checkTypeMeta(def, applied);
  if (!isObj(applied.metadata)) applied.metadata = {};
  const meta = applied.metadata as Obj;
  if (meta.name !== undefined && meta.name !== name) throw badRequest(`the name of the object (${String(meta.name)}) does not match the name on the URL (${name})`);
  meta.name = name;
  if (def.namespaced) meta.namespace = req.namespace;
  if (!q.fieldManager) throw badRequest("PATCH requests with apply-patch+yaml must include fieldManager");
  const force = boolParam(q, "force");
  const status = req.subresource === "status";
  if (def.namespaced && req.namespace) await requireNamespace(env.store, req.namespace);
  const res = await env.store.mutate(
    objectKey(req, name),
    (cur) => {
      const now = kubeTime();
      let result: KubeObject;
      try {
        result = ssaApply(cur ? withTypeMeta(def, cur) : undefined, applied as Obj, {
          manager,
          force,
          now,
          subresource: status ? "status" : undefined,
          ignorePaths: status ? undefined : def.statusSubresource ? [["status"]] : [],
        }) as KubeObject;
      } catch (err) {
        if (err instanceof ApplyConflictError) {
          throw new StatusError(409, "Conflict", err.message, {
            name,
            group: def.group,
            kind: def.plural,
            causes: err.conflicts.map((c) => ({ reason: "FieldManagerConflict", message: c.message, field: c.field })),
          });
        }
        throw err;
      }
      if (!cur) {
        if (status) throw notFound(def.group, def.plural, name);
        const obj = prepareObject(ctx, def, result);
        checkValidationRules(def, obj);
        obj.apiVersion = groupVersion(def);
        obj.kind = def.kind;
        obj.metadata.creationTimestamp = now;
        if (def.tracksGeneration) obj.metadata.generation = 1;
        builtinDefaults(def, obj);
        delete obj.metadata.resourceVersion;
        return { type: "create", object: obj };
      }
      return nextVersion(ctx, req, cur, result, manager, { managedFieldsDone: true });
    },
    { dryRun: isDryRun(q, ctx.method) },
  );
  ctx.status = res.type === "create" ? 201 : 200;
  ctx.body = withTypeMeta(def, res.object);
}

/**
 * Turns a candidate full object into the next stored version of `cur`,
 * enforcing main-resource vs status semantics, generation, finalizers and
 * managedFields. Returns the mutation to perform.
 */
function nextVersion(
  ctx: Koa.Context,
  req: ResourceRequest,
  cur: KubeObject,
  candidate: KubeObject,
  manager: string,
  opts: { managedFieldsDone?: boolean },
): NextVersion {
  const def = req.def;
  const status = req.subresource === "status";
  checkMetaUpdate(def, cur, candidate, req.subresource);
  let next: KubeObject;
  if (status) {
    next = clone(cur);
    if (candidate.status === undefined) delete next.status;
    else next.status = candidate.status;
    if (opts.managedFieldsDone && candidate.metadata.managedFields) next.metadata.managedFields = candidate.metadata.managedFields;
  } else {
    next = clone(candidate);
    const keep = ["uid", "creationTimestamp", "generation", "deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion"] as const;
    const nm = next.metadata as Record<string, unknown>;
    for (const k of keep) {
      if (cur.metadata[k] === undefined) delete nm[k];
      else nm[k] = cur.metadata[k];
    }
    next.metadata.name = cur.metadata.name;
    if (cur.metadata.namespace !== undefined) next.metadata.namespace = cur.metadata.namespace;
    if (def.statusSubresource) {
      if (cur.status === undefined) delete next.status;
      else next.status = clone(cur.status);
    }
    if (cur.metadata.deletionTimestamp) {
      const before = new Set(cur.metadata.finalizers ?? []);
      // A non-list is refused by prepareObject's ObjectMeta validation below.
      const finalizers: unknown = next.metadata.finalizers;
      const added = (Array.isArray(finalizers) ? finalizers : []).filter((f) => !before.has(f));
      if (added.length > 0) {
        throw invalid(def.group, def.kind, cur.metadata.name ?? "", [
          { reason: "FieldValueForbidden", field: "metadata.finalizers", message: `Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers ${JSON.stringify(added)}` },
        ]);
      }
    }
  }
  next.apiVersion = groupVersion(def);
  next.kind = def.kind;
  next = prepareObject(ctx, def, next, cur);
  checkValidationRules(def, next, cur);
  if (def.group === "" && def.plural === "secrets") secretStringData(next);
  if (!status && def.tracksGeneration && !jsonEqual(specPart(cur), specPart(next))) {
    next.metadata.generation = (cur.metadata.generation ?? 1) + 1;
  }
  const strip = (o: KubeObject) => {
    const c = clone(o);
    delete c.metadata.managedFields;
    delete c.metadata.resourceVersion;
    return c;
  };
  if (jsonEqual(strip(withTypeMeta(def, cur)), strip(next))) return { type: "noop", object: withTypeMeta(def, cur) };
  if (!opts.managedFieldsDone) {
    next = trackUpdate(cur, next, { manager, now: kubeTime(), subresource: status ? "status" : undefined }) as KubeObject;
  }
  if (next.metadata.deletionTimestamp && (next.metadata.finalizers ?? []).length === 0) {
    return { type: "delete", object: next };
  }
  return { type: "update", object: next };
}

/** 404 when namespace `ns` does not exist, 403 when it is being terminated. */
async function requireNamespace(store: Store, ns: string): Promise<void> {
  const nsObj = await store.get({ group: "", plural: "namespaces", namespace: "", name: ns });
  if (!nsObj) throw new StatusError(404, "NotFound", `namespaces "${ns}" not found`, { name: ns, kind: "namespaces" });
  if (nsObj.metadata.deletionTimestamp) {
    throw new StatusError(403, "Forbidden", `unable to create new content in namespace ${ns} because it is being terminated`);
  }
}

/** DELETE of one object, honouring the DeleteOptions body's preconditions (JSON or protobuf). */
export async function deleteObject(env: RestEnv, ctx: Koa.Context, req: ResourceRequest): Promise<void> {
  if (req.subresource) throw methodNotAllowed();
  const q = queryOf(ctx);
  const def = req.def;
  const name = req.name ?? "";
  const opts = await deleteOptions(ctx, env.opts.maxBodyBytes);
  const res = await deleteOne(env.store, objectKey(req, name), def, opts.preconditions, opts.dryRun);
  ctx.status = 200;
  ctx.body = withTypeMeta(def, res.object);
}

/**
 * Deletes one object, or marks it for deletion (deletionTimestamp) when it
 * has finalizers; a namespace is always marked and set Terminating first.
 * 404 when absent, 409 when a precondition fails.
 */
export async function deleteOne(
  store: Store,
  key: ObjectKey,
  def: ResourceDef,
  pre: DeletePreconditions = {},
  dryRun = false,
): Promise<{ type: string; object: KubeObject }> {
  return store.mutate(
    key,
    (cur) => {
      if (!cur) throw notFound(def.group, def.plural, key.name);
      if (pre.uid && pre.uid !== cur.metadata.uid) {
        throw conflict(def.group, def.plural, key.name, `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${cur.metadata.uid ?? ""}`);
      }
      if (pre.resourceVersion && pre.resourceVersion !== cur.metadata.resourceVersion) {
        throw conflict(def.group, def.plural, key.name, "the object has been modified; please apply your changes to the latest version and try again");
      }
      const pendingNs = def.group === "" && def.plural === "namespaces";
      if ((cur.metadata.finalizers ?? []).length > 0 || pendingNs) {
        if (cur.metadata.deletionTimestamp) return { type: "noop", object: withTypeMeta(def, cur) };
        const next = withTypeMeta(def, clone(cur));
        next.metadata.deletionTimestamp = kubeTime();
        next.metadata.deletionGracePeriodSeconds = 0;
        if (def.tracksGeneration) next.metadata.generation = (cur.metadata.generation ?? 1) + 1;
        if (pendingNs) next.status = { ...(isObj(next.status) ? next.status : {}), phase: "Terminating" };
        return { type: "update", object: next };
      }
      return { type: "delete", object: withTypeMeta(def, cur) };
    },
    { dryRun },
  );
}

/** DELETE of a collection: deletes every selected object, skipping those already gone. */
export async function deleteCollection(env: RestEnv, ctx: Koa.Context, req: ResourceRequest): Promise<void> {
  const q = queryOf(ctx);
  const sel = requestSelectors(q, req.def);
  const opts = await deleteOptions(ctx, env.opts.maxBodyBytes);
  const page = await env.store.list(req.def.group, req.def.plural, { namespace: req.def.namespaced ? req.namespace : undefined });
  const deleted: KubeObject[] = [];
  for (const o of page.items) {
    if (!matchesSelectors(sel, o)) continue;
    try {
      const r = await deleteOne(env.store, objectKey(req, o.metadata.name ?? ""), req.def, opts.preconditions, opts.dryRun);
      deleted.push(r.object);
    } catch (err) {
      if (!(err instanceof StatusError && err.code === 404)) throw err;
    }
  }
  ctx.body = { apiVersion: groupVersion(req.def), kind: req.def.listKind, metadata: {}, items: deleted };
}
