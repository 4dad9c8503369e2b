/**
 * A small JSON-over-HTTPS client for the agent API. TLS is either pinned
 * (the agent API CA the agent trusts after checking --ca-hash) or, only for
 * fetching that CA, unverified. With a node certificate it authenticates
 * over mTLS. Connections are kept alive.
 */
import https from "node:https";
import type { KeyObject } from "node:crypto";

/** TLS settings of a client. */
export interface ClientTls {
  /** PEM of the trusted server CA; required unless insecure. */
  ca?: string;
  /** Skip server verification: only for fetching the CA that --ca-hash then checks. */
  insecure?: boolean;
  /** Client certificate and key for mTLS. */
  cert?: string;
  key?: string | KeyObject;
}

/** A refusal or failure from the agent API. */
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

/** A response. */
export interface ApiResponse<T> {
  status: number;
  body: T;
}

/** See the module comment. */
export class AgentApiClient {
  private readonly agent: https.Agent;
  constructor(
    readonly baseUrl: string,
    tls: ClientTls,
  ) {
    if (tls.ca === undefined && tls.insecure !== true) throw new Error("agent api client needs a CA or insecure mode");
    const key = tls.key === undefined ? undefined : typeof tls.key === "string" ? tls.key : tls.key.export({ format: "pem", type: "pkcs8" }).toString();
    this.agent = new https.Agent({ keepAlive: true, maxSockets: 4, ca: tls.ca, rejectUnauthorized: tls.insecure !== true, cert: tls.cert, key });
  }

  /** Sends a request; resolves for 2xx, throws AgentApiRequestError otherwise. */
  request<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<ApiResponse<T>> {
    const url = new URL(path, this.baseUrl);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = https.request(
        url,
        {
          method,
          agent: this.agent,
          headers: { Accept: "application/json", ...(payload ? { "Content-Type": "application/json", "Content-Length": String(payload.length) } : {}), ...headers },
          timeout: 30_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", reject);
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            const status = res.statusCode ?? 0;
            let parsed: unknown = text;
            if ((res.headers["content-type"] ?? "").includes("json")) {
              try {
                parsed = JSON.parse(text);
              } catch {
                parsed = text;
              }
            }
            if (status >= 200 && status < 300) {
              resolve({ status, body: parsed as T });
              return;
            }
            const e = (parsed as { error?: { code?: string; message?: string } }).error;
            const retry = Number(res.headers["retry-after"]);
            reject(new AgentApiRequestError(status, e?.code ?? `Http${status}`, e?.message ?? text.slice(0, 200), Number.isFinite(retry) ? retry : undefined));
          });
        },
      );
      req.on("timeout", () => req.destroy(new Error("agent api request timed out")));
      req.on("error", reject);
      req.end(payload);
    });
  }

  /** Closes kept-alive connections. */
  close(): void {
    this.agent.destroy();
  }
}
