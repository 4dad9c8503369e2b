/**
 * The agent's mTLS transport for the sync loops: the snapshot long poll
 * (raw bytes, read with a hard size cap so a hostile or broken server cannot
 * make the agent buffer an unbounded body) and small JSON posts. The server
 * is pinned to the agent API CA stored at enrollment; the client presents
 * the membership's current certificate. HTTP, TLS and error classification
 * are the agent API client's (agent/http/client.ts).
 */
import { SNAPSHOT_SERIAL_HEADER } from "../../lib/agent-protocol.js";
import type { StoredIdentity } from "../enroll/identity-store.js";
import { AgentApiClient, ResponseTooLargeError, apiErrorOf } from "../http/client.js";

/** Result of one long poll. */
export type PollResult =
  | { kind: "snapshot"; bytes: Buffer; announcedSerial?: number }
  | { kind: "none" }
  | { kind: "oversized"; received: number };

/** Slack on top of the server's hold before a long poll counts as timed out. */
const POLL_TIMEOUT_SLACK_SECONDS = 15;

/** See the module comment. */
export class SyncTransport {
  private readonly client: AgentApiClient;

  constructor(
    private readonly identity: StoredIdentity,
    private readonly server: string = identity.info.server,
  ) {
    this.client = new AgentApiClient(this.server, { ca: identity.serverCaPem, cert: identity.certPem, key: identity.keyPem }, { maxSockets: 2 });
  }

  /**
   * GET /v1/snapshot?after=&wait=; reads at most maxBytes + 1 bytes of a
   * body (more is "oversized", not an error: the sync counts it as a rejected
   * snapshot). Throws AgentApiRequestError for any status but 200 and 204.
   */
  async pollSnapshot(after: number, waitSeconds: number, maxBytes: number, signal: AbortSignal): Promise<PollResult> {
    let r;
    try {
      r = await this.client.requestBytes("GET", `/v1/snapshot?after=${after}&wait=${waitSeconds}`, undefined, {}, {
        timeoutMs: (waitSeconds + POLL_TIMEOUT_SLACK_SECONDS) * 1000,
        what: "snapshot poll",
        signal,
        maxBytes,
      });
    } catch (err) {
      if (err instanceof ResponseTooLargeError) return { kind: "oversized", received: err.received };
      throw err;
    }
    if (r.status === 204) return { kind: "none" };
    if (r.status !== 200) throw apiErrorOf(r.status, r.body.toString("utf8"), r.headers["retry-after"]);
    const announced = Number(r.headers[SNAPSHOT_SERIAL_HEADER]);
    return { kind: "snapshot", bytes: r.body, ...(Number.isSafeInteger(announced) ? { announcedSerial: announced } : {}) };
  }

  /** POSTs JSON; resolves with the parsed answer for 2xx, throws AgentApiRequestError otherwise. */
  async postJson<T>(path: string, body: unknown, signal?: AbortSignal): Promise<T> {
    return (await this.client.request<T>("POST", path, body, {}, { decode: "json", timeoutMs: 15_000, signal })).body;
  }

  /** Closes kept-alive connections. */
  close(): void {
    this.client.close();
  }
}
