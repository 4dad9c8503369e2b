/**
 * Artifact downloads for agents: `GET /v1/artifacts/<sha256>` over mTLS
 * with the node's certificate (auth.ts). The version store (lib/state/
 * artifacts.ts) serves a file only when the node's assignments name a
 * verified release of its cluster listing that artifact (nodeMayFetch), or
 * the node holds the update-cache role and a verified release assigned in
 * its own cluster lists it (cacheMayFetch, to mirror it for its peers);
 * 404 when the store does not hold it, 403 when it does but the node may
 * not have it. Each download ends with one log line (node, digest, bytes
 * sent, whether complete). One `Range: bytes=` range is honoured (206 with
 * Content-Range), so a cut download resumes; an unsatisfiable one is 416.
 */
import { Router } from "@koa/router";
import type pg from "pg";
import { parseByteRange, type ByteRange } from "../lib/http-range.js";
import { SHA256_HEX, type ArtifactStore } from "../lib/state/artifacts.js";
import type { Logger } from "../lib/log.js";
import { nodeMayFetch } from "../lib/state/releases.js";
import { cacheMayFetch } from "../lib/state/update-cache.js";
import { authenticate, type AuthOptions } from "./auth.js";
import { AgentApiError } from "./errors.js";

export interface ArtifactRoutesDeps {
  pool: pg.Pool;
  auth: AuthOptions;
  store: ArtifactStore;
  log?: Logger;
}

/** Parses a single `bytes=` range against a length; undefined for no header, "unsatisfiable" for a range outside it. */
export function parseRange(header: string | undefined, length: number): ByteRange | "unsatisfiable" | undefined {
  const r = parseByteRange(header, length);
  if (r === "malformed") throw new AgentApiError(400, "InvalidRange", "Range must be one bytes=start-end, bytes=start- or bytes=-suffix");
  return r;
}

export function artifactRouter(d: ArtifactRoutesDeps): Router {
  const router = new Router();
  router.get("/v1/artifacts/:sha256", async (ctx) => {
    const n = await authenticate(ctx, d.auth);
    const sha256 = ctx.params.sha256 ?? "";
    if (!SHA256_HEX.test(sha256)) throw new AgentApiError(400, "InvalidRequest", "artifact name must be 64 lowercase hex digits");
    const row = await d.store.get(sha256);
    if (row === undefined) throw new AgentApiError(404, "NotFound", `artifact ${sha256} is not stored`);
    if (!(await nodeMayFetch(d.pool, n.node, sha256)) && !(await cacheMayFetch(d.pool, n.node, sha256))) {
      throw new AgentApiError(403, "NotAssigned", "no verified release assigned to this node (or, for an update cache, in its cluster) lists this artifact");
    }
    const range = parseRange(ctx.get("range") || undefined, row.length);
    if (range === "unsatisfiable") {
      ctx.set("Content-Range", `bytes */${row.length}`);
      throw new AgentApiError(416, "RangeNotSatisfiable", `range outside the artifact's ${row.length} bytes`);
    }
    const opened = await d.store.open(sha256, range);
    if (opened === undefined) throw new AgentApiError(404, "NotFound", `artifact ${sha256} is not stored`);
    ctx.set("Accept-Ranges", "bytes");
    ctx.set("ETag", `"${sha256}"`);
    ctx.type = "application/octet-stream";
    if (range !== undefined) {
      ctx.status = 206;
      ctx.set("Content-Range", `bytes ${range.start}-${range.end}/${row.length}`);
      ctx.length = range.end - range.start + 1;
    } else {
      ctx.status = 200;
      ctx.length = row.length;
    }
    let sent = 0;
    opened.stream.on("data", (c: Buffer) => (sent += c.length));
    opened.stream.once("close", () => d.log?.info("artifact served", { node: n.node, sha256, bytes: sent, complete: sent === ctx.length, ...(range !== undefined ? { from: range.start } : {}) }));
    ctx.body = opened.stream;
  });
  return router;
}
