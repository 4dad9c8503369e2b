/**
 * The Koa application of the kube-compatible API server: authentication,
 * routing of discovery, OpenAPI and resource paths, metav1.Status errors and
 * request metrics.
 *
 * Every response carries an `Audit-Id` header, as kube-apiserver's do. An
 * error that is not a StatusError is a bug: it is logged with that id and
 * answered 500 InternalError naming the id (never its message), and counted
 * in apiserver_request_total with code 500 even when a watch stream had
 * already started.
 */
import { randomUUID, timingSafeEqual } from "node:crypto";
import Koa from "koa";
import client from "prom-client";
import type { Logger } from "../lib/log.js";
import type { ArtifactStore } from "../lib/state/artifacts.js";
import { ARTIFACT_PATH_PREFIX, handleArtifactRequest } from "./artifact-upload.js";
import { apiGroup, coreVersions, groupList, OpenApiDocs, resourceList, serverVersion } from "./discovery.js";
import { StatusError, status } from "./errors.js";
import { openAPIv2ProtoContentType } from "./openapi-v2-proto.js";
import type { Registry } from "./registry.js";
import { ResourceHandler, type ResourceRequest } from "./rest/handler.js";
import { boolParam } from "./rest/params.js";
import { queryOf } from "./rest/request.js";

/** What the app needs. */
export interface AppDeps {
  registry: Registry;
  handler: ResourceHandler;
  openapi: OpenApiDocs;
  adminToken: string;
  metrics: client.Registry;
  log: Logger;
  /** host:port clients use, for /api's serverAddressByClientCIDRs. */
  serverAddress: () => string;
  ready: () => boolean;
  /** The version store behind /artifacts/v1/ (artifact-upload.ts); absent: no such path. */
  artifacts?: ArtifactStore;
}

/** Metrics of the API server. */
export function apiMetrics(registry: client.Registry) {
  return {
    requests: new client.Counter({
      name: "apiserver_request_total",
      help: "API requests by verb, resource and HTTP code.",
      labelNames: ["verb", "resource", "code"] as const,
      registers: [registry],
    }),
    latency: new client.Histogram({
      name: "apiserver_request_duration_seconds",
      help: "API request latency by verb and resource (watches excluded).",
      labelNames: ["verb", "resource"] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    watches: new client.Gauge({
      name: "apiserver_registered_watchers",
      help: "Open watch streams.",
      registers: [registry],
    }),
  };
}

/** The kube verb of a request, as apiserver metrics name it. */
function verbOf(method: string, req: ResourceRequest | undefined, watch: boolean): string {
  if (watch) return "WATCH";
  switch (method) {
    case "GET":
      return req?.name === undefined ? "LIST" : "GET";
    case "POST":
      return "POST";
    case "PUT":
      return "PUT";
    case "PATCH":
      return "PATCH";
    case "DELETE":
      return req?.name === undefined ? "DELETECOLLECTION" : "DELETE";
    default:
      return method;
  }
}

/**
 * The request path percent-decoded, as Go's net/http hands kube-apiserver
 * `URL.Path` (so `%2F` separates segments and `%41` is `A`); 400 BadRequest
 * for a malformed escape, one that decodes to invalid UTF-8, or `%00`.
 */
export function decodedPath(rawPath: string): string {
  let path: string;
  try {
    path = decodeURIComponent(rawPath);
  } catch {
    throw new StatusError(400, "BadRequest", `invalid URL escape in path ${JSON.stringify(rawPath.slice(0, 256))}`);
  }
  // No name or namespace may hold U+0000 (PostgreSQL text cannot either).
  if (path.includes("\u0000")) throw new StatusError(400, "BadRequest", `path ${JSON.stringify(rawPath.slice(0, 256))} holds an escaped NUL character`);
  return path;
}

/** Parses /api/v1/... and /apis/<g>/<v>/... resource paths (already percent-decoded). */
export function parseResourcePath(registry: Registry, path: string): ResourceRequest | "discovery" | undefined {
  const parts = path.split("/").filter((p) => p !== "");
  let group: string;
  let version: string;
  let rest: string[];
  if (parts[0] === "api") {
    if (parts.length < 2) return "discovery";
    group = "";
    version = parts[1] ?? "";
    rest = parts.slice(2);
  } else if (parts[0] === "apis") {
    if (parts.length < 3) return "discovery";
    group = parts[1] ?? "";
    version = parts[2] ?? "";
    rest = parts.slice(3);
  } else return undefined;
  if (rest.length === 0) return "discovery";
  // Legacy watch prefix: /apis/g/v/watch/...
  const watchPath = rest[0] === "watch";
  if (watchPath) rest = rest.slice(1);
  let namespace: string | undefined;
  if (rest[0] === "namespaces" && rest.length >= 3) {
    const nsDef = registry.lookup(group, version, rest[2] ?? "");
    if (nsDef?.namespaced) {
      namespace = rest[1];
      rest = rest.slice(2);
    }
  }
  const def = registry.lookup(group, version, rest[0] ?? "");
  if (!def) return undefined;
  if (def.namespaced === false && namespace !== undefined) return undefined;
  return { def, namespace, name: rest[1], subresource: rest[2], ...(watchPath ? { watchPath } : {}) };
}

function tokenMatches(header: string, token: string): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header);
  if (!m || !m[1]) return false;
  const a = Buffer.from(m[1].trim());
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * The identity of the one credential the API server knows (the admin bearer
 * token, named so in the kubeconfig it writes). Set on `ctx.state.user` for
 * every authenticated request, recorded by what keeps who did something
 * (the version store's uploader).
 */
export const ADMIN_USER = "fabric-admin";

const publicPaths = new Set(["/healthz", "/readyz", "/livez", "/version"]);

/** Builds the Koa app. */
export function createApp(deps: AppDeps): Koa {
  const app = new Koa();
  app.on("error", (err: NodeJS.ErrnoException, ctx?: Koa.Context) => {
    // A client that goes away mid-stream (watch closed, kubectl interrupted) is normal.
    if (err.code === "ERR_STREAM_PREMATURE_CLOSE" || err.code === "ECONNRESET" || err.code === "EPIPE") return;
    // Node's HTTP parser refusing what a client sent on a connection that carries a request (a
    // broken chunked body, garbage pipelined after a request): Node answers 400 itself and the
    // fault is the client's, so it is no server warning.
    if (err.code?.startsWith("HPE_") === true) {
      deps.log.debug("http client sent a malformed request", { code: err.code, remote: ctx?.ip, err });
      return;
    }
    deps.log.warn("http stream error", { err });
  });
  const m = apiMetrics(deps.metrics);
  const { registry, handler, openapi } = deps;

  app.use(async (ctx, next) => {
    const started = process.hrtime.bigint();
    let parsed: ResourceRequest | undefined;
    let watch = false;
    let failedCode: number | undefined;
    const auditId = randomUUID();
    // Read while the socket is open: Koa keeps it, and the app's error handler names it after the socket is gone.
    const remote = ctx.ip;
    ctx.set("Audit-Id", auditId);
    try {
      const p = parseResourcePath(registry, decodedPath(ctx.path));
      if (p && p !== "discovery") parsed = p;
      ctx.state.resource = parsed;
      watch = ctx.method === "GET" && parsed !== undefined && (parsed.watchPath === true || boolParam(queryOf(ctx), "watch"));
      await next();
    } catch (err) {
      if (err instanceof StatusError) {
        if (!ctx.headerSent) {
          ctx.status = err.code;
          ctx.body = err.toStatus();
        }
      } else {
        failedCode = 500;
        deps.log.error("request failed", { err, auditId, method: ctx.method, path: ctx.path });
        // A stream that already started (a watch) has sent its own ERROR event.
        if (!ctx.headerSent) {
          ctx.status = 500;
          ctx.body = status(500, "InternalError", `Internal error occurred: the server could not handle the request (Audit-Id ${auditId})`);
        }
      }
    } finally {
      const resource = parsed ? parsed.def.plural + (parsed.subresource ? `/${parsed.subresource}` : "") : "";
      const verb = verbOf(ctx.method, parsed, watch);
      m.requests.inc({ verb, resource, code: String(failedCode ?? ctx.status) });
      if (!watch) m.latency.observe({ verb, resource }, Number(process.hrtime.bigint() - started) / 1e9);
      if (ctx.status >= 500 || process.env.FABRIC_LOG_REQUESTS === "1") {
        deps.log.info("request", { auditId, method: ctx.method, path: ctx.path, code: failedCode ?? ctx.status, remote });
      }
    }
  });

  app.use(async (ctx, next) => {
    if (publicPaths.has(ctx.path)) return next();
    if (!tokenMatches(ctx.get("authorization"), deps.adminToken)) throw new StatusError(401, "Unauthorized", "Unauthorized");
    ctx.state.user = ADMIN_USER;
    return next();
  });

  app.use(async (ctx) => {
    if (deps.artifacts !== undefined && ctx.path.startsWith(ARTIFACT_PATH_PREFIX)) return handleArtifactRequest(ctx, deps.artifacts, deps.log);
    const path = decodedPath(ctx.path).replace(/\/+$/, "") || "/";
    switch (path) {
      case "/healthz":
      case "/livez":
        ctx.type = "text/plain";
        ctx.body = "ok";
        return;
      case "/readyz":
        ctx.type = "text/plain";
        if (deps.ready()) ctx.body = "ok";
        else {
          ctx.status = 503;
          ctx.body = "not ready";
        }
        return;
      case "/version":
        ctx.body = serverVersion;
        return;
      case "/api":
        ctx.body = coreVersions(deps.serverAddress());
        return;
      case "/apis":
        ctx.body = groupList(registry);
        return;
      case "/openapi/v3":
        ctx.body = openapi.v3Index();
        return;
      case "/openapi/v2": {
        const accept = ctx.get("accept");
        if (accept.includes("protobuf") && !accept.includes("application/json")) {
          ctx.set("Content-Type", openAPIv2ProtoContentType);
          ctx.body = openapi.v2Protobuf();
        } else {
          ctx.type = "application/json";
          ctx.body = openapi.v2Json();
        }
        return;
      }
      case "/":
        ctx.body = { paths: ["/api", "/api/v1", "/apis", "/healthz", "/openapi/v2", "/openapi/v3", "/readyz", "/version"] };
        return;
    }
    if (path.startsWith("/openapi/v3/")) {
      const doc = openapi.v3Doc(path.slice("/openapi/v3/".length));
      if (!doc) throw new StatusError(404, "NotFound", "the server could not find the requested resource");
      ctx.type = "application/json";
      if (ctx.query.hash) ctx.set("Cache-Control", "public, immutable");
      ctx.body = doc;
      return;
    }
    const parts = path.split("/").filter((p) => p !== "");
    if (parts[0] === "api" && parts.length === 2 && parts[1] === "v1") {
      ctx.body = resourceList(registry, "", "v1");
      return;
    }
    if (parts[0] === "apis" && parts.length === 2) {
      const g = registry.groups().find((x) => x.name === parts[1]);
      if (!g) throw new StatusError(404, "NotFound", "the server could not find the requested resource");
      ctx.body = apiGroup(g.name, g.versions);
      return;
    }
    if (parts[0] === "apis" && parts.length === 3) {
      const g = registry.groups().find((x) => x.name === parts[1] && x.versions.includes(parts[2] ?? ""));
      if (!g) throw new StatusError(404, "NotFound", "the server could not find the requested resource");
      ctx.body = resourceList(registry, g.name, parts[2] ?? "");
      return;
    }
    const req = ctx.state.resource as ResourceRequest | undefined;
    if (!req) throw new StatusError(404, "NotFound", "the server could not find the requested resource");
    await handler.handle(ctx, req);
  });

  return app;
}
