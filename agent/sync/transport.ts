/**
 * The agent's mTLS transport for the sync loops: the snapshot long poll
 * (raw bytes, read with a hard size cap so a hostile or broken server cannot
 * make the agent buffer an unbounded body) and small JSON posts. The server
 * is pinned to the agent API CA stored at enrollment; the client presents
 * the membership's current certificate.
 */
import https from "node:https";
import { SNAPSHOT_SERIAL_HEADER } from "../../lib/agent-protocol.js";
import { AgentApiRequestError } from "../enroll/client.js";
import type { StoredIdentity } from "../enroll/identity-store.js";

/** Result of one long poll. */
export type PollResult =
  | { kind: "snapshot"; bytes: Buffer; announcedSerial?: number }
  | { kind: "none" }
  | { kind: "oversized"; received: number };

/** See the module comment. */
export class SyncTransport {
  private readonly agent: https.Agent;

  constructor(
    private readonly identity: StoredIdentity,
    private readonly server: string = identity.info.server,
  ) {
    this.agent = new https.Agent({ keepAlive: true, maxSockets: 2, ca: identity.serverCaPem, cert: identity.certPem, key: identity.keyPem });
  }

  private errorOf(status: number, text: string, retryAfter: string | undefined): AgentApiRequestError {
    let code = `Http${status}`;
    let message = text.slice(0, 200);
    try {
      const e = (JSON.parse(text) as { error?: { code?: string; message?: string } }).error;
      if (e?.code !== undefined) code = e.code;
      if (e?.message !== undefined) message = e.message;
    } catch {
      // not JSON: keep the text
    }
    const retry = Number(retryAfter);
    return new AgentApiRequestError(status, code, message, Number.isFinite(retry) ? retry : undefined);
  }

  /** GET /v1/snapshot?after=&wait=; reads at most maxBytes + 1 bytes of a body. */
  pollSnapshot(after: number, waitSeconds: number, maxBytes: number, signal: AbortSignal): Promise<PollResult> {
    const url = new URL(`/v1/snapshot?after=${after}&wait=${waitSeconds}`, this.server);
    return new Promise((resolve, reject) => {
      const req = https.request(url, { method: "GET", agent: this.agent, headers: { Accept: "application/json" }, timeout: (waitSeconds + 15) * 1000, signal }, (res) => {
        const status = res.statusCode ?? 0;
        const chunks: Buffer[] = [];
        let n = 0;
        let done = false;
        res.on("data", (c: Buffer) => {
          if (done) return;
          n += c.length;
          if (status === 200 && n > maxBytes) {
            done = true;
            res.destroy();
            req.destroy();
            resolve({ kind: "oversized", received: n });
            return;
          }
          if (status !== 200 && n > 64 * 1024) return;
          chunks.push(c);
        });
        res.on("error", (e) => {
          if (!done) reject(e);
        });
        res.on("end", () => {
          if (done) return;
          done = true;
          if (status === 204) return resolve({ kind: "none" });
          const body = Buffer.concat(chunks);
          if (status !== 200) return reject(this.errorOf(status, body.toString("utf8"), res.headers["retry-after"] as string | undefined));
          const announced = Number(res.headers[SNAPSHOT_SERIAL_HEADER]);
          resolve({ kind: "snapshot", bytes: body, ...(Number.isSafeInteger(announced) ? { announcedSerial: announced } : {}) });
        });
      });
      req.on("timeout", () => req.destroy(new Error("snapshot poll timed out")));
      req.on("error", reject);
      req.end();
    });
  }

  /** POSTs JSON; resolves with the parsed answer for 2xx, throws AgentApiRequestError otherwise. */
  postJson<T>(path: string, body: unknown, signal?: AbortSignal): Promise<T> {
    const payload = Buffer.from(JSON.stringify(body));
    const url = new URL(path, this.server);
    return new Promise((resolve, reject) => {
      const req = https.request(
        url,
        { method: "POST", agent: this.agent, headers: { "Content-Type": "application/json", "Content-Length": String(payload.length), Accept: "application/json" }, timeout: 15_000, signal },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", reject);
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            const status = res.statusCode ?? 0;
            if (status < 200 || status >= 300) return reject(this.errorOf(status, text, res.headers["retry-after"] as string | undefined));
            try {
              resolve(JSON.parse(text) as T);
            } catch {
              reject(new Error("agent api answered with invalid JSON"));
            }
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
