/**
 * Generates fuzz requests: a verb (create, update, status, the four patch
 * formats, apply as YAML and JSON, delete, get, list, watch), a target (a
 * pool of names per kind in the run's namespaces, or a hostile one), a body
 * (a valid object, a schema-shaped random one, or garbage) broken by zero to
 * three mutation classes, then random query parameters and content types.
 *
 * The sequence of choices depends only on the seed. The one input taken from
 * responses is the last resourceVersion seen per object, so that updates can
 * succeed; with several requests in flight its value may differ between runs.
 */
import { loadCatalog, type SchemaNode } from "../../../lib/api/schemas.js";
import { fromJson, isFields, toJson, toYaml, type Fields, type Value } from "./json-text.js";
import { garbageBody, hostileNames, mutations, type MutationContext } from "./mutations.js";
import { encodeLenient, queryString, randomAccept, randomContentType, randomQuery } from "./query.js";
import type { Rng } from "./rng.js";
import { valueFor } from "./schema-values.js";
import type { FuzzResource } from "./seeds.js";

/** One generated request. */
export interface FuzzRequest {
  method: string;
  /** Path and query, exactly as sent. */
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
  /** The verb and mutation classes that produced it, for reports. */
  classes: string[];
  /** A watch: its response streams until the server's or the client's timeout. */
  stream: boolean;
}

/** The label every object the fuzzer creates carries (mutations may strip it). */
export const fuzzLabel = "fabric-fuzz";

type Verb = "create" | "update" | "status" | "merge-patch" | "json-patch" | "strategic-patch" | "apply-yaml" | "apply-json" | "delete" | "delete-collection" | "get" | "list" | "watch";

const verbs: [number, Verb][] = [
  [20, "create"],
  [9, "update"],
  [6, "status"],
  [10, "merge-patch"],
  [7, "json-patch"],
  [5, "strategic-patch"],
  [7, "apply-yaml"],
  [4, "apply-json"],
  [6, "delete"],
  [0.5, "delete-collection"],
  [5, "get"],
  [8, "list"],
  [0.6, "watch"],
];

/** Names each kind's pool holds: most requests address these, so writes meet existing objects. */
const POOL = 6;

/** Builds requests for one run. */
export class RequestGenerator {
  private readonly definitions: Record<string, SchemaNode>;
  private readonly versions = new Map<string, string>();

  constructor(
    private readonly rng: Rng,
    private readonly resources: FuzzResource[],
    /** Short tag carried by every name and label of the run. */
    readonly tag: string,
    /** The run's namespaces: the first holds most objects, the others are "another namespace". */
    readonly namespaces: readonly string[],
    private readonly token: string,
  ) {
    this.definitions = loadCatalog().definitions;
  }

  /** The names of a kind's pool. */
  poolNames(): string[] {
    return Array.from({ length: POOL }, (_, i) => `fz${this.tag}-${i}`);
  }

  /** Remembers the resourceVersion of an object a response returned, for later updates. */
  observe(path: string, body: unknown): void {
    if (!isFields(body) || !isFields(body.metadata)) return;
    const { name, resourceVersion } = body.metadata;
    if (typeof name !== "string" || typeof resourceVersion !== "string") return;
    const collection = path.split("?")[0]?.replace(/\/status$/, "").replace(new RegExp(`/${escapeRe(encodeLenient(name))}$`), "") ?? "";
    this.versions.set(`${collection}/${name}`, resourceVersion);
  }

  /** The next request. */
  next(): FuzzRequest {
    const rng = this.rng;
    const res = rng.pick(this.resources);
    let verb = rng.weighted(verbs);
    // A collection delete stays inside the run's namespaces: on a cluster-scoped
    // kind it would reach objects of the shared control plane (or the run's namespaces).
    if (verb === "delete-collection" && res.def.scope === "Cluster") verb = "list";
    const classes: string[] = [verb, res.def.kind];
    const ctx: MutationContext = { tag: this.tag, namespaces: this.namespaces, namespaced: res.def.scope === "Namespaced" };
    const collection = this.collectionPath(res, verb, classes);
    let name = rng.chance(0.9) ? rng.pick(this.poolNames()) : rng.pick(hostileNames(this.tag));
    if (!this.poolNames().includes(name)) classes.push("url-hostile-name");
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}`, accept: "application/json" };
    if (rng.chance(0.08)) {
      headers.accept = randomAccept(rng);
      classes.push("accept");
    }
    const params = rng.chance(0.3) ? randomQuery(rng, this.tag, classes) : [];
    let method = "GET";
    let path = `${collection}/${encodeLenient(name)}`;
    let body: Value | Buffer | undefined;
    let contentType = "application/json";
    let stream = false;

    switch (verb) {
      case "create": {
        const obj = this.object(res, name, ctx, classes);
        const bodyName = isFields(obj.metadata) ? obj.metadata.name : undefined;
        if (typeof bodyName === "string") name = bodyName;
        method = "POST";
        path = collection;
        body = obj;
        if (rng.chance(0.2)) contentType = "application/yaml";
        break;
      }
      case "update": {
        method = "PUT";
        body = this.object(res, name, ctx, classes);
        this.withVersion(body, `${collection}/${name}`);
        break;
      }
      case "status": {
        const status = res.def.status ?? (isFields(this.definitions[res.def.definitionName]?.properties) ? (this.definitions[res.def.definitionName]?.properties as SchemaNode).status : undefined);
        const statusValue = valueFor(rng, this.definitions, status ?? {});
        path = `${path}/status`;
        if (rng.chance(0.5)) {
          method = "PUT";
          const obj = this.object(res, name, ctx, classes);
          obj.status = statusValue;
          this.withVersion(obj, `${collection}/${name}`);
          body = obj;
        } else {
          method = "PATCH";
          contentType = "application/merge-patch+json";
          body = this.mutate({ status: statusValue }, ctx, classes);
        }
        break;
      }
      case "merge-patch":
      case "strategic-patch": {
        method = "PATCH";
        contentType = verb === "merge-patch" ? "application/merge-patch+json" : "application/strategic-merge-patch+json";
        body = this.patchDoc(res, ctx, classes, verb === "strategic-patch");
        break;
      }
      case "json-patch": {
        method = "PATCH";
        contentType = "application/json-patch+json";
        body = this.jsonPatch(res, ctx, classes);
        break;
      }
      case "apply-yaml":
      case "apply-json": {
        method = "PATCH";
        contentType = "application/apply-patch+yaml";
        const obj = this.object(res, name, ctx, classes);
        if (verb === "apply-yaml" && rng.chance(0.85)) body = Buffer.from(toYaml(obj));
        else body = obj;
        if (rng.chance(0.9)) params.push(["fieldManager", "fuzz"]);
        if (rng.chance(0.2)) params.push(["force", "true"]);
        break;
      }
      case "delete": {
        method = "DELETE";
        body = this.deleteBody(classes, `${collection}/${name}`);
        break;
      }
      case "delete-collection": {
        method = "DELETE";
        path = collection;
        const extra = rng.chance(0.3) ? `,${rng.pick(["a in (", "!!", "x", "b=c"])}` : "";
        params.unshift(["labelSelector", `${fuzzLabel}=${this.tag}${extra}`]);
        break;
      }
      case "get":
        break;
      case "list":
        path = collection;
        break;
      case "watch":
        path = rng.chance(0.8) ? collection : path;
        if (rng.chance(0.1)) path = path.replace(/^(\/apis?\/(?:[^/]+\/)?v[^/]*)\//, "$1/watch/");
        params.push(["watch", rng.pick(["true", "1", "True", "t"])], ["timeoutSeconds", rng.pick(["0", "1", "1", "1"])]);
        stream = true;
        break;
    }

    if (body !== undefined && rng.chance(0.05)) {
      const g = garbageBody(rng);
      body = g.bytes;
      classes.push(`garbage:${g.name}`);
    }
    if (body !== undefined && rng.chance(0.06)) {
      contentType = randomContentType(rng);
      classes.push("content-type");
    }
    if (rng.chance(0.01)) params.push(["watch", rng.pick(["True", "t", "maybe"])], ["timeoutSeconds", "1"]);
    if (params.some(([k]) => k === "watch")) stream = true;

    let bytes: Buffer | undefined;
    if (Buffer.isBuffer(body)) bytes = body;
    else if (body !== undefined) bytes = Buffer.from(contentType.includes("yaml") && !contentType.includes("apply") ? toYaml(body) : toJson(body), "utf8");
    if (bytes !== undefined) headers["content-type"] = contentType;
    return { method, path: path + queryString(params, rng, classes), headers, body: bytes, classes, stream };
  }

  /** The collection path; for cluster-scoped kinds sometimes under a namespace, for namespaced ones sometimes another or a hostile namespace. */
  private collectionPath(res: FuzzResource, verb: Verb, classes: string[]): string {
    const rng = this.rng;
    const { group, version, plural, scope } = res.def;
    const prefix = group === "" ? `/api/${version}` : `/apis/${group}/${version}`;
    const [home = "default", ...others] = this.namespaces;
    if (scope === "Cluster") {
      if (rng.chance(0.04)) {
        classes.push("cluster-scoped-in-namespace-url");
        return `${prefix}/namespaces/${home}/${plural}`;
      }
      return `${prefix}/${plural}`;
    }
    if ((verb === "list" || verb === "watch") && rng.chance(0.3)) return `${prefix}/${plural}`;
    let ns = home;
    if (rng.chance(0.1)) ns = rng.pick(others.length > 0 ? others : [home]);
    else if (rng.chance(0.04)) {
      ns = rng.pick([`fz${this.tag}-missing`, "Default", "..", "%2F", `fz${this.tag}-ü`, "a".repeat(64), "kube-system"]);
      classes.push("url-hostile-namespace");
    }
    return `${prefix}/namespaces/${encodeLenient(ns)}/${plural}`;
  }

  /** A full object of the kind: a valid seed or a schema-shaped random one, with the run's metadata, then mutated. */
  private object(res: FuzzResource, name: string, ctx: MutationContext, classes: string[]): Fields {
    const rng = this.rng;
    let obj = fromJson(rng.pick(res.seeds)) as Fields;
    if (rng.chance(0.3)) {
      classes.push("schema-random");
      const def = this.definitions[res.def.definitionName];
      const props = isFields(def?.properties as Value) ? (def?.properties as Record<string, unknown>) : {};
      for (const key of Object.keys(props)) {
        if (key === "metadata" || key === "apiVersion" || key === "kind") continue;
        if (rng.chance(0.6)) obj[key] = valueFor(rng, this.definitions, props[key]);
      }
    }
    const labels: Fields = { [fuzzLabel]: this.tag };
    if (rng.chance(0.3)) labels.tier = rng.pick(["gold", "silver"]);
    obj.metadata = { name, labels };
    if (ctx.namespaced && rng.chance(0.5)) obj.metadata.namespace = this.namespaces[0] ?? "default";
    if (rng.chance(0.1)) delete obj.apiVersion;
    if (rng.chance(0.03)) obj.kind = rng.pick(["ConfigMap", "NodeGroup", "Wrong", ""]);
    obj = this.mutate(obj, ctx, classes);
    return obj;
  }

  /** Applies zero to three mutation classes (none for about half of the requests). */
  private mutate(obj: Fields, ctx: MutationContext, classes: string[]): Fields {
    const rng = this.rng;
    if (rng.chance(0.45)) return obj;
    let out = obj;
    for (let i = rng.int(1, 3); i > 0; i--) {
      const name = rng.pick(Object.keys(mutations));
      const m = mutations[name];
      if (m === undefined) continue;
      out = m(rng, ctx, out);
      classes.push(name);
    }
    return out;
  }

  private withVersion(obj: Fields, key: string): void {
    const rv = this.versions.get(key);
    if (rv === undefined || this.rng.chance(0.15) || !isFields(obj.metadata)) return;
    if (obj.metadata.resourceVersion === undefined) obj.metadata.resourceVersion = rv;
  }

  /** A merge (or strategic merge) patch: part of a random object, labels, or directives. */
  private patchDoc(res: FuzzResource, ctx: MutationContext, classes: string[], strategic: boolean): Fields {
    const rng = this.rng;
    const full = this.object(res, "x", { ...ctx }, []);
    const doc: Fields = {};
    for (const [k, v] of Object.entries(full)) if (k !== "metadata" && rng.chance(0.5)) doc[k] = v;
    if (rng.chance(0.5)) doc.metadata = { labels: { tier: rng.pick(["gold", "silver", null]) } };
    if (strategic && rng.chance(0.5)) {
      const directive = rng.pick<Fields>([
        { $patch: "delete" },
        { $patch: "replace" },
        { $patch: "garbage" },
        { $retainKeys: ["a"] },
        { "$setElementOrder/finalizers": [{ a: 1 }] },
        { "$deleteFromPrimitiveList/finalizers": ["kubernetes"] },
        { metadata: { $patch: "delete" } },
        { metadata: { finalizers: { $patch: "replace" } } },
      ]);
      Object.assign(doc, directive);
      classes.push("strategic-directive");
    }
    return this.mutate(doc, ctx, classes);
  }

  /** An RFC 6902 patch: one to three operations on plausible and implausible paths. */
  private jsonPatch(res: FuzzResource, ctx: MutationContext, classes: string[]): Value[] {
    const rng = this.rng;
    const ops: Value[] = [];
    const paths = ["/spec", "/status", "/metadata/labels/tier", "/metadata/labels/a~1b", "/metadata/name", "/metadata/namespace", "/metadata/uid", "/metadata/resourceVersion", "/metadata", "", "/", "/spec/x/-", "/metadata/finalizers/-", "/metadata/finalizers/99999999999999999999", "/metadata/labels", "/data", "/kind", "/apiVersion", "/~2", "/metadata/__proto__/polluted"];
    for (let i = rng.int(1, 3); i > 0; i--) {
      const op: Fields = { op: rng.pick(["add", "remove", "replace", "move", "copy", "test", "bogus"]), path: rng.pick(paths) };
      if (rng.chance(0.8)) op.value = this.mutate({ v: rng.pick<Value>([{ a: 1 }, "v", 1, null, [], ctx.namespaces[1] ?? "x", { "fabric-fuzz": this.tag }]) }, ctx, classes).v ?? null;
      if (op.op === "move" || op.op === "copy") op.from = rng.pick(paths);
      ops.push(op);
    }
    if (rng.chance(0.05)) ops.push(rng.pick<Value>([null, "op", 1, { op: "add" }]));
    void res;
    return ops;
  }

  /** The body of a DELETE: none, null, empty, DeleteOptions (sometimes with preconditions), or wrong ones. */
  private deleteBody(classes: string[], key: string): Value | undefined {
    const rng = this.rng;
    const choice = rng.int(0, 6);
    classes.push(`delete-body:${["none", "null", "empty", "options", "preconditions", "wrong-type", "array"][choice] ?? "?"}`);
    switch (choice) {
      case 0:
        return undefined;
      case 1:
        return null;
      case 2:
        return {};
      case 3:
        return { apiVersion: "v1", kind: "DeleteOptions", propagationPolicy: rng.pick(["Foreground", "Background", "Orphan", "garbage"]), gracePeriodSeconds: rng.pick([0, -1, 1e20, 30]), dryRun: rng.pick<Value>([["All"], ["garbage"], "All"]) };
      case 4:
        return { kind: "DeleteOptions", preconditions: { uid: rng.pick(["6f1c2b1e-5b7e-4a57-9a59-0d1f3c1b2a44", "", "x"]), resourceVersion: this.versions.get(key) ?? rng.pick(["1", "abc", "-1", "99999999999999999999"]) } };
      case 5:
        return rng.pick<Value>(["str", 5, true, { preconditions: "x" }, { gracePeriodSeconds: "x" }, { propagationPolicy: 5 }]);
      default:
        return [];
    }
  }
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
