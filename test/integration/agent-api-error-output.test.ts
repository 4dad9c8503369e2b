/**
 * One log format per process, also when the agent API meets malformed
 * requests: a body that is not JSON, a path with broken percent-encoding, a
 * request line that is not HTTP, a header too large, plain HTTP on the TLS
 * port, a client that hangs up mid-body. Each gets a clean 4xx (or its
 * connection closed), and everything the process writes to stderr meanwhile
 * is a line of the project's logger, none at level error: no Koa default
 * printout, no stack.
 */
import assert from "node:assert/strict";
import https from "node:https";
import net from "node:net";
import tls from "node:tls";
import { startEnrollmentPlane, type EnrollmentPlane } from "../support/enrollment.js";

interface Answer {
  status: number;
  body: string;
}

describe("agent API: malformed requests produce a 4xx and no default Koa printout", function () {
  this.timeout(120_000);
  let p: EnrollmentPlane;
  let url: URL;

  before(async () => {
    p = await startEnrollmentPlane();
    url = new URL(p.server);
  });
  after(async () => {
    await p?.stop();
  });

  const request = (method: string, path: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<Answer> =>
    new Promise((resolve, reject) => {
      const req = https.request(new URL(path, p.server), { method, agent: false, rejectUnauthorized: false, headers: { "Content-Type": "application/json", ...headers } }, (res) => {
        let text = "";
        res.on("data", (c: Buffer) => (text += c.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
        res.on("error", reject);
      });
      req.on("error", reject);
      req.end(body);
    });

  /** Writes raw bytes over TLS and returns the first line answered (empty when the server just closed). */
  const rawTls = (bytes: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const sock = tls.connect({ host: url.hostname, port: Number(url.port), rejectUnauthorized: false }, () => sock.end(bytes));
      let text = "";
      sock.on("data", (c: Buffer) => (text += c.toString()));
      sock.on("close", () => resolve(text.split("\r\n")[0] ?? ""));
      sock.on("error", (err: NodeJS.ErrnoException) => (err.code === "ECONNRESET" ? resolve(text.split("\r\n")[0] ?? "") : reject(err)));
    });

  /** Runs `fn` and returns what the process wrote to stderr (and console.error) meanwhile. */
  async function stderrOf(fn: () => Promise<void>): Promise<string> {
    let captured = "";
    const write = process.stderr.write.bind(process.stderr);
    const consoleError = console.error;
    process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
      captured += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString();
      return write(chunk, ...(rest as []));
    }) as typeof process.stderr.write;
    console.error = (...args: unknown[]): void => {
      captured += `console.error: ${args.map(String).join(" ")}\n`;
    };
    try {
      await fn();
      // Late errors (a socket's error after its response) come on later ticks.
      await new Promise((r) => setTimeout(r, 500));
    } finally {
      process.stderr.write = write;
      console.error = consoleError;
    }
    return captured;
  }

  it("answers each with a 4xx and writes only logger lines to stderr", async () => {
    const answers: Array<[string, number | string]> = [];
    const out = await stderrOf(async () => {
      answers.push(["not JSON", (await request("POST", "/v1/enroll", "{not json")).status]);
      answers.push(["not UTF-8", (await request("POST", "/v1/enroll", Buffer.from([0xff, 0xfe, 0x7b]))).status]);
      answers.push(["wrong type", (await request("POST", "/v1/enroll", JSON.stringify({ token: 7, csr: [], nodeName: {} }))).status]);
      answers.push(["broken percent-encoding", (await request("GET", "/v1/enroll/requests/%E0%A4%A")).status]);
      answers.push(["unknown route", (await request("GET", "/v1/nothing-here")).status]);
      answers.push(["wrong method", (await request("DELETE", "/v1/enroll")).status]);
      answers.push(["header too large", (await request("GET", "/v1/enroll/ca", undefined, { "X-Big": "a".repeat(64 * 1024) })).status]);
      answers.push(["not HTTP", await rawTls("HELLO THERE\r\n\r\n")]);
      answers.push(["bad Content-Length", await rawTls("POST /v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")]);
      // A client hanging up mid-body.
      await new Promise<void>((resolve) => {
        const req = https.request(new URL("/v1/enroll", p.server), { method: "POST", agent: false, rejectUnauthorized: false, headers: { "Content-Type": "application/json", "Content-Length": "1000" } });
        req.on("error", () => resolve());
        req.on("response", () => resolve());
        req.write('{"token":"');
        setTimeout(() => req.destroy(), 200);
      });
      // Plain HTTP on the TLS port.
      await new Promise<void>((resolve) => {
        const sock = net.connect({ host: url.hostname, port: Number(url.port) }, () => sock.end("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        sock.on("data", () => undefined);
        sock.on("close", () => resolve());
        sock.on("error", () => resolve());
      });
    });
    for (const [what, status] of answers) {
      if (typeof status === "number") assert.ok(status >= 400 && status < 500, `${what}: ${status}`);
      else assert.match(status, /^(HTTP\/1\.1 4\d\d |)/, `${what}: ${status}`);
    }
    const lines = out.split("\n").filter((l) => l.trim() !== "");
    for (const l of lines) {
      assert.doesNotMatch(l, /^\s+at |^console\.error:/, `not the project's log format:\n${out}`);
      let parsed: unknown;
      assert.doesNotThrow(() => (parsed = JSON.parse(l)), `not a JSON log line: ${l}`);
      assert.ok(typeof parsed === "object" && parsed !== null && "msg" in parsed && "level" in parsed, `not a logger line: ${l}`);
      // What a client sends wrong is the client's problem: never logged as a server error.
      assert.notEqual((parsed as { level: unknown }).level, "error", `a client's malformed request logged as a server error: ${l}`);
    }
  });
});
