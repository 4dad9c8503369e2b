/**
 * Sends fuzz requests over HTTP/1.1 keep-alive with a few in flight, and
 * records what came back. A watch is read until the server ends it or a
 * short client deadline passes; an ERROR event carrying a 5xx Status counts
 * as a server error like a 5xx status line does.
 */
import https from "node:https";
import type { FuzzRequest } from "./requests.js";

/** What one request got. */
export interface FuzzResult {
  request: FuzzRequest;
  /** HTTP status, or 0 when the connection failed. */
  status: number;
  /** For a watch: the code of a Status in an ERROR event, when any. */
  streamErrorCode?: number;
  /** The response body (first bytes of a watch), parsed when JSON. */
  body: unknown;
  error?: string;
}

/** Where and how to send. */
export interface FuzzTarget {
  /** https://host:port */
  url: string;
  caPem: string;
  /** Requests in flight at once. */
  concurrency: number;
  /** A watch is cut after this long. */
  watchDeadlineMs: number;
  /** Any other request fails after this long. */
  timeoutMs: number;
  /**
   * Watches (streaming requests) held open besides the `concurrency` others
   * (default 0: a watch takes one of those slots, idle until its deadline).
   */
  streams?: number;
}

function send(agent: https.Agent, target: FuzzTarget, req: FuzzRequest): Promise<FuzzResult> {
  const url = new URL(target.url);
  return new Promise((resolve) => {
    let done = false;
    const finish = (r: Omit<FuzzResult, "request">) => {
      if (done) return;
      done = true;
      resolve({ request: req, ...r });
    };
    const headers: Record<string, string | number> = { ...req.headers };
    if (req.body !== undefined) headers["content-length"] = req.body.length;
    const cr = https.request(
      { agent, host: url.hostname, port: url.port, method: req.method, path: req.path, headers, ca: target.caPem },
      (res) => {
        const status = res.statusCode ?? 0;
        const chunks: Buffer[] = [];
        let size = 0;
        let timer: NodeJS.Timeout | undefined;
        const complete = () => {
          if (timer) clearTimeout(timer);
          const text = Buffer.concat(chunks).toString("utf8");
          finish({ status, body: parse(text), streamErrorCode: req.stream ? streamError(text) : undefined });
        };
        if (req.stream) {
          timer = setTimeout(() => {
            complete();
            res.destroy();
          }, target.watchDeadlineMs);
        }
        res.on("data", (c: Buffer) => {
          if (size < 1 << 20) chunks.push(c);
          size += c.length;
        });
        res.on("end", complete);
        res.on("close", complete);
        res.on("error", complete);
      },
    );
    cr.setTimeout(req.stream ? target.watchDeadlineMs + 5_000 : target.timeoutMs, () => {
      cr.destroy(new Error("client timeout"));
    });
    cr.on("error", (err) => finish({ status: 0, body: undefined, error: String(err) }));
    cr.end(req.body);
  });
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text.slice(0, 2000);
  }
}

/**
 * kube-apiserver's answer to a resourceVersion newer than anything stored: a
 * 504 Timeout Status with the ResourceVersionTooLarge cause, which client-go
 * retries. It is the contract, not a server failure.
 */
export function isTooLargeResourceVersion(status: unknown): boolean {
  const s = status as { code?: unknown; reason?: unknown; details?: { causes?: Array<{ reason?: unknown }> } } | undefined;
  return s?.code === 504 && s.reason === "Timeout" && (s.details?.causes ?? []).some((c) => c.reason === "ResourceVersionTooLarge");
}

/** The largest 5xx code in the ERROR events of a watch stream (kube's ResourceVersionTooLarge 504 aside). */
function streamError(text: string): number | undefined {
  let worst: number | undefined;
  for (const line of text.split("\n")) {
    if (!line.includes('"ERROR"')) continue;
    try {
      const ev = JSON.parse(line) as { type?: unknown; object?: { code?: unknown } };
      const code = ev.object?.code;
      if (ev.type === "ERROR" && typeof code === "number" && code >= 500 && !isTooLargeResourceVersion(ev.object)) worst = Math.max(worst ?? 0, code);
    } catch {
      // A line cut by the client deadline.
    }
  }
  return worst;
}

/**
 * Sends `count` requests from `next` with `target.concurrency` in flight
 * (and up to `target.streams` watches besides), calling `onResult` for each
 * as it completes. Requests are drawn in order,
 * so the generated sequence depends only on the generator.
 */
export async function runRequests(target: FuzzTarget, count: number, next: () => FuzzRequest, onResult: (r: FuzzResult) => void): Promise<void> {
  const streams = target.streams ?? 0;
  const agent = new https.Agent({ keepAlive: true, maxSockets: target.concurrency + streams, ca: target.caPem });
  let issued = 0;
  const open = new Set<Promise<void>>();
  const worker = async () => {
    while (issued < count) {
      issued++;
      const req = next();
      if (req.stream && streams > 0) {
        // A watch mostly waits for its deadline: it runs beside the others, `streams` at most.
        while (open.size >= streams) await Promise.race(open);
        const p: Promise<void> = send(agent, target, req).then((r) => {
          open.delete(p);
          onResult(r);
        });
        open.add(p);
        continue;
      }
      onResult(await send(agent, target, req));
    }
  };
  try {
    await Promise.all(Array.from({ length: target.concurrency }, worker));
    await Promise.all(open);
  } finally {
    agent.destroy();
  }
}

/** How to send a request again by hand: method, path, headers (token elided), body prefix. */
export function describeRequest(req: FuzzRequest, bodyPrefix = Number(process.env.FUZZ_BODY ?? 400)): string {
  const headers = Object.entries(req.headers)
    .map(([k, v]) => `  ${k}: ${k === "authorization" ? "Bearer $TOKEN" : v}`)
    .join("\n");
  let body = "";
  if (req.body !== undefined) {
    const text = req.body.toString("utf8");
    // Bytes that are not UTF-8 are shown as base64, so they can be sent again exactly.
    const utf8 = Buffer.from(text, "utf8").equals(req.body);
    const shown = utf8 ? JSON.stringify(text.slice(0, bodyPrefix)) : `base64:${req.body.subarray(0, bodyPrefix).toString("base64")}`;
    body = `\n  body (${req.body.length} bytes${text.length > bodyPrefix ? `, first ${bodyPrefix} chars` : ""}): ${shown}`;
  }
  return `${req.method} ${req.path}\n${headers}${body}\n  classes: ${req.classes.join(" ")}`;
}
