/**
 * The REST semantics of kube-apiserver for one resource: create, get, list,
 * update, patch (merge, JSON, strategic for built-ins, apply), delete with
 * finalizers, the /status subresource, generation, managedFields and watch.
 *
 * This file only dispatches a request to its verb; `read.ts`, `write.ts` and
 * `watch.ts` serve them, `prepare.ts` turns bodies into candidate objects.
 */
import type Koa from "koa";
import { methodNotAllowed, StatusError } from "../errors.js";
import type { KubeObject } from "../object.js";
import type { ResourceDef } from "../registry.js";
import type { ObjectKey, Store } from "../store.js";
import type { WatchHub } from "../watch-hub.js";
import { boolParam } from "./params.js";
import { getObject, listObjects } from "./read.js";
import { queryOf, type ResourceRequest, type RestEnv, type RestOptions } from "./request.js";
import { watchObjects } from "./watch.js";
import { createObject, deleteCollection, deleteObject, deleteOne, patchObject, updateObject, type DeletePreconditions } from "./write.js";

export type { ResourceRequest, RestOptions } from "./request.js";

/** Serves resource requests. */
export class ResourceHandler {
  private readonly env: RestEnv;

  constructor(store: Store, hub: WatchHub, opts: RestOptions, onWatchChange: (delta: number) => void = () => undefined) {
    this.env = { store, hub, opts, onWatchChange };
  }

  /** Dispatches one request. Sets ctx.status/body or throws StatusError. */
  async handle(ctx: Koa.Context, req: ResourceRequest): Promise<void> {
    const env = this.env;
    const method = ctx.method;
    const q = queryOf(ctx);
    if (req.subresource !== undefined && req.subresource !== "status") {
      throw new StatusError(404, "NotFound", `the server could not find the requested resource`);
    }
    if (req.subresource === "status" && !req.def.statusSubresource) {
      throw new StatusError(404, "NotFound", `the server could not find the requested resource`);
    }
    // Accepted on every request, as kube does; JSON is always compact here.
    boolParam(q, "pretty");
    if (req.watchPath === true && method !== "GET") throw methodNotAllowed();
    const watch = method === "GET" && (req.watchPath === true || boolParam(q, "watch"));
    if (req.name === undefined) {
      if (method === "GET") return watch ? watchObjects(env, ctx, req) : listObjects(env, ctx, req);
      if (method === "POST") return createObject(env, ctx, req);
      if (method === "DELETE") return deleteCollection(env, ctx, req);
      throw methodNotAllowed();
    }
    if (method === "GET") return watch ? watchObjects(env, ctx, req) : getObject(env, ctx, req);
    if (method === "PUT") return updateObject(env, ctx, req);
    if (method === "PATCH") return patchObject(env, ctx, req);
    if (method === "DELETE") return deleteObject(env, ctx, req);
    throw methodNotAllowed();
  }

  /** Deletes one object, or marks it for deletion when it has finalizers. */
  async deleteOne(
    key: ObjectKey,
    def: ResourceDef,
    pre: DeletePreconditions = {},
    dryRun = false,
  ): Promise<{ type: string; object: KubeObject }> {
    return deleteOne(this.env.store, key, def, pre, dryRun);
  }
}
