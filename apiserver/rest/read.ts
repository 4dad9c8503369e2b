/**
 * Reads: get, list with label and field selectors, limit/continue pages
 * served as of the first page's revision, and Table output for kubectl.
 */
import type Koa from "koa";
import { badRequest, gone, notFound } from "../errors.js";
import type { KubeObject, Obj } from "../object.js";
import { groupVersion, type ResourceDef } from "../registry.js";
import {
  equalityLabelRequirements,
  fieldSelectorPaths,
  fieldValue,
  matchesFields,
  matchesLabels,
  parseFieldSelector,
  parseLabelSelector,
  type FieldSelector,
  type LabelSelector,
} from "../../lib/kube/selectors.js";
import { ExpiredError } from "../store.js";
import { coreColumns, tableVersion, toTable } from "../table.js";
import { unstorableText } from "./decode.js";
import { boolParam, int64Param, invalidOptions, resourceVersionMatchParam, resourceVersionParam, tooLargeResourceVersion } from "./params.js";
import { objectKey, queryOf, withTypeMeta, type Query, type ResourceRequest, type RestEnv } from "./request.js";

const continueExpired =
  "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.";

/** The label and field selectors of a request. */
export interface Selectors {
  labels?: LabelSelector;
  fields?: FieldSelector;
  /** How the kind exposes a selectable field (kube's ToSelectableFields). */
  fieldValue?: (obj: unknown, path: string) => string;
}

/**
 * Events' selectable fields as kube-apiserver builds them: `source` is
 * source.component, or reportingComponent (ReportingController) when that
 * is empty; the rest are their paths.
 */
function eventFieldValue(obj: unknown, path: string): string {
  if (path !== "source") return fieldValue(obj, path);
  return fieldValue(obj, "source.component") || fieldValue(obj, "reportingComponent");
}

/** The list metadata of a list or Table response. */
export interface ListMeta {
  resourceVersion?: string;
  continue?: string;
}

/** Where a continue token resumes: after this object, as of this revision. */
interface ContinueToken {
  rv: number;
  ns: string;
  n: string;
}

/** The largest page a limit asks for; larger limits (up to int64) mean the same. */
const maxLimit = 0x7ffffffe;

/**
 * The resourceVersion a read names, checked: 400 when malformed, 504
 * Timeout (ResourceVersionTooLarge) when newer than the newest revision,
 * as kube-apiserver answers once its wait for that revision times out.
 */
export async function readResourceVersion(env: RestEnv, q: Query): Promise<bigint | undefined> {
  const rv = resourceVersionParam(q);
  if (rv === undefined) return undefined;
  const { rv: current } = await env.store.revision();
  if (rv > BigInt(current)) throw tooLargeResourceVersion(rv, current);
  return rv;
}

/** GET of one object, as JSON or as a Table. 404 when it does not exist. */
export async function getObject(env: RestEnv, ctx: Koa.Context, req: ResourceRequest): Promise<void> {
  await readResourceVersion(env, queryOf(ctx));
  const name = req.name ?? "";
  const obj = await env.store.get(objectKey(req, name));
  if (!obj) throw notFound(req.def.group, req.def.plural, name);
  const tv = tableVersion(ctx.get("accept"));
  if (tv) {
    ctx.body = tableOf(req.def, [obj], { resourceVersion: obj.metadata.resourceVersion }, ctx, tv);
    return;
  }
  ctx.body = obj;
}

/** Parses the labelSelector and fieldSelector parameters; 400 when malformed or when a field is not selectable. */
export function requestSelectors(q: Query, def: ResourceDef): Selectors {
  const out: Selectors = {};
  try {
    if (q.labelSelector) out.labels = parseLabelSelector(q.labelSelector);
    if (q.fieldSelector) out.fields = parseFieldSelector(q.fieldSelector);
  } catch (err) {
    throw badRequest(err instanceof Error ? err.message : String(err));
  }
  if (def.group === "" && def.plural === "events") out.fieldValue = eventFieldValue;
  if (out.fields) {
    for (const p of fieldSelectorPaths(out.fields)) {
      if (!allowedFieldSelector(def, p)) {
        throw badRequest(`field label not supported: ${p}`);
      }
    }
  }
  return out;
}

/** Whether `o` passes the label and field selectors. */
export function matchesSelectors(sel: Selectors, o: KubeObject): boolean {
  if (sel.labels && !matchesLabels(sel.labels, o.metadata.labels)) return false;
  if (sel.fields && !matchesFields(sel.fields, o, sel.fieldValue)) return false;
  return true;
}

/**
 * LIST, as JSON or as a Table. With a limit, answers one page and a continue
 * token; a continue page is read as of the first page's revision (410 when
 * that revision was compacted).
 */
export async function listObjects(env: RestEnv, ctx: Koa.Context, req: ResourceRequest): Promise<void> {
  const q = queryOf(ctx);
  const sel = requestSelectors(q, req.def);
  if (q.sendInitialEvents !== undefined && q.sendInitialEvents !== "") {
    boolParam(q, "sendInitialEvents");
    throw invalidOptions("ListOptions", [{ reason: "FieldValueForbidden", field: "sendInitialEvents", message: "Forbidden: sendInitialEvents is only supported on watch requests" }]);
  }
  // Like kube, a limit of zero or below means no limit.
  const asked = int64Param(q, "limit") ?? 0n;
  const limit = asked <= 0n ? 0 : Number(asked > BigInt(maxLimit) ? BigInt(maxLimit) : asked);
  const match = resourceVersionMatchParam(q, false);
  const askedRv = await readResourceVersion(env, q);
  let after: { namespace: string; name: string } | undefined;
  let listRv: number | undefined;
  if (match === "Exact" && askedRv !== undefined) {
    // The list exactly as it was at that revision; 410 once it was compacted.
    listRv = Number(askedRv);
    const { compactedRv } = await env.store.revision();
    if (listRv < compactedRv) throw gone(`too old resource version: ${askedRv.toString()} (${String(compactedRv)})`);
  }
  if (q.continue) {
    ({ after, rv: listRv } = decodeContinue(q.continue));
    const { rv: current, compactedRv } = await env.store.revision();
    if (listRv > current) throw badContinue("incorrect encoded start resourceVersion");
    if (listRv < compactedRv) {
      throw gone(continueExpired);
    }
  }
  const labelEquals = sel.labels ? equalityLabelRequirements(sel.labels) : undefined;
  const items: KubeObject[] = [];
  let rv = 0;
  let more = false;
  // One row past the limit tells whether there is more; at least 500 rows a
  // query keep round trips few when selectors drop rows.
  const pageSize = limit > 0 ? Math.max(limit + 1, 500) : undefined;
  for (;;) {
    let page: { items: KubeObject[]; rv: number };
    try {
      page = await env.store.list(req.def.group, req.def.plural, {
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
      if (!matchesSelectors(sel, o)) continue;
      if (limit > 0 && items.length === limit) {
        more = true;
        break;
      }
      items.push(o);
    }
    if (more || pageSize === undefined || page.items.length < pageSize) break;
  }
  const listMeta: ListMeta & { resourceVersion: string } = { resourceVersion: String(listRv ?? rv) };
  if (more) {
    const last = items[items.length - 1];
    listMeta.continue = encodeContinue({ rv: listRv ?? rv, ns: last?.metadata.namespace ?? "", n: last?.metadata.name ?? "" });
  }
  const tv = tableVersion(ctx.get("accept"));
  if (tv) {
    ctx.body = tableOf(req.def, items, listMeta, ctx, tv);
    return;
  }
  ctx.body = {
    apiVersion: groupVersion(req.def),
    kind: req.def.listKind,
    metadata: listMeta,
    items: items.map((o) => withTypeMeta(req.def, o)),
  };
}

function encodeContinue(c: ContinueToken): string {
  return Buffer.from(JSON.stringify(c)).toString("base64url");
}

/** A 400 for a forged or corrupted continue token, in kube's words. */
function badContinue(why: string) {
  return badRequest(`continue key is not valid: ${why}`);
}

/** Decodes a continue token into where the page starts; 400 "continue key is not valid" unless it is one this server could have issued. */
function decodeContinue(token: string): { after: { namespace: string; name: string }; rv: number } {
  if (!/^[A-Za-z0-9_-]+={0,2}$/.test(token)) throw badContinue("not base64url");
  let c: unknown;
  try {
    c = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw badContinue("not a JSON document");
  }
  if (c === null || typeof c !== "object" || Array.isArray(c)) throw badContinue("not an object");
  const { rv, ns, n } = c as Partial<Record<keyof ContinueToken, unknown>>;
  if (typeof rv !== "number" || !Number.isSafeInteger(rv) || rv < 0) throw badContinue("incorrect encoded start resourceVersion");
  if (typeof ns !== "string" || typeof n !== "string" || unstorableText(ns) !== undefined || unstorableText(n) !== undefined) throw badContinue("incorrect encoded start key");
  return { after: { namespace: ns, name: n }, rv };
}

/**
 * `items` as a meta.k8s.io Table of `version`, with the kind's printer
 * columns (or kubectl's columns for core kinds) and the includeObject
 * parameter's object form. `noHeaders` leaves the column definitions out, as
 * watch events after the first do.
 */
export function tableOf(
  def: ResourceDef,
  items: KubeObject[],
  listMeta: ListMeta,
  ctx: Koa.Context,
  version: "v1" | "v1beta1",
  noHeaders = false,
): Obj {
  const q = queryOf(ctx);
  const include = q.includeObject === "None" || q.includeObject === "Object" ? q.includeObject : "Metadata";
  const columns = def.printerColumns.length > 0 ? def.printerColumns : (coreColumns[def.plural] ?? []);
  return toTable(
    items.map((o) => withTypeMeta(def, o)),
    columns,
    { includeObject: include, listMeta, now: new Date(), version, noHeaders },
  ) as unknown as Obj;
}

function allowedFieldSelector(def: ResourceDef, path: string): boolean {
  if (path === "metadata.name" || path === "metadata.namespace") return true;
  if (def.group === "" && def.plural === "secrets" && path === "type") return true;
  if (def.group === "" && def.plural === "namespaces" && path === "status.phase") return true;
  if (def.group === "" && def.plural === "events") return path.startsWith("involvedObject.") || path === "reason" || path === "type" || path === "source" || path === "reportingComponent";
  // Fabric kinds: the cluster a namespaced or cluster-scoped object belongs to is selectable.
  return def.group !== "" && path === "spec.cluster";
}
