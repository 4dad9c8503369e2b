/**
 * The version store's upload path on the API server, authenticated like
 * every kube request (the operator's bearer token):
 *
 *   PUT  /artifacts/v1/<sha256>   body = the artifact; Content-Length required
 *   HEAD /artifacts/v1/<sha256>   200 with Content-Length when stored, 404 otherwise
 *   GET  /artifacts/v1/<sha256>   the index row as JSON ({sha256, length, uploadedAt, uploadedBy})
 *
 * The body streams to disk while its sha256 is computed (lib/state/artifacts.ts);
 * a body whose digest or length does not match the name is refused (400),
 * one larger than the store's limit before a byte is read (413), a chunked
 * body without a length too (411); a refused or cut upload leaves nothing.
 * Storing an artifact that is already there answers 200 and changes nothing;
 * a new one answers 201. Errors are metav1.Status bodies like the rest of
 * the API. The index and the audit row record the uploader as the identity
 * the API server authenticated the request as (`ctx.state.user`; today the
 * one admin credential, ADMIN_USER in server.ts).
 */
import type Koa from "koa";
import type { Logger } from "../lib/log.js";
import { ArtifactRefused, SHA256_HEX, type ArtifactStore } from "../lib/state/artifacts.js";
import { StatusError } from "./errors.js";

export const ARTIFACT_PATH_PREFIX = "/artifacts/v1/";


function refusal(err: ArtifactRefused): StatusError {
  switch (err.code) {
    case "TooLarge":
      return new StatusError(413, "RequestEntityTooLarge", err.message);
    case "Aborted":
      return new StatusError(400, "BadRequest", err.message);
    default:
      return new StatusError(400, "BadRequest", `artifact refused (${err.code}): ${err.message}`);
  }
}

/** Handles a request under ARTIFACT_PATH_PREFIX. */
export async function handleArtifactRequest(ctx: Koa.Context, store: ArtifactStore, log: Logger): Promise<void> {
  const name = ctx.path.slice(ARTIFACT_PATH_PREFIX.length);
  if (!SHA256_HEX.test(name)) throw new StatusError(400, "BadRequest", "artifact path must be /artifacts/v1/<sha256 as 64 lowercase hex digits>");
  switch (ctx.method) {
    case "HEAD":
    case "GET": {
      const row = await store.get(name);
      if (row === undefined) throw new StatusError(404, "NotFound", `artifact ${name} is not stored`);
      ctx.body = { sha256: row.sha256, length: row.length, uploadedAt: row.uploadedAt.toISOString(), uploadedBy: row.uploadedBy };
      return;
    }
    case "PUT": {
      const header = ctx.get("content-length");
      if (header === "") throw new StatusError(411, "LengthRequired", "an artifact upload needs a Content-Length");
      if (!/^\d{1,16}$/.test(header)) throw new StatusError(400, "BadRequest", "Content-Length is not a length");
      const length = Number(header);
      if (length > store.maxLength) {
        ctx.set("Connection", "close");
        throw new StatusError(413, "RequestEntityTooLarge", `artifact of ${length} bytes is larger than the store's limit of ${store.maxLength}`);
      }
      try {
        const uploader: unknown = ctx.state.user;
        if (typeof uploader !== "string" || uploader === "") throw new StatusError(401, "Unauthorized", "Unauthorized");
        const out = await store.put(name, length, ctx.req, uploader);
        if (out.stored) log.info("artifact stored", { sha256: name, length });
        ctx.status = out.stored ? 201 : 200;
        ctx.body = { sha256: name, length: out.length, stored: out.stored, alreadyPresent: out.alreadyPresent };
      } catch (err) {
        if (err instanceof ArtifactRefused) {
          ctx.set("Connection", "close");
          throw refusal(err);
        }
        throw err;
      }
      return;
    }
    default:
      ctx.set("Allow", "GET, HEAD, PUT");
      throw new StatusError(405, "MethodNotAllowed", `${ctx.method} is not allowed on artifacts`);
  }
}
