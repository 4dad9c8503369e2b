/**
 * The control plane's Prometheus endpoint: plain HTTP on loopback, serving
 * `/metrics` from one registry that every part of the process (API server,
 * controllers, agent API, Node.js defaults) registers its metrics in, and
 * the same health endpoints as the API port, so probes need one
 * convention whichever port they reach: `/livez` and `/healthz` (the
 * process answers) and `/readyz` (it can serve: the API server's own
 * readiness). Health answers are plain text "ok" (200) or "not ready" (503),
 * like kube-apiserver's.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";

/** A listening metrics endpoint. */
export interface MetricsServer {
  /** `http://127.0.0.1:<port>/metrics`. */
  url: string;
  /** Drops open connections and stops listening. */
  stop(): Promise<void>;
}

/** What the health endpoints report. */
export interface HealthChecks {
  /** /readyz: 200 when true, 503 otherwise (default: always ready). */
  ready?: () => boolean;
}

/** Serves `registry` at `/metrics` and the health endpoints on 127.0.0.1:`port` (0: ephemeral); any other path is a 404. */
export async function startMetricsServer(registry: Registry, port: number, checks: HealthChecks = {}): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0]?.replace(/\/+$/, "") || "/";
    const text = (code: number, body: string): void => {
      res.writeHead(code, { "Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store" });
      res.end(body);
    };
    switch (path) {
      case "/metrics":
        registry
          .metrics()
          .then((body) => {
            res.writeHead(200, { "Content-Type": registry.contentType });
            res.end(body);
          })
          .catch(() => {
            res.writeHead(500);
            res.end();
          });
        return;
      case "/healthz":
      case "/livez":
        text(200, "ok");
        return;
      case "/readyz":
        if (checks.ready === undefined || checks.ready()) text(200, "ok");
        else text(503, "not ready");
        return;
      default:
        res.writeHead(404);
        res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", () => resolve()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
