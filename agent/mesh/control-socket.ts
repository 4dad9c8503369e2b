/**
 * The running agent's local mesh control socket, `<membership dir>/mesh.sock`
 * (a Unix socket, mode 0600 in the 0700 membership directory: only the
 * agent's user can talk to it). `fabric-agent mesh ping` uses it so the ping
 * goes over the agent's own QUIC link: a second process dialling the peer
 * with the same node certificate would replace the agent's link (one
 * connection per pair).
 *
 * Protocol: one JSON line in, one JSON line out.
 *   { "op": "ping", "node": "<name>" } -> { "ok": true, ...PingResult } | { "ok": false, "error": "..." }
 *     then the server closes.
 *   { "op": "forward", "node": "<name>", "port": N, "listen": { "host": "127.0.0.1", "port": L } }
 *     -> { "ok": true, ...ForwardResult } | { "ok": false, "error": "..." }; on success the
 *     forward lives as long as this connection: the client closing it (or dying) closes the
 *     listener and its connections.
 * Requests larger than 4 KiB or not answered within 15 s are dropped.
 */
import { chmod, unlink } from "node:fs/promises";
import net from "node:net";
import { join } from "node:path";

/** Socket file name inside the membership directory. */
export const MESH_SOCKET_FILE = "mesh.sock";

const MAX_REQUEST_BYTES = 4096;

/** The answer to a ping. */
export interface PingResult {
  node: string;
  rttMs: number;
  /** `direct`, or `relay via <relay>`. */
  path: string;
  /** The remote endpoint of the first hop's link. */
  remote: string;
}

/** What a forward request asks for. */
export interface ForwardRequest {
  node: string;
  port: number;
  listen: { host: string; port: number };
}

/** The answer to a forward request. */
export interface ForwardResult {
  node: string;
  port: number;
  /** Where the agent listens: host:port. */
  listen: string;
  /** The path the target's check took. */
  path: string;
}

/** A running forward held by a control connection. */
export interface HeldForward {
  result: ForwardResult;
  close(): Promise<void>;
}

/** Handlers behind the socket. */
export interface ControlHandlers {
  ping(node: string): Promise<PingResult>;
  forward(req: ForwardRequest): Promise<HeldForward>;
}

function isPort(v: unknown, min: number): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= min && v <= 65535;
}

/** Checks a forward request line; throws with what is expected. */
export function parseForwardRequest(req: Record<string, unknown>): ForwardRequest {
  const listen = req["listen"] as Record<string, unknown> | undefined;
  if (typeof req["node"] !== "string" || req["node"] === "" || req["node"].length > 253 || !isPort(req["port"], 1)) {
    throw new Error('expected {"op":"forward","node":"<name>","port":1..65535,"listen":{"host":"<ip>","port":0..65535}}');
  }
  if (typeof listen !== "object" || listen === null || typeof listen["host"] !== "string" || net.isIP(listen["host"]) === 0 || !isPort(listen["port"], 0)) {
    throw new Error("listen must be an IP literal and a port 0..65535");
  }
  return { node: req["node"], port: req["port"], listen: { host: listen["host"], port: listen["port"] } };
}

/** Serves the control socket in `dir`; resolves with a close function once listening. */
export async function serveControlSocket(dir: string, h: ControlHandlers): Promise<{ path: string; close: () => Promise<void> }> {
  const path = join(dir, MESH_SOCKET_FILE);
  // A socket file left by a killed agent would make listen fail with EADDRINUSE.
  await unlink(path).catch(() => undefined);
  const server = net.createServer((sock) => {
    sock.setTimeout(15_000, () => sock.destroy());
    let buf = "";
    sock.on("data", (b: Buffer) => {
      buf += b.toString("utf8");
      if (buf.length > MAX_REQUEST_BYTES) return sock.destroy();
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      sock.removeAllListeners("data");
      const line = buf.slice(0, nl);
      void (async () => {
        let answer: unknown;
        try {
          const req = JSON.parse(line) as Record<string, unknown> | null;
          if (req !== null && typeof req === "object" && req["op"] === "forward") {
            const held = await h.forward(parseForwardRequest(req));
            sock.setTimeout(0);
            sock.write(JSON.stringify({ ok: true, ...held.result }) + "\n");
            sock.resume();
            sock.once("close", () => void held.close());
            return;
          }
          if (req === null || typeof req !== "object" || req["op"] !== "ping" || typeof req["node"] !== "string" || req["node"] === "") {
            throw new Error('expected {"op":"ping","node":"<name>"} or {"op":"forward",...}');
          }
          answer = { ok: true, ...(await h.ping(req["node"])) };
        } catch (err) {
          answer = { ok: false, error: err instanceof Error ? err.message : "failed" };
        }
        sock.end(JSON.stringify(answer) + "\n");
      })();
    });
    sock.on("error", () => undefined);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });
  await chmod(path, 0o600);
  return {
    path,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        void unlink(path).catch(() => undefined);
      }),
  };
}

/** Asks the agent listening in `dir` to ping `node`; throws with the agent's error. */
export async function requestPing(dir: string, node: string, timeoutMs = 15_000): Promise<PingResult> {
  const path = join(dir, MESH_SOCKET_FILE);
  const text = await new Promise<string>((resolve, reject) => {
    const sock = net.createConnection(path);
    let out = "";
    sock.setTimeout(timeoutMs, () => sock.destroy(new Error(`no answer from the agent on ${path} within ${timeoutMs} ms`)));
    sock.on("connect", () => sock.write(JSON.stringify({ op: "ping", node }) + "\n"));
    sock.on("data", (b: Buffer) => (out += b.toString("utf8")));
    sock.on("end", () => resolve(out));
    sock.on("error", (err) => reject(new Error(`talking to the agent on ${path} (is fabric-agent run up with the mesh on?)`, { cause: err })));
  });
  const a = JSON.parse(text) as ({ ok: true } & PingResult) | { ok: false; error: string };
  if (!a.ok) throw new Error(a.error);
  return { node: a.node, rttMs: a.rttMs, path: a.path, remote: a.remote };
}

/**
 * Asks the agent listening in `dir` for a forward; resolves with its answer
 * once it listens, and keeps the connection (the forward) open until
 * `close()` or the returned `closed` settles (the agent went away).
 */
export async function requestForward(dir: string, req: ForwardRequest, timeoutMs = 30_000): Promise<{ result: ForwardResult; closed: Promise<void>; close: () => void }> {
  const path = join(dir, MESH_SOCKET_FILE);
  const sock = net.createConnection(path);
  const closed = new Promise<void>((resolve) => sock.once("close", () => resolve()));
  const line = await new Promise<string>((resolve, reject) => {
    let out = "";
    sock.setTimeout(timeoutMs, () => sock.destroy(new Error(`no answer from the agent on ${path} within ${timeoutMs} ms`)));
    sock.on("connect", () => sock.write(JSON.stringify({ op: "forward", ...req }) + "\n"));
    const onData = (b: Buffer): void => {
      out += b.toString("utf8");
      const nl = out.indexOf("\n");
      if (nl >= 0) {
        sock.off("data", onData);
        resolve(out.slice(0, nl));
      }
    };
    sock.on("data", onData);
    sock.once("end", () => resolve(out));
    sock.once("error", (err) => reject(new Error(`talking to the agent on ${path} (is fabric-agent run up with the mesh on?)`, { cause: err })));
  });
  sock.setTimeout(0);
  const a = JSON.parse(line) as ({ ok: true } & ForwardResult) | { ok: false; error: string };
  if (!a.ok) {
    sock.destroy();
    throw new Error(a.error);
  }
  sock.on("error", () => undefined);
  return { result: { node: a.node, port: a.port, listen: a.listen, path: a.path }, closed, close: () => sock.end() };
}
