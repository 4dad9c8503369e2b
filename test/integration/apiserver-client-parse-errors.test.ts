/**
 * What a client sends that is not HTTP is the client's fault: the API
 * server (its Koa app's error handler, apiserver/server.ts) answers 400 (Node's
 * HTTP parser does) and stays up, and it logs no warning nor error for it,
 * only a debug line with the parser's code and the remote address. Raw bytes
 * over TLS to the shared control plane: a garbage request line, a broken
 * chunked body, garbage pipelined after a valid request, a negative
 * Content-Length, a header line without a colon, 256 KiB of binary noise.
 */
import assert from "node:assert/strict";
import https from "node:https";
import tls from "node:tls";
import { sharedControlPlane, type TestControlPlane } from "../support/controlplane.js";

interface LogLine {
  level?: string;
  msg?: string;
  code?: string;
  remote?: string;
}

describe("API server: a client's malformed request gets 400, no warning, and the server stays up", function () {
  this.timeout(60_000);
  let t: TestControlPlane;
  let url: URL;

  before(async () => {
    t = await sharedControlPlane();
    url = new URL(t.kc.getCurrentCluster()?.server ?? "");
  });

  /** Writes raw bytes over TLS and resolves with everything answered once the server closes (or 3 s pass). */
  const rawTls = (bytes: string | Buffer): Promise<string> =>
    new Promise((resolve, reject) => {
      const sock = tls.connect({ host: url.hostname, port: Number(url.port), rejectUnauthorized: false }, () => sock.write(bytes));
      let text = "";
      const timer = setTimeout(() => sock.end(), 3_000);
      sock.on("data", (c: Buffer) => (text += c.toString("latin1")));
      sock.on("close", () => {
        clearTimeout(timer);
        resolve(text);
      });
      sock.on("error", (err: NodeJS.ErrnoException) => (err.code === "ECONNRESET" ? undefined : reject(err)));
    });

  const healthz = (): Promise<number> =>
    new Promise((resolve, reject) => {
      const req = https.request(new URL("/healthz", url), { agent: false, rejectUnauthorized: false }, (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      });
      req.on("error", reject);
      req.end();
    });

  /** Runs `fn` with debug logging and returns the logger's JSON lines written to stdout and stderr meanwhile. */
  async function logsOf(fn: () => Promise<void>): Promise<LogLine[]> {
    let captured = "";
    const out = process.stdout.write.bind(process.stdout);
    const err = process.stderr.write.bind(process.stderr);
    const level = process.env.FABRIC_LOG_LEVEL;
    const tap =
      (w: typeof out) =>
      (chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
        captured += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString();
        return w(chunk, ...(rest as []));
      };
    process.stdout.write = tap(out) as typeof process.stdout.write;
    process.stderr.write = tap(err) as typeof process.stderr.write;
    process.env.FABRIC_LOG_LEVEL = "debug";
    try {
      await fn();
      // Late errors (a socket's error after its response) come on later ticks.
      await new Promise((r) => setTimeout(r, 500));
    } finally {
      process.stdout.write = out;
      process.stderr.write = err;
      if (level === undefined) delete process.env.FABRIC_LOG_LEVEL;
      else process.env.FABRIC_LOG_LEVEL = level;
    }
    return captured
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .flatMap((l) => {
        try {
          return [JSON.parse(l) as LogLine];
        } catch {
          return [];
        }
      });
  }

  it("answers each with 400, keeps serving, and logs the parser's refusals at debug with the remote address", async () => {
    const cases: Array<[string, string | Buffer]> = [
      ["garbage request line", "HELLO THERE\r\n\r\n"],
      ["broken chunked body", "POST /api/v1/namespaces HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nZZZ\r\n\r\n"],
      ["garbage pipelined after a request", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n"],
      ["negative Content-Length", "POST /api/v1/namespaces HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"],
      ["header line without a colon", "GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"],
      ["binary noise", Buffer.alloc(256 * 1024, Buffer.from([0x00, 0xff, 0x0d, 0x0a, 0x80, 0x41]))],
    ];
    const answers: Array<[string, string]> = [];
    const lines = await logsOf(async () => {
      for (const [what, bytes] of cases) {
        answers.push([what, await rawTls(bytes)]);
        assert.equal(await healthz(), 200, `the server stopped answering after: ${what}`);
      }
    });
    for (const [what, text] of answers) assert.match(text, /HTTP\/1\.1 400 Bad Request\r\n/, `${what}: ${JSON.stringify(text.slice(0, 200))}`);
    const loud = lines.filter((l) => l.level === "warn" || l.level === "error");
    assert.deepEqual(loud, [], "a client's malformed request logged as a server warning or error");
    const refused = lines.filter((l) => l.msg === "http client sent a malformed request");
    // The two cases whose parse error comes on a connection that already carries a request reach the app.
    assert.ok(refused.length >= 2, JSON.stringify(lines.filter((l) => l.level === "debug").slice(0, 20)));
    for (const l of refused) {
      assert.equal(l.level, "debug");
      assert.match(l.code ?? "", /^HPE_/);
      assert.equal(l.remote, "127.0.0.1");
    }
  });
});
