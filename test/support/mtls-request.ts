/**
 * One raw HTTPS request to a loopback server with a node's client
 * certificate (or none), answered as status and body bytes. The server's
 * certificate is checked against `caPem`, not its host name (nodes' servers
 * are named by node, not by address). A fresh connection each time.
 */
import https from "node:https";

export interface MtlsAnswer {
  status: number;
  body: Buffer;
}

export interface MtlsCreds {
  caPem: string;
  certPem?: string;
  keyPem?: string;
}

export function mtlsRequest(
  port: number,
  creds: MtlsCreds,
  path: string,
  o: { method?: string; headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<MtlsAnswer> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: "127.0.0.1", port, path, method: o.method ?? "GET", headers: o.headers ?? {}, ca: creds.caPem, cert: creds.certPem, key: creds.keyPem, checkServerIdentity: () => undefined, agent: false, timeout: o.timeoutMs ?? 15_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}
