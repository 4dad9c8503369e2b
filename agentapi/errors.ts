/**
 * Errors the agent API returns: a stable code, an HTTP status and a
 * message meant for the agent's operator. Anything else becomes a 500
 * whose message is not exposed.
 */
import type Koa from "koa";
import type { Logger } from "../lib/log.js";

/** An error whose code and message are sent to the client. */
export class AgentApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = "AgentApiError";
  }
}

/** The JSON body of every refusal: `{ "error": { "code", "message" } }`. */
export interface ErrorBody {
  error: { code: string; message: string };
}

/** Koa middleware turning errors into ErrorBody responses. */
export function errorMiddleware(log: Logger): Koa.Middleware {
  return async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      if (err instanceof AgentApiError) {
        ctx.status = err.status;
        if (err.retryAfterSeconds !== undefined) ctx.set("Retry-After", String(err.retryAfterSeconds));
        ctx.body = { error: { code: err.code, message: err.message } } satisfies ErrorBody;
        return;
      }
      log.error("agent api request failed", { path: ctx.path, method: ctx.method, err });
      ctx.status = 500;
      ctx.body = { error: { code: "InternalError", message: "internal error" } } satisfies ErrorBody;
    }
  };
}
