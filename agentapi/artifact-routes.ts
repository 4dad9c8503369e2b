/**
 * Artifact downloads for agents: `GET /v1/artifacts/<sha256>` over mTLS
 * with the node's certificate (auth.ts). The version store (lib/state/
 * artifacts.ts) serves a file only when the node's assignments name a
 * verified release of its cluster listing that artifact (nodeMayFetch);
 * 404 when the store does not hold it, 403 when it does but the node may
 * not have it. One `Range: bytes=` range is honoured (206 with
 * Content-Range), so a cut download resumes; an unsatisfiable one is 416.
 */
import { Router } from "@koa/router";
import type pg from "pg";
import { SHA256_HEX, type ArtifactStore } from "../lib/state/artifacts.js";
import { nodeMayFetch } from "../lib/state/releases.js";
import { authenticate, type AuthOptions } from "./auth.js";
import { AgentApiError } from "./errors.js";

export interface ArtifactRoutesDeps {
  pool: pg.Pool;
  auth: AuthOptions;
  store: ArtifactStore;
}

/** Parses a single `bytes=` range against a length; undefined for no header, "unsatisfiable" for a range outside it. */
export function parseRange(header: string | undefined, length: number): { start: number; end: number } | "unsatisfiable" | undefined {
  if (header === undefined || header === "") return undefined;
  const m = /^bytes=(\d{0,16})-(\d{0,16})$/.exec(header.trim());
  if (!m || (m[1] === "" && m[2] === "")) throw new AgentApiError(400, "InvalidRange", "Range must be one bytes=start-end, bytes=start- or bytes=-suffix");
  if (m[1] === "") {
    const suffix = Number(m[2]);
    if (suffix === 0 || length === 0) return "unsatisfiable";
    return { start: Math.max(0, length - suffix), end: length - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === "" ? length - 1 : Math.min(Number(m[2]), length - 1);
  if (start >= length || end < start) return "unsatisfiable";
  return { start, end };
}

export function artifactRouter(d: ArtifactRoutesDeps): Router {
  const router = new Router();
  router.get("/v1/artifacts/:sha256", async (ctx) => {
    const n = await authenticate(ctx, d.auth);
    const sha256 = ctx.params.sha256 ?? "";
    if (!SHA256_HEX.test(sha256)) throw new AgentApiError(400, "InvalidRequest", "artifact name must be 64 lowercase hex digits");
    const row = await d.store.get(sha256);
    if (row === undefined) throw new AgentApiError(404, "NotFound", `artifact ${sha256} is not stored`);
    if (!(await nodeMayFetch(d.pool, n.node, sha256))) {
      throw new AgentApiError(403, "NotAssigned", "no verified release assigned to this node lists this artifact");
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
    ctx.body = opened.stream;
  });
  return router;
}
