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
  /** The path had the legacy `/watch/` prefix: a GET on it is a watch. */
  watchPath?: boolean;
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

/** The request's query parameters, each by its first value. */
export type Query = Record<string, string | undefined>;

/**
 * The query of `ctx`, each parameter by its first value as Go's
 * url.Values.Get and kube's parameter codec read it (a repeated parameter
 * must not turn into an array the handlers do not expect).
 */
export function queryOf(ctx: Koa.Context): Query {
  const out: Query = {};
  for (const [k, v] of Object.entries(ctx.query)) out[k] = Array.isArray(v) ? v[0] : v;
  return out;
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
