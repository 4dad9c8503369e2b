/**
 * The agent's one HTTPS client for the agent API: enrollment and renewal
 * (agent/enroll/) and the sync loops' snapshot long poll, heartbeats and
 * status reports (agent/sync/transport.ts) all go through it, so TLS,
 * timeouts, size limits and error classification are decided once.
 *
 * - TLS: the server is verified against a pinned CA (the agent API CA the
 *   agent trusts after checking --ca-hash); only fetching that CA may skip
 *   verification. With a client certificate and key it authenticates over
 *   mTLS. Connections are kept alive.
 * - Limits: every request has an idle timeout and may take an abort signal.
 *   A 2xx body larger than its limit is cut off (the socket is destroyed, so
 *   a hostile or broken server cannot make the agent buffer an unbounded
 *   body); of an error body only the first 64 KiB are kept.
 * - Errors, which callers classify by class:
 *   - AgentApiRequestError: the server answered with a non-2xx status (an
 *     HTTP refusal; `code` and `message` from the JSON problem body when
 *     there is one, `Http<status>` and the text otherwise).
 *   - everything else is a failure to get an answer: RequestTimeoutError,
 *     ResponseTooLargeError, InvalidJsonResponseError, an abort, or Node's
 *     own network and TLS errors (ECONNREFUSED, ECONNRESET, ...), passed
 *     through unchanged. Loops retry these as transport failures.
 */
import https from "node:https";
import type { KeyObject } from "node:crypto";
import type { IncomingHttpHeaders, IncomingMessage } from "node:http";

/** TLS settings of a client. */
export interface ClientTls {
  /** PEM of the trusted server CA; required unless insecure. */
  ca?: string;
  /** Skip server verification: only for fetching the CA that --ca-hash then checks. */
  insecure?: boolean;
  /** Client certificate and key for mTLS. */
  cert?: string;
  key?: string | KeyObject;
  /** TLS server name (SNI and certificate check) when it differs from the URL's host. */
  servername?: string;
}

/** Connection settings of a client. */
export interface ClientOptions {
  /** Concurrent connections to the server (default 4). */
  maxSockets?: number;
}

/** How a 2xx body is decoded. */
export type Decode =
  /** JSON when the Content-Type says so, the text otherwise (e.g. the PEM of /v1/enroll/ca). */
  | "auto"
  /** Always JSON, whatever the Content-Type. */
  | "json";

/** Per-request settings. */
export interface RequestOptions {
  /** Idle timeout of the socket (default 30 s). */
  timeoutMs?: number;
  /** Names the request in the timeout error: `<what> timed out` (default "agent api request"). */
  what?: string;
  signal?: AbortSignal;
  /** Largest accepted 2xx body (default DEFAULT_MAX_RESPONSE_BYTES). */
  maxBytes?: number;
}

/** Options of request(). */
export interface JsonRequestOptions extends RequestOptions {
  /** Default "auto". */
  decode?: Decode;
}

/** A decoded 2xx answer. */
export interface ApiResponse<T> {
  status: number;
  body: T;
}

/** A 2xx answer as bytes. */
export interface RawResponse {
  status: number;
  headers: Readonly<Record<string, string | string[] | undefined>>;
  body: Buffer;
}

/**
 * Default limit of a 2xx body: above the agent's snapshot limit
 * (DEFAULT_MAX_SNAPSHOT_BYTES, 4 MiB), so the generic client never refuses
 * what the snapshot path, with its own limit, accepts.
 */
export const DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024;

/** Bytes of an error body kept for its message; the rest is read and dropped. */
const ERROR_BODY_BYTES = 64 * 1024;

/** A refusal or failure from the agent API: it answered with a non-2xx status. */
export class AgentApiRequestError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = "AgentApiRequestError";
  }
}

/** No byte arrived within the request's idle timeout. */
export class RequestTimeoutError extends Error {
  constructor(
    what: string,
    readonly timeoutMs: number,
  ) {
    super(`${what} timed out`);
    this.name = "RequestTimeoutError";
  }
}

/** A 2xx body exceeded its limit; reading stopped after `received` bytes. */
export class ResponseTooLargeError extends Error {
  constructor(
    readonly received: number,
    readonly limit: number,
  ) {
    super(`agent api answer of ${received}+ bytes exceeds the limit of ${limit}`);
    this.name = "ResponseTooLargeError";
  }
}

/** A 2xx body that should have been JSON is not. */
export class InvalidJsonResponseError extends Error {
  constructor(cause: unknown) {
    super("agent api answered with invalid JSON", { cause });
    this.name = "InvalidJsonResponseError";
  }
}

/**
 * The error for a non-2xx answer: code and message from the agent API's
 * JSON problem body (`{"error":{"code","message"}}`) when it has one,
 * otherwise `Http<status>` and the start of the text.
 */
export function apiErrorOf(status: number, body: string, retryAfter: string | string[] | undefined): AgentApiRequestError {
  let code = `Http${status}`;
  let message = body.slice(0, 200);
  try {
    const e = (JSON.parse(body) as { error?: { code?: string; message?: string } } | null)?.error;
    if (e?.code !== undefined) code = e.code;
    if (e?.message !== undefined) message = e.message;
  } catch {
    // not JSON: keep the text
  }
  const retry = Number(retryAfter);
  return new AgentApiRequestError(status, code, message, Number.isFinite(retry) ? retry : undefined);
}

/** Per-request settings of a streamed GET. */
export type StreamRequestOptions = Omit<RequestOptions, "maxBytes">;

/** Options of streamGet(). */
export interface StreamOptions extends StreamRequestOptions {
  /** The error for a non-2xx answer, from its status, the start of its body (at most 64 KiB) and its headers. */
  refused: (status: number, body: string, headers: IncomingHttpHeaders) => Error;
  /** Idle timeout when the caller names none (default 30 s). */
  defaultTimeoutMs?: number;
  /** Upper bound of the idle timeout, whatever the caller asks. */
  maxTimeoutMs?: number;
}

/**
 * The GET of every artifact download, to the agent API or to an update
 * cache: resolves with the response stream of a 2xx answer; for any other
 * status, reads the start of the body and rejects with `refused(...)`; a
 * socket idle longer than the timeout fails with RequestTimeoutError.
 */
export function streamGet(agent: https.Agent, url: URL, headers: Record<string, string>, o: StreamOptions): Promise<IncomingMessage> {
  const timeoutMs = Math.min(o.timeoutMs ?? o.defaultTimeoutMs ?? 30_000, o.maxTimeoutMs ?? Infinity);
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: "GET", agent, headers, timeout: timeoutMs, signal: o.signal }, (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 200 && status < 300) {
        resolve(res);
        return;
      }
      const chunks: Buffer[] = [];
      let n = 0;
      res.on("data", (c: Buffer) => {
        n += c.length;
        if (n <= ERROR_BODY_BYTES) chunks.push(c);
      });
      res.on("error", reject);
      res.on("end", () => reject(o.refused(status, Buffer.concat(chunks).toString("utf8"), res.headers)));
    });
    req.on("timeout", () => req.destroy(new RequestTimeoutError(o.what ?? "agent api request", timeoutMs)));
    req.on("error", reject);
    req.end();
  });
}

function isJsonType(headers: RawResponse["headers"]): boolean {
  const t = headers["content-type"];
  return typeof t === "string" && t.includes("json");
}

/** See the module comment. */
export class AgentApiClient {
  private readonly agent: https.Agent;

  constructor(
    readonly baseUrl: string,
    tls: ClientTls,
    o: ClientOptions = {},
  ) {
    if (tls.ca === undefined && tls.insecure !== true) throw new Error("agent api client needs a CA or insecure mode");
    const key = tls.key === undefined ? undefined : typeof tls.key === "string" ? tls.key : tls.key.export({ format: "pem", type: "pkcs8" }).toString();
    this.agent = new https.Agent({
      keepAlive: true,
      maxSockets: o.maxSockets ?? 4,
      ca: tls.ca,
      rejectUnauthorized: tls.insecure !== true,
      cert: tls.cert,
      key,
      ...(tls.servername !== undefined ? { servername: tls.servername } : {}),
    });
  }

  /**
   * Sends a request with an optional JSON body; resolves with the decoded
   * body for 2xx, throws AgentApiRequestError for any other status (see the
   * module comment for the other errors).
   */
  async request<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}, o: JsonRequestOptions = {}): Promise<ApiResponse<T>> {
    const r = await this.requestBytes(method, path, body, headers, o);
    const text = r.body.toString("utf8");
    if (o.decode !== "json" && !isJsonType(r.headers)) return { status: r.status, body: text as T };
    try {
      return { status: r.status, body: JSON.parse(text) as T };
    } catch (cause) {
      throw new InvalidJsonResponseError(cause);
    }
  }

  /**
   * Sends a request with an optional JSON body; resolves with the raw body
   * and headers for 2xx (at most `maxBytes`, else ResponseTooLargeError),
   * throws AgentApiRequestError for any other status.
   */
  requestBytes(method: string, path: string, body?: unknown, headers: Record<string, string> = {}, o: RequestOptions = {}): Promise<RawResponse> {
    const url = new URL(path, this.baseUrl);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const timeoutMs = o.timeoutMs ?? 30_000;
    const maxBytes = o.maxBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (err: unknown): void => {
        if (settled) return;
        settled = true;
        reject(err);
      };
      const req = https.request(
        url,
        {
          method,
          agent: this.agent,
          headers: { Accept: "application/json", ...(payload ? { "Content-Type": "application/json", "Content-Length": String(payload.length) } : {}), ...headers },
          timeout: timeoutMs,
          signal: o.signal,
        },
        (res) => {
          const status = res.statusCode ?? 0;
          const ok = status >= 200 && status < 300;
          const chunks: Buffer[] = [];
          let n = 0;
          res.on("data", (c: Buffer) => {
            if (settled) return;
            n += c.length;
            if (ok && n > maxBytes) {
              fail(new ResponseTooLargeError(n, maxBytes));
              res.destroy();
              req.destroy();
              return;
            }
            // An error body only feeds a message: keep its start, drain the rest.
            if (!ok && n > ERROR_BODY_BYTES) return;
            chunks.push(c);
          });
          res.on("error", fail);
          res.on("end", () => {
            if (settled) return;
            settled = true;
            const buf = Buffer.concat(chunks);
            if (ok) resolve({ status, headers: res.headers, body: buf });
            else reject(apiErrorOf(status, buf.toString("utf8"), res.headers["retry-after"]));
          });
        },
      );
      req.on("timeout", () => req.destroy(new RequestTimeoutError(o.what ?? "agent api request", timeoutMs)));
      req.on("error", fail);
      req.end(payload);
    });
  }

  /**
   * Sends a GET and resolves with the response stream of a 2xx answer, for
   * bodies too large to buffer (artifact downloads); the caller consumes or
   * destroys it and bounds what it reads. Throws AgentApiRequestError for any
   * other status. The idle timeout applies while the body streams.
   */
  stream(path: string, headers: Record<string, string> = {}, o: StreamRequestOptions = {}): Promise<IncomingMessage> {
    return streamGet(this.agent, new URL(path, this.baseUrl), headers, { ...o, refused: (status, body, h) => apiErrorOf(status, body, h["retry-after"]) });
  }

  /** Closes kept-alive connections. */
  close(): void {
    this.agent.destroy();
  }
}
