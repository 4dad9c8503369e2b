/**
 * Health probes (exec, HTTP, TCP), each bounded by its timeout. A probe
 * answers healthy or not with a short message; it never throws.
 */
import { spawn } from "node:child_process";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import type { SnapshotHealthProbe } from "../../lib/snapshot/format.js";

/** Outcome of one probe. */
export interface ProbeResult {
  ok: boolean;
  message: string;
}

function execProbe(command: readonly string[], timeoutMs: number, env: NodeJS.ProcessEnv, cwd: string | undefined): Promise<ProbeResult> {
  const [cmd, ...args] = command;
  if (cmd === undefined) return Promise.resolve({ ok: false, message: "exec probe has no command" });
  return new Promise((resolve) => {
    let done = false;
    const finish = (r: ProbeResult): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(r);
    };
    const child = spawn(cmd, args, { stdio: "ignore", env, cwd });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      finish({ ok: false, message: `exec probe timed out after ${timeoutMs} ms` });
    }, timeoutMs);
    child.on("error", (err) => finish({ ok: false, message: `exec probe failed: ${err.message}` }));
    child.on("exit", (code, signal) =>
      finish(code === 0 ? { ok: true, message: "exec probe succeeded" } : { ok: false, message: `exec probe exited ${code === null ? `by ${String(signal)}` : `with ${code}`}` }),
    );
  });
}

function httpProbe(url: string, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      resolve({ ok: false, message: `http probe: invalid url ${url}` });
      return;
    }
    const mod = parsed.protocol === "https:" ? https : http;
    const req = mod.get(parsed, { timeout: timeoutMs, rejectUnauthorized: false, agent: false }, (res) => {
      res.resume();
      const code = res.statusCode ?? 0;
      resolve(code >= 200 && code < 400 ? { ok: true, message: `http ${code}` } : { ok: false, message: `http probe answered ${code}` });
    });
    req.on("timeout", () => req.destroy(new Error(`timed out after ${timeoutMs} ms`)));
    req.on("error", (err) => resolve({ ok: false, message: `http probe failed: ${err.message}` }));
  });
}

function tcpProbe(port: number, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port });
    const t = setTimeout(() => {
      s.destroy();
      resolve({ ok: false, message: `tcp probe to port ${port} timed out after ${timeoutMs} ms` });
    }, timeoutMs);
    s.once("connect", () => {
      clearTimeout(t);
      s.destroy();
      resolve({ ok: true, message: `tcp port ${port} accepts connections` });
    });
    s.once("error", (err) => {
      clearTimeout(t);
      resolve({ ok: false, message: `tcp probe to port ${port} failed: ${err.message}` });
    });
  });
}

/** Runs one probe of the workload. */
export function runProbe(p: SnapshotHealthProbe, env: NodeJS.ProcessEnv, cwd?: string): Promise<ProbeResult> {
  const timeoutMs = Math.max(1, p.timeoutSeconds) * 1000;
  switch (p.kind) {
    case "exec":
      return execProbe(p.command, timeoutMs, env, cwd);
    case "http":
      return httpProbe(p.url, timeoutMs);
    case "tcp":
      return tcpProbe(p.port, timeoutMs);
  }
}
