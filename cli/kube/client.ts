/**
 * A small kube API client for fabricctl on node:http(s): JSON in, JSON out,
 * one keep-alive connection pool per process. fabricctl makes a handful of
 * calls per run, so start-up dominates; @kubernetes/client-node takes about
 * a second to import, this takes nothing beyond Node's own modules.
 *
 * A non-2xx answer becomes an {@link ApiError} carrying the reason and
 * message of its metav1.Status body; a transport failure becomes an Error
 * naming the server, with the socket error as its cause.
 */
import http from "node:http";
import https from "node:https";
import { API_VERSION, RESOURCES, type FabricKind } from "../../lib/api/types.generated.js";
import { ApiError, type ApiStatus } from "../errors.js";
import type { KubeTarget } from "./kubeconfig.js";

/** Options of one request. */
export interface RequestOptions {
  body?: unknown;
  contentType?: string;
  query?: Record<string, string | undefined>;
}

/** A list answer. */
export interface ObjectList<T> {
  metadata?: { resourceVersion?: string; continue?: string };
  items: T[];
}

/**
 * Reads an answer to its end: resolves with the parsed JSON of a 2xx (undefined
 * when empty or not JSON), rejects with ApiError (the metav1.Status when the
 * body is one, and `message` of it) otherwise.
 */
function settle<T>(
  res: http.IncomingMessage,
  what: string,
  resolve: (v: T) => void,
  reject: (e: Error) => void,
  message: (status: number, body: ApiStatus | undefined, text: string) => string,
): void {
  const chunks: Buffer[] = [];
  res.on("data", (c: Buffer) => chunks.push(c));
  res.on("error", (cause) => reject(new Error(`reading the answer of ${what}`, { cause })));
  res.on("end", () => {
    const text = Buffer.concat(chunks).toString("utf8");
    const status = res.statusCode ?? 0;
    let parsed: unknown;
    try {
      parsed = text === "" ? undefined : JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    if (status >= 200 && status < 300) {
      resolve(parsed as T);
      return;
    }
    const body = typeof parsed === "object" && parsed !== null && (parsed as { kind?: unknown }).kind === "Status" ? (parsed as ApiStatus) : undefined;
    reject(new ApiError(status, body, message(status, body, text)));
  });
}

/** The kube API as fabricctl uses it. */
export class KubeClient {
  readonly server: string;
  private readonly agent: http.Agent;
  private readonly url: URL;

  constructor(private readonly target: KubeTarget) {
    this.server = target.server;
    this.url = new URL(target.server);
    this.agent =
      this.url.protocol === "https:"
        ? new https.Agent({ keepAlive: true, maxSockets: 4, ca: target.ca, cert: target.cert, key: target.key, rejectUnauthorized: !target.insecureSkipTlsVerify })
        : new http.Agent({ keepAlive: true, maxSockets: 4 });
  }

  /** Closes idle connections so the process can exit. */
  close(): void {
    this.agent.destroy();
  }

  /** One call; resolves with the parsed JSON body of a 2xx answer. */
  request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const q = Object.entries(opts.query ?? {}).filter((e): e is [string, string] => e[1] !== undefined);
    const fullPath = `${this.url.pathname.replace(/\/$/, "")}${path}${q.length > 0 ? `?${new URLSearchParams(q).toString()}` : ""}`;
    const payload = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
    const headers: http.OutgoingHttpHeaders = { Accept: "application/json", "User-Agent": "fabricctl" };
    if (this.target.authorization !== undefined) headers.Authorization = this.target.authorization;
    if (payload !== undefined) {
      headers["Content-Type"] = opts.contentType ?? "application/json";
      headers["Content-Length"] = payload.length;
    }
    const mod = this.url.protocol === "https:" ? https : http;
    return new Promise<T>((resolve, reject) => {
      const req = mod.request(
        { protocol: this.url.protocol, hostname: this.url.hostname, port: this.url.port, method, path: fullPath, headers, agent: this.agent },
        (res) =>
          settle(res, `${method} ${path}`, resolve, reject, (status, body, text) => `${method} ${path}: HTTP ${status}${text !== "" && body === undefined ? ` ${text.slice(0, 200)}` : ""}`),
      );
      req.on("error", (cause) => reject(new Error(`cannot reach the API server ${this.server}`, { cause })));
      req.end(payload);
    });
  }

  /**
   * PUTs `length` bytes from a stream (an artifact upload); `onSent` is
   * called with the bytes written so far. Resolves with the parsed JSON answer
   * of a 2xx, rejects with ApiError otherwise.
   */
  putStream<T>(path: string, body: NodeJS.ReadableStream, length: number, onSent?: (sent: number) => void): Promise<T> {
    const headers: http.OutgoingHttpHeaders = { Accept: "application/json", "User-Agent": "fabricctl", "Content-Type": "application/octet-stream", "Content-Length": length };
    if (this.target.authorization !== undefined) headers.Authorization = this.target.authorization;
    const mod = this.url.protocol === "https:" ? https : http;
    const fullPath = `${this.url.pathname.replace(/\/$/, "")}${path}`;
    return new Promise<T>((resolve, reject) => {
      const req = mod.request({ protocol: this.url.protocol, hostname: this.url.hostname, port: this.url.port, method: "PUT", path: fullPath, headers, agent: this.agent }, (res) =>
        settle(res, `PUT ${path}`, resolve, reject, (status, st) => `PUT ${path}: HTTP ${status}${st?.message ? `: ${st.message}` : ""}`),
      );
      req.on("error", (cause) => reject(new Error(`cannot reach the API server ${this.server}`, { cause })));
      let sent = 0;
      body.on("data", (c: Buffer) => {
        sent += c.length;
        onSent?.(sent);
      });
      body.on("error", (err) => req.destroy(err instanceof Error ? err : new Error(String(err))));
      body.pipe(req);
    });
  }

  /** Path of a cluster-scoped fabric resource (or one object of it). */
  fabricPath(kind: FabricKind, name?: string): string {
    const r = RESOURCES[kind];
    return `/apis/${r.group}/${r.version}/${r.plural}${name !== undefined ? `/${encodeURIComponent(name)}` : ""}`;
  }

  /** GET one fabric object. */
  get<T>(kind: FabricKind, name: string): Promise<T> {
    return this.request<T>("GET", this.fabricPath(kind, name));
  }

  /** Lists every object of a fabric kind (following `continue` when the server pages). */
  async list<T>(kind: FabricKind, labelSelector?: string): Promise<T[]> {
    const items: T[] = [];
    let cont: string | undefined;
    do {
      const page = await this.request<ObjectList<T>>("GET", this.fabricPath(kind), { query: { labelSelector, continue: cont } });
      items.push(...(page.items ?? []));
      cont = page.metadata?.continue || undefined;
    } while (cont !== undefined);
    return items;
  }

  /** POSTs a new fabric object. */
  create<T>(kind: FabricKind, name: string, spec: Record<string, unknown>): Promise<T> {
    return this.request<T>("POST", this.fabricPath(kind), { body: { apiVersion: API_VERSION, kind, metadata: { name }, spec } });
  }

  /** DELETEs a fabric object. */
  delete(kind: FabricKind, name: string): Promise<unknown> {
    return this.request("DELETE", this.fabricPath(kind, name));
  }

  /** JSON merge patch of a fabric object. */
  mergePatch<T>(kind: FabricKind, name: string, patch: Record<string, unknown>): Promise<T> {
    return this.request<T>("PATCH", this.fabricPath(kind, name), { body: patch, contentType: "application/merge-patch+json" });
  }

  /** GET a namespaced object of the core or another built-in group (`v1`, `coordination.k8s.io/v1`). */
  getNamespaced<T>(groupVersion: string, plural: string, namespace: string, name: string): Promise<T> {
    const prefix = groupVersion === "v1" ? "/api/v1" : `/apis/${groupVersion}`;
    return this.request<T>("GET", `${prefix}/namespaces/${encodeURIComponent(namespace)}/${plural}/${encodeURIComponent(name)}`);
  }
}
