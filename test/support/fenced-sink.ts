/**
 * A fenced sink for lease tests: a tiny HTTP server standing for any
 * external side effect of a lease holder. POST /write with
 * `{ connection, token, writer }` is accepted (200) unless the sink has
 * already accepted a higher token for that connection (409): a stale
 * holder's write is refused however late it arrives (Kleppmann's fencing).
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

/** A running sink. */
export interface FencedSink {
  url: string;
  /** Tokens accepted per connection, in arrival order. */
  accepted: Map<string, number[]>;
  refused: number;
  close(): Promise<void>;
}

/** Starts a sink on 127.0.0.1 (ephemeral port). */
export async function startFencedSink(): Promise<FencedSink> {
  const accepted = new Map<string, number[]>();
  const highest = new Map<string, number>();
  const sink: FencedSink = { url: "", accepted, refused: 0, close: async () => undefined };
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => {
      let w: { connection?: unknown; token?: unknown };
      try {
        w = JSON.parse(body) as typeof w;
      } catch {
        res.writeHead(400).end();
        return;
      }
      if (typeof w.connection !== "string" || typeof w.token !== "number") {
        res.writeHead(400).end();
        return;
      }
      const top = highest.get(w.connection) ?? 0;
      if (w.token < top) {
        sink.refused++;
        res.writeHead(409).end();
        return;
      }
      highest.set(w.connection, w.token);
      accepted.set(w.connection, [...(accepted.get(w.connection) ?? []), w.token]);
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  sink.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  sink.close = () => new Promise<void>((r) => server.close(() => r()));
  return sink;
}

/** One write through the sink; resolves with the HTTP status (0 on a network error). */
export function sinkWrite(url: string, connection: string, token: number, agent: http.Agent): Promise<number> {
  return new Promise((resolve) => {
    const req = http.request(`${url}/write`, { method: "POST", agent, headers: { "content-type": "application/json" } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", () => resolve(0));
    req.end(JSON.stringify({ connection, token }));
  });
}
