/**
 * The REST semantics of kube-apiserver for one resource: create, get, list,
 * update, patch (merge, JSON, strategic for built-ins, apply), delete with
 * finalizers, the /status subresource, generation, managedFields and watch.
 */
import { randomBytes } from "node:crypto";
import type Koa from "koa";
import { PassThrough } from "node:stream";
import { parse as parseYaml } from "yaml";
import { apply as ssaApply, ApplyConflictError, trackUpdate } from "./fieldmanager/index.js";
import { applyDefaults, unknownFields, validate } from "./validation.js";
import {
  badRequest,
  conflict,
  gone,
  invalid,
  methodNotAllowed,
  notFound,
  StatusError,
  unsupportedMediaType,
  type StatusCause,
} from "./errors.js";
import { clone, isObj, jsonEqual, kubeTime, specPart, type KubeObject, type Obj } from "./object.js";
import { decodeKubeProtobuf, kubeProtobufMediaType, UnsupportedProtobufKind } from "./kube-protobuf.js";
import { jsonPatch, mergePatch, strategicMergePatch } from "./patch.js";
import { prune } from "./prune.js";
import { groupVersion, type ResourceDef } from "./registry.js";
import {
  equalityLabelRequirements,
  fieldSelectorPaths,
  matchesFields,
  matchesLabels,
  parseFieldSelector,
  parseLabelSelector,
  type FieldSelector,
  type LabelSelector,
} from "../lib/kube/selectors.js";
import { ExpiredError, type ObjectKey, type Store, type StoredEvent } from "./store.js";

const continueExpired =
  "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.";
import { coreColumns, tableVersion, toTable } from "./table.js";
import type { WatchHub } from "./watch-hub.js";

/** Parsed resource request path. */
export interface ResourceRequest {
  def: ResourceDef;
  namespace?: string;
  name?: string;
  subresource?: string;
}

/** Limits and timings of the REST layer. */
export interface RestOptions {
  maxBodyBytes: number;
  bookmarkIntervalMs: number;
  /** Default watch timeout when the client gives none. */
  watchTimeoutMs: number;
}

const nameRe = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Serves resource requests. */
export class ResourceHandler {
  constructor(
    private readonly store: Store,
    private readonly hub: WatchHub,
    private readonly opts: RestOptions,
    private readonly onWatchChange: (delta: number) => void = () => undefined,
  ) {}

  /** Dispatches one request. Sets ctx.status/body or throws StatusError. */
  async handle(ctx: Koa.Context, req: ResourceRequest): Promise<void> {
    const method = ctx.method;
    const q = ctx.query as Record<string, string | undefined>;
    if (req.subresource !== undefined && req.subresource !== "status") {
      throw new StatusError(404, "NotFound", `the server could not find the requested resource`);
    }
    if (req.subresource === "status" && !req.def.statusSubresource) {
      throw new StatusError(404, "NotFound", `the server could not find the requested resource`);
    }
    if (req.name === undefined) {
      if (method === "GET") {
        if (q.watch === "true" || q.watch === "1") return this.watch(ctx, req);
        return this.list(ctx, req);
      }
      if (method === "POST") return this.create(ctx, req);
      if (method === "DELETE") return this.deleteCollection(ctx, req);
      throw methodNotAllowed();
    }
    if (method === "GET") {
      if (q.watch === "true" || q.watch === "1") return this.watch(ctx, req);
      return this.get(ctx, req);
    }
    if (method === "PUT") return this.update(ctx, req);
    if (method === "PATCH") return this.patch(ctx, req);
    if (method === "DELETE") return this.delete(ctx, req);
    throw methodNotAllowed();
  }

  private key(req: ResourceRequest, name: string): ObjectKey {
    return { group: req.def.group, plural: req.def.plural, namespace: req.def.namespaced ? (req.namespace ?? "") : "", name };
  }

  // ---------------------------------------------------------------- reads

  private async get(ctx: Koa.Context, req: ResourceRequest): Promise<void> {
    const name = req.name ?? "";
    const obj = await this.store.get(this.key(req, name));
    if (!obj) throw notFound(req.def.group, req.def.plural, name);
    const tv = tableVersion(ctx.get("accept"));
    if (tv) {
      ctx.body = this.table(req.def, [obj], { resourceVersion: obj.metadata.resourceVersion }, ctx, tv);
      return;
    }
    ctx.body = obj;
  }

  private selectors(q: Record<string, string | undefined>, def: ResourceDef): { labels?: LabelSelector; fields?: FieldSelector } {
    const out: { labels?: LabelSelector; fields?: FieldSelector } = {};
    try {
      if (q.labelSelector) out.labels = parseLabelSelector(q.labelSelector);
      if (q.fieldSelector) out.fields = parseFieldSelector(q.fieldSelector);
    } catch (err) {
      throw badRequest(err instanceof Error ? err.message : String(err));
    }
    if (out.fields) {
      for (const p of fieldSelectorPaths(out.fields)) {
        if (!allowedFieldSelector(def, p)) {
          throw badRequest(`field label not supported: ${p}`);
        }
      }
    }
    return out;
  }

  private async list(ctx: Koa.Context, req: ResourceRequest): Promise<void> {
    const q = ctx.query as Record<string, string | undefined>;
    const sel = this.selectors(q, req.def);
    const limit = q.limit ? Number.parseInt(q.limit, 10) : 0;
    if (Number.isNaN(limit) || limit < 0) throw badRequest(`invalid limit: ${q.limit}`);
    let after: { namespace: string; name: string } | undefined;
    let listRv: number | undefined;
    if (q.continue) {
      try {
        const c = JSON.parse(Buffer.from(q.continue, "base64url").toString("utf8")) as { rv: number; ns: string; n: string };
        after = { namespace: c.ns, name: c.n };
        listRv = c.rv;
      } catch {
        throw badRequest("invalid continue token");
      }
      const { compactedRv } = await this.store.revision();
      if (listRv < compactedRv) {
        throw gone(continueExpired);
      }
    }
    const labelEquals = sel.labels ? equalityLabelRequirements(sel.labels) : undefined;
    const items: KubeObject[] = [];
    let rv = 0;
    let more = false;
    const pageSize = limit > 0 ? Math.max(limit + 1, 500) : undefined;
    for (;;) {
      let page: { items: KubeObject[]; rv: number };
      try {
        page = await this.store.list(req.def.group, req.def.plural, {
          namespace: req.def.namespaced ? req.namespace : undefined,
          labelEquals,
          after,
          limit: pageSize,
          // Continue pages show the list as it was at the first page's revision.
          asOf: listRv,
        });
      } catch (err) {
        if (err instanceof ExpiredError) throw gone(continueExpired);
        throw err;
      }
      rv = rv || page.rv;
      for (const o of page.items) {
        after = { namespace: o.metadata.namespace ?? "", name: o.metadata.name ?? "" };
        if (sel.labels && !matchesLabels(sel.labels, o.metadata.labels)) continue;
        if (sel.fields && !matchesFields(sel.fields, o)) continue;
        if (limit > 0 && items.length === limit) {
          more = true;
          break;
        }
        items.push(o);
      }
      if (more || pageSize === undefined || page.items.length < pageSize) break;
    }
    const listMeta: { resourceVersion: string; continue?: string } = { resourceVersion: String(listRv ?? rv) };
    if (more) {
      const last = items[items.length - 1];
      listMeta.continue = Buffer.from(
        JSON.stringify({ rv: listRv ?? rv, ns: last?.metadata.namespace ?? "", n: last?.metadata.name ?? "" }),
      ).toString("base64url");
    }
    const tv = tableVersion(ctx.get("accept"));
    if (tv) {
      ctx.body = this.table(req.def, items, listMeta, ctx, tv);
      return;
    }
    ctx.body = {
      apiVersion: groupVersion(req.def),
      kind: req.def.listKind,
      metadata: listMeta,
      items: items.map((o) => withTypeMeta(req.def, o)),
    };
  }

  private table(
    def: ResourceDef,
    items: KubeObject[],
    listMeta: { resourceVersion?: string; continue?: string },
    ctx: Koa.Context,
    version: "v1" | "v1beta1",
    noHeaders = false,
  ): Obj {
    const q = ctx.query as Record<string, string | undefined>;
    const include = q.includeObject === "None" || q.includeObject === "Object" ? q.includeObject : "Metadata";
    const columns = def.printerColumns.length > 0 ? def.printerColumns : (coreColumns[def.plural] ?? []);
    return toTable(
      items.map((o) => withTypeMeta(def, o)),
      columns,
      { includeObject: include, listMeta, now: new Date(), version, noHeaders },
    ) as unknown as Obj;
  }

  // --------------------------------------------------------------- writes

  private async create(ctx: Koa.Context, req: ResourceRequest): Promise<void> {
    if (req.subresource) throw methodNotAllowed();
    const q = ctx.query as Record<string, string | undefined>;
    const body = await readObject(ctx, this.opts.maxBodyBytes);
    const def = req.def;
    checkTypeMeta(def, body);
    const meta = isObj(body.metadata) ? body.metadata : (body.metadata = {});
    if (req.namespace !== undefined && meta.namespace !== undefined && meta.namespace !== req.namespace) {
      throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
    }
    if (def.namespaced) {
      if (!req.namespace) throw badRequest("a namespace is required for this resource");
      await this.requireNamespace(req.namespace);
      meta.namespace = req.namespace;
    } else delete meta.namespace;
    if (typeof meta.name !== "string" || meta.name === "") {
      if (typeof meta.generateName === "string" && meta.generateName !== "") {
        meta.name = meta.generateName + randomBytes(4).toString("hex").slice(0, 5);
      } else {
        throw invalid(def.group, def.kind, "", [{ reason: "FieldValueRequired", message: "name or generateName is required", field: "metadata.name" }]);
      }
    }
    const name = String(meta.name);
    const manager = fieldManager(ctx);
    const obj = this.prepareNew(ctx, def, body as KubeObject, undefined, manager, "main");
    obj.metadata.creationTimestamp = kubeTime();
    if (def.tracksGeneration) obj.metadata.generation = 1;
    else delete obj.metadata.generation;
    builtinDefaults(def, obj);
    delete obj.metadata.deletionTimestamp;
    delete obj.metadata.resourceVersion;
    if (def.statusSubresource && def.group !== "") delete obj.status;
    const withFields = trackUpdate(undefined, obj, { manager, now: kubeTime() }) as KubeObject;
    const res = await this.store.mutate(
      this.key(req, name),
      (cur) => {
        if (cur) throw new StatusError(409, "AlreadyExists", `${qualified(def)} "${name}" already exists`, { name, group: def.group, kind: def.plural });
        return { type: "create", object: withFields };
      },
      { dryRun: isDryRun(q), expectAbsent: true },
    );
    ctx.status = 201;
    ctx.body = withTypeMeta(def, res.object);
  }

  /**
   * Applies field validation, pruning, defaulting and schema validation to a
   * candidate object. Throws 400 (strict unknown fields) or 422 (invalid).
   */
  private prepareNew(ctx: Koa.Context, def: ResourceDef, body: KubeObject, _old: KubeObject | undefined, _manager: string, _part: string): KubeObject {
    const q = ctx.query as Record<string, string | undefined>;
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
        ctx.append("Warning", unknown.map((f) => `299 - "unknown field \\"${f}\\""`).join(", "));
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

  private async requireNamespace(ns: string): Promise<void> {
    const nsObj = await this.store.get({ group: "", plural: "namespaces", namespace: "", name: ns });
    if (!nsObj) throw new StatusError(404, "NotFound", `namespaces "${ns}" not found`, { name: ns, kind: "namespaces" });
    if (nsObj.metadata.deletionTimestamp) {
      throw new StatusError(403, "Forbidden", `unable to create new content in namespace ${ns} because it is being terminated`);
    }
  }

  /**
   * Turns a candidate full object into the next stored version of `cur`,
   * enforcing main-resource vs status semantics, generation, finalizers and
   * managedFields. Returns the mutation to perform.
   */
  private nextVersion(
    ctx: Koa.Context,
    req: ResourceRequest,
    cur: KubeObject,
    candidate: KubeObject,
    manager: string,
    opts: { managedFieldsDone?: boolean },
  ): { type: "update" | "delete" | "noop"; object: KubeObject } {
    const def = req.def;
    const status = req.subresource === "status";
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
        const added = (next.metadata.finalizers ?? []).filter((f) => !before.has(f));
        if (added.length > 0) {
          throw invalid(def.group, def.kind, cur.metadata.name ?? "", [
            { reason: "FieldValueForbidden", field: "metadata.finalizers", message: `Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers ${JSON.stringify(added)}` },
          ]);
        }
      }
    }
    next.apiVersion = groupVersion(def);
    next.kind = def.kind;
    next = this.prepareNew(ctx, def, next, cur, manager, status ? "status" : "main");
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

  private async update(ctx: Koa.Context, req: ResourceRequest): Promise<void> {
    const q = ctx.query as Record<string, string | undefined>;
    const body = (await readObject(ctx, this.opts.maxBodyBytes)) as KubeObject;
    const def = req.def;
    const name = req.name ?? "";
    checkTypeMeta(def, body);
    if (!isObj(body.metadata)) body.metadata = {};
    if (body.metadata.name !== undefined && body.metadata.name !== name) {
      throw badRequest(`the name of the object (${String(body.metadata.name)}) does not match the name on the URL (${name})`);
    }
    const manager = fieldManager(ctx);
    const res = await this.store.mutate(
      this.key(req, name),
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
        return this.nextVersion(ctx, req, cur, body, manager, {});
      },
      { dryRun: isDryRun(q) },
    );
    ctx.status = 200;
    ctx.body = withTypeMeta(def, res.object);
  }

  private async patch(ctx: Koa.Context, req: ResourceRequest): Promise<void> {
    const q = ctx.query as Record<string, string | undefined>;
    const def = req.def;
    const name = req.name ?? "";
    const type = (ctx.get("content-type").split(";")[0] ?? "").trim().toLowerCase();
    const raw = await readBody(ctx, this.opts.maxBodyBytes);
    const manager = fieldManager(ctx, type === "application/apply-patch+yaml");
    if (type === "application/apply-patch+yaml") return this.applyPatch(ctx, req, raw, manager);
    let patchDoc: unknown;
    try {
      patchDoc = JSON.parse(raw.toString("utf8"));
    } catch (err) {
      throw badRequest(`error decoding patch: ${err instanceof Error ? err.message : String(err)}`);
    }
    let fn: (cur: unknown, p: unknown) => unknown;
    if (type === "application/merge-patch+json") fn = mergePatch;
    else if (type === "application/json-patch+json") fn = jsonPatch;
    else if (type === "application/strategic-merge-patch+json") {
      if (def.group !== "" && def.group !== "coordination.k8s.io") throw unsupportedMediaType(type);
      fn = strategicMergePatch;
    } else throw unsupportedMediaType(type || "none");
    if (type !== "application/json-patch+json" && !isObj(patchDoc)) throw badRequest("a merge patch must be a JSON object");
    const res = await this.store.mutate(
      this.key(req, name),
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
        return this.nextVersion(ctx, req, cur, candidate, manager, {});
      },
      { dryRun: isDryRun(q) },
    );
    ctx.status = 200;
    ctx.body = withTypeMeta(def, res.object);
  }

  private async applyPatch(ctx: Koa.Context, req: ResourceRequest, raw: Buffer, manager: string): Promise<void> {
    const q = ctx.query as Record<string, string | undefined>;
    const def = req.def;
    const name = req.name ?? "";
    let applied: unknown;
    try {
      applied = parseYaml(raw.toString("utf8"));
    } catch (err) {
      throw badRequest(`error decoding YAML: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (!isObj(applied)) throw badRequest("the applied configuration must be an object");
    checkTypeMeta(def, applied);
    if (!isObj(applied.metadata)) applied.metadata = {};
    const meta = applied.metadata as Obj;
    if (meta.name !== undefined && meta.name !== name) throw badRequest(`the name of the object (${String(meta.name)}) does not match the name on the URL (${name})`);
    meta.name = name;
    if (def.namespaced) meta.namespace = req.namespace;
    if (!q.fieldManager) throw badRequest("PATCH requests with apply-patch+yaml must include fieldManager");
    const force = q.force === "true";
    const status = req.subresource === "status";
    if (def.namespaced && req.namespace) await this.requireNamespace(req.namespace);
    const res = await this.store.mutate(
      this.key(req, name),
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
          const obj = this.prepareNew(ctx, def, result, undefined, manager, "main");
          obj.apiVersion = groupVersion(def);
          obj.kind = def.kind;
          obj.metadata.creationTimestamp = now;
          if (def.tracksGeneration) obj.metadata.generation = 1;
          builtinDefaults(def, obj);
          delete obj.metadata.resourceVersion;
          return { type: "create", object: obj };
        }
        return this.nextVersion(ctx, req, cur, result, manager, { managedFieldsDone: true });
      },
      { dryRun: isDryRun(q) },
    );
    ctx.status = res.type === "create" ? 201 : 200;
    ctx.body = withTypeMeta(def, res.object);
  }

  private async delete(ctx: Koa.Context, req: ResourceRequest): Promise<void> {
    if (req.subresource) throw methodNotAllowed();
    const q = ctx.query as Record<string, string | undefined>;
    const def = req.def;
    const name = req.name ?? "";
    let pre: { uid?: string; resourceVersion?: string } = {};
    const raw = await readBody(ctx, this.opts.maxBodyBytes);
    if (raw.length > 0) {
      let opts: { preconditions?: { uid?: string; resourceVersion?: string } };
      if (mediaType(ctx) === kubeProtobufMediaType) opts = decodeProtobufBody(raw);
      else {
        try {
          opts = JSON.parse(raw.toString("utf8")) as typeof opts;
        } catch {
          throw badRequest("invalid DeleteOptions body");
        }
      }
      pre = opts.preconditions ?? {};
    }
    const res = await this.deleteOne(this.key(req, name), def, pre, isDryRun(q));
    ctx.status = 200;
    ctx.body = withTypeMeta(def, res.object);
  }

  /** Deletes one object, or marks it for deletion when it has finalizers. */
  async deleteOne(
    key: ObjectKey,
    def: ResourceDef,
    pre: { uid?: string; resourceVersion?: string } = {},
    dryRun = false,
  ): Promise<{ type: string; object: KubeObject }> {
    return this.store.mutate(
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

  private async deleteCollection(ctx: Koa.Context, req: ResourceRequest): Promise<void> {
    const q = ctx.query as Record<string, string | undefined>;
    const sel = this.selectors(q, req.def);
    const page = await this.store.list(req.def.group, req.def.plural, { namespace: req.def.namespaced ? req.namespace : undefined });
    const deleted: KubeObject[] = [];
    for (const o of page.items) {
      if (sel.labels && !matchesLabels(sel.labels, o.metadata.labels)) continue;
      if (sel.fields && !matchesFields(sel.fields, o)) continue;
      try {
        const r = await this.deleteOne(this.key(req, o.metadata.name ?? ""), req.def, {}, isDryRun(q));
        deleted.push(r.object);
      } catch (err) {
        if (!(err instanceof StatusError && err.code === 404)) throw err;
      }
    }
    ctx.body = { apiVersion: groupVersion(req.def), kind: req.def.listKind, metadata: {}, items: deleted };
  }

  // ---------------------------------------------------------------- watch

  private async watch(ctx: Koa.Context, req: ResourceRequest): Promise<void> {
    const q = ctx.query as Record<string, string | undefined>;
    const def = req.def;
    const sel = this.selectors(q, def);
    if (req.name !== undefined) {
      // Legacy /watch/.../name form: a field selector on the name.
      sel.fields = parseFieldSelector(`metadata.name=${req.name}${q.fieldSelector ? "," + q.fieldSelector : ""}`);
    }
    const namespace = def.namespaced ? req.namespace : undefined;
    const tv = tableVersion(ctx.get("accept"));
    const bookmarks = q.allowWatchBookmarks === "true";
    const timeoutMs = q.timeoutSeconds ? Number.parseInt(q.timeoutSeconds, 10) * 1000 : this.opts.watchTimeoutMs;
    const matches = (o: KubeObject): boolean =>
      (namespace === undefined || o.metadata.namespace === namespace) &&
      (!sel.labels || matchesLabels(sel.labels, o.metadata.labels)) &&
      (!sel.fields || matchesFields(sel.fields, o));

    const stream = new PassThrough();
    ctx.status = 200;
    ctx.type = "application/json";
    ctx.set("Cache-Control", "no-cache, private");
    ctx.set("Transfer-Encoding", "chunked");
    ctx.body = stream;
    // Send the headers now: clients treat the watch as established once they arrive.
    ctx.flushHeaders();

    let firstTable = true;
    const send = (type: string, obj: KubeObject) => {
      let payload: unknown = withTypeMeta(def, obj);
      if (tv && type !== "BOOKMARK" && type !== "ERROR") {
        payload = this.table(def, [obj], { resourceVersion: obj.metadata.resourceVersion }, ctx, tv, !firstTable);
        firstTable = false;
      }
      stream.write(JSON.stringify({ type, object: payload }) + "\n");
    };
    let lastSent = 0;
    let closed = false;
    const buffered: StoredEvent[] = [];
    let live = false;
    // With a label or field selector, an object can start or stop matching:
    // like kube-apiserver, turn that change into ADDED or DELETED (client
    // caches would otherwise keep an object that no longer matches). The
    // watch tracks which keys its client holds to tell.
    const filtered = sel.labels !== undefined || sel.fields !== undefined;
    let held: Set<string> | undefined = filtered ? new Set() : undefined;
    const keyOf = (o: KubeObject) => `${o.metadata.namespace ?? ""}/${o.metadata.name}`;
    const deliver = (ev: StoredEvent) => {
      if (ev.rv <= lastSent) return;
      lastSent = ev.rv;
      if (held === undefined) {
        if (matches(ev.object)) send(ev.type, ev.object);
        return;
      }
      const k = keyOf(ev.object);
      const had = held.has(k);
      if (ev.type === "DELETED") {
        if (had || matches(ev.object)) send("DELETED", ev.object);
        held.delete(k);
      } else if (matches(ev.object)) {
        held.add(k);
        send(had ? ev.type : "ADDED", ev.object);
      } else if (had) {
        held.delete(k);
        send("DELETED", ev.object);
      }
    };
    const unsubscribe = this.hub.subscribe(def.group, def.plural, (ev) => {
      if (closed) return;
      if (!live) buffered.push(ev);
      else deliver(ev);
    });
    this.onWatchChange(1);
    const close = () => {
      if (closed) return;
      closed = true;
      unsubscribe();
      clearInterval(bookmarkTimer);
      clearTimeout(timeoutTimer);
      this.onWatchChange(-1);
      stream.end();
    };
    ctx.req.on("close", close);
    stream.on("error", close);
    const timeoutTimer = setTimeout(close, timeoutMs);
    const bookmarkTimer = setInterval(() => {
      if (!live || !bookmarks) return;
      const rv = Math.max(lastSent, this.hub.lastRv);
      send("BOOKMARK", { apiVersion: groupVersion(def), kind: def.kind, metadata: { resourceVersion: String(rv) } });
    }, this.opts.bookmarkIntervalMs);

    try {
      const rvParam = q.resourceVersion;
      const start = this.hub.lastRv;
      if (rvParam === undefined || rvParam === "" || rvParam === "0") {
        const list = await this.store.list(def.group, def.plural, { namespace });
        for (const o of list.items) {
          if (!matches(o)) continue;
          held?.add(keyOf(o));
          send("ADDED", o);
        }
        lastSent = list.rv;
        // Catch up from the list revision through what the hub has seen.
        const upto = Math.max(start, this.hub.lastRv);
        if (upto > list.rv) for (const ev of await this.store.events(list.rv, upto, def)) deliver(ev);
      } else {
        const from = Number.parseInt(rvParam, 10);
        if (Number.isNaN(from) || from < 0) throw badRequest(`invalid resourceVersion: ${rvParam}`);
        const { compactedRv } = await this.store.revision();
        if (from < compactedRv) {
          const st = gone(`too old resource version: ${from} (${compactedRv})`).toStatus();
          stream.write(JSON.stringify({ type: "ERROR", object: st }) + "\n");
          close();
          return;
        }
        if (held !== undefined) held = await this.store.keysMatchingAt(def.group, def.plural, namespace, from, matches);
        lastSent = from;
        let cursor = from;
        const upto = Math.max(start, this.hub.lastRv);
        for (;;) {
          const evs = await this.store.events(cursor, upto, def, 5000);
          for (const ev of evs) deliver(ev);
          if (evs.length < 5000) break;
          cursor = evs[evs.length - 1]?.rv ?? upto;
        }
        if (lastSent < upto) lastSent = Math.max(lastSent, from);
      }
      for (const ev of buffered) deliver(ev);
      buffered.length = 0;
      live = true;
      if (bookmarks) {
        // An early bookmark tells informers the stream is established.
        send("BOOKMARK", { apiVersion: groupVersion(def), kind: def.kind, metadata: { resourceVersion: String(Math.max(lastSent, this.hub.lastRv)) } });
      }
    } catch (err) {
      const st = err instanceof StatusError ? err.toStatus() : new StatusError(500, "InternalError", "watch failed").toStatus();
      stream.write(JSON.stringify({ type: "ERROR", object: st }) + "\n");
      close();
    }
  }
}

/** Folds a Secret's write-only stringData into base64 data, as kube-apiserver does on every write. */
function secretStringData(obj: KubeObject): void {
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
function builtinDefaults(def: ResourceDef, obj: KubeObject): void {
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

function allowedFieldSelector(def: ResourceDef, path: string): boolean {
  if (path === "metadata.name" || path === "metadata.namespace") return true;
  if (def.group === "" && def.plural === "secrets" && path === "type") return true;
  if (def.group === "" && def.plural === "namespaces" && path === "status.phase") return true;
  if (def.group === "" && def.plural === "events") return path.startsWith("involvedObject.") || path === "reason" || path === "type" || path === "source" || path === "reportingComponent";
  // Fabric kinds: the cluster a namespaced or cluster-scoped object belongs to is selectable.
  return def.group !== "" && path === "spec.cluster";
}

function qualified(def: ResourceDef): string {
  return def.group === "" ? def.plural : `${def.plural}.${def.group}`;
}

/** Adds apiVersion and kind (stored objects always have them, but be defensive). */
export function withTypeMeta(def: ResourceDef, o: KubeObject): KubeObject {
  if (o.apiVersion === groupVersion(def) && o.kind === def.kind) return o;
  return { ...o, apiVersion: groupVersion(def), kind: def.kind };
}

function checkTypeMeta(def: ResourceDef, body: Obj): void {
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

function isDryRun(q: Record<string, string | undefined>): boolean {
  const v = q.dryRun;
  if (v === undefined || v === "") return false;
  if (v !== "All") throw badRequest(`unsupported dryRun value: ${v} (only All is supported)`);
  return true;
}

/** The field manager of a request: the query parameter, else the user agent's program name like kube-apiserver. */
function fieldManager(ctx: Koa.Context, required = false): string {
  const q = ctx.query as Record<string, string | undefined>;
  if (q.fieldManager) {
    if (q.fieldManager.length > 128) throw badRequest("fieldManager must be at most 128 characters");
    return q.fieldManager;
  }
  if (required) throw badRequest("PATCH requests with apply-patch+yaml must include fieldManager");
  const ua = ctx.get("user-agent");
  const prog = ua.split("/")[0]?.trim();
  return prog && prog.length > 0 ? prog.slice(0, 128) : "unknown";
}

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

/** Reads a JSON, YAML or Kubernetes protobuf object body. */
async function readObject(ctx: Koa.Context, limit: number): Promise<Obj> {
  const raw = await readBody(ctx, limit);
  const type = mediaType(ctx);
  if (type === kubeProtobufMediaType) return decodeProtobufBody(raw);
  let v: unknown;
  try {
    if (type === "application/yaml" || type === "application/apply-patch+yaml") v = parseYaml(raw.toString("utf8"));
    else v = JSON.parse(raw.toString("utf8"));
  } catch (err) {
    throw badRequest(`error decoding request body: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!isObj(v)) throw badRequest("the request body must be a JSON object");
  return v;
}

/** The request's Content-Type without parameters, lower-cased. */
function mediaType(ctx: Koa.Context): string {
  return (ctx.get("content-type").split(";")[0] ?? "").trim().toLowerCase();
}

/** Decodes a Kubernetes protobuf body (kubectl/client-go send built-in kinds so): 415 for kinds without a schema, 400 when malformed. */
function decodeProtobufBody(raw: Buffer): Obj {
  try {
    return decodeKubeProtobuf(raw);
  } catch (err) {
    if (err instanceof UnsupportedProtobufKind) throw unsupportedMediaType(`${kubeProtobufMediaType} for ${err.kind} ${err.apiVersion}`);
    throw badRequest(`error decoding protobuf request body: ${err instanceof Error ? err.message : String(err)}`);
  }
}
