/**
 * The running agent's local mesh control socket, `<membership dir>/mesh.sock`
 * (a Unix socket, mode 0600 in the 0700 membership directory: only the
 * agent's user can talk to it). `fabric-agent mesh ping` uses it so the ping
 * goes over the agent's own QUIC link: a second process dialling the peer
 * with the same node certificate would replace the agent's link (one
 * connection per pair).
 *
 * Protocol: one JSON line in, one JSON line out, then the server closes.
 *   { "op": "ping", "node": "<name>" } -> { "ok": true, ...PingResult } | { "ok": false, "error": "..." }
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
  path: "direct";
  /** The remote endpoint the link uses. */
  remote: string;
}

/** Handlers behind the socket. */
export interface ControlHandlers {
  ping(node: string): Promise<PingResult>;
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
          const req = JSON.parse(line) as { op?: unknown; node?: unknown };
          if (req.op !== "ping" || typeof req.node !== "string" || req.node === "") throw new Error('expected {"op":"ping","node":"<name>"}');
          answer = { ok: true, ...(await h.ping(req.node)) };
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
