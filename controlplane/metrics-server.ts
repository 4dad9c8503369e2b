/**
 * The control plane's Prometheus endpoint: plain HTTP `/metrics` on loopback,
 * serving one registry that every part of the process (API server,
 * controllers, Node.js defaults) registers its metrics in.
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

/** Serves `registry` at `/metrics` on 127.0.0.1:`port` (0: ephemeral); any other path is a 404. */
export async function startMetricsServer(registry: Registry, port: number): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    if (req.url === "/metrics") {
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
    }
    res.writeHead(404);
    res.end();
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
