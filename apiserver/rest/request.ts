/**
 * What every part of the REST layer shares: the parsed request, the layer's
 * options and collaborators, and the small helpers that name objects.
 */
import type Koa from "koa";
import type { KubeObject } from "../object.js";
import { groupVersion, type ResourceDef } from "../registry.js";
import type { ObjectKey, Store } from "../store.js";
import type { WatchHub } from "../watch-hub.js";

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

/** The collaborators the read, write and watch handlers work with. */
export interface RestEnv {
  store: Store;
  hub: WatchHub;
  opts: RestOptions;
  /** Called with +1 when a watch opens and -1 when it closes. */
  onWatchChange: (delta: number) => void;
}

/** The request's query parameters; repeated parameters are not used by the REST layer. */
export type Query = Record<string, string | undefined>;

/** The query of `ctx`, typed as the REST layer reads it. */
export function queryOf(ctx: Koa.Context): Query {
  return ctx.query as Query;
}

/** The store key of object `name` of the requested resource (namespace "" for cluster-scoped kinds). */
export function objectKey(req: ResourceRequest, name: string): ObjectKey {
  return { group: req.def.group, plural: req.def.plural, namespace: req.def.namespaced ? (req.namespace ?? "") : "", name };
}

/** The resource name used in messages: plural for core kinds, plural.group otherwise. */
export function qualified(def: ResourceDef): string {
  return def.group === "" ? def.plural : `${def.plural}.${def.group}`;
}

/** Adds apiVersion and kind (stored objects always have them, but be defensive). */
export function withTypeMeta(def: ResourceDef, o: KubeObject): KubeObject {
  if (o.apiVersion === groupVersion(def) && o.kind === def.kind) return o;
  return { ...o, apiVersion: groupVersion(def), kind: def.kind };
}
