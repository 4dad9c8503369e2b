/**
 * An update-cache node's mirror and server (docs/releases.md "Update
 * caches"), for one membership holding the `update-cache` role:
 *
 * - mirror: the verified snapshot's `updateCache.artifacts` (digest and
 *   length of the artifacts of verified releases assigned in this cluster)
 *   are downloaded with fetchArtifact (Range resume, length cap, sha256)
 *   into `<membership dir>/update-cache/sha256/<sha256>`; what the snapshot
 *   no longer names is deleted; a failed download is retried.
 * - server: HTTPS with mutual TLS on the node's certificate. A client must
 *   present a certificate that chains to the cluster CA (TLS refuses the
 *   handshake otherwise) and names a node of this cluster (403).
 *   `GET|HEAD /v1/artifacts/<sha256>` serves a file only when the snapshot
 *   names the digest and the mirror holds it complete and verified (404
 *   otherwise), with one `Range: bytes=` range (206; 416 outside; 400 for
 *   anything else, several ranges included). Nothing is ever served by
 *   name or version: a fetching agent checks length and hash against its
 *   own signed manifest.
 * - report: the endpoint is sent as status kind `update-cache`
 *   ({ endpoint }); the control plane hands it, with this node's pin, to
 *   the nodes of the cluster that have release assignments.
 *
 * The role withdrawn (no `updateCache` part), the server closes and the
 * mirror is emptied.
 */
import { X509Certificate } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, readdir, rm, stat } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import https from "node:https";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import type { StatusReport } from "../../lib/agent-protocol.js";
import { verifyNodeCertificate } from "../../lib/crypto/x509.js";
import { parseByteRange } from "../../lib/http-range.js";
import type { Logger } from "../../lib/log.js";
import type { SnapshotUpdateCache } from "../../lib/snapshot/format.js";
import { fetchArtifact, type ArtifactClient } from "./fetch.js";

const PATH = /^\/v1\/artifacts\/([a-f0-9]{64})$/;
const RETRY_MS = 2000;

export interface UpdateCacheOptions {
  /** The membership directory. */
  dir: string;
  identity: { cluster: string; node: string; caPem: string; certPem: string; keyPem: string };
  /** Port to listen on (0: ephemeral). */
  port: number;
  /** Address to bind (default 0.0.0.0). */
  host?: string;
  /** `ip:port` to report (port 0: the bound port); default the first non-internal IPv4 of the host, else 127.0.0.1. */
  advertise?: string;
  /** The control-plane client the mirror downloads with. */
  client: () => Promise<ArtifactClient & { close?: () => void }>;
  send: (r: StatusReport) => Promise<void>;
  log: Logger;
}

/** See the module comment. */
export class UpdateCache {
  private named = new Map<string, number>();
  private server: https.Server | undefined;
  private port = 0;
  private reported: string | undefined;
  private mirroring: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Bytes served per client node (for status and tests). */
  readonly servedBytes = new Map<string, number>();
  readonly store: string;

  constructor(private readonly o: UpdateCacheOptions) {
    this.store = join(o.dir, "update-cache", "sha256");
  }

  /** The endpoint reported, once the server listens. */
  get endpoint(): string | undefined {
    return this.reported;
  }

  /** A verified snapshot's `updateCache` part (undefined: the role is gone). */
  async apply(part: SnapshotUpdateCache | undefined): Promise<void> {
    if (this.stopped) return;
    this.named = new Map((part?.artifacts ?? []).map((a) => [a.sha256, a.length] as const));
    if (part === undefined) {
      await this.closeServer();
      await rm(join(this.o.dir, "update-cache"), { recursive: true, force: true });
      return;
    }
    await mkdir(this.store, { recursive: true, mode: 0o700 });
    if (this.server === undefined) await this.listen();
    if (this.reported === undefined) this.report();
    this.kick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    await this.closeServer();
    await this.mirroring?.catch(() => undefined);
  }

  private kick(): void {
    if (this.stopped) return;
    if (this.mirroring !== undefined) {
      this.again = true;
      return;
    }
    this.mirroring = (async () => {
      do {
        this.again = false;
        const ok = await this.mirrorOnce();
        if (!ok && this.timer === undefined && !this.stopped) {
          this.timer = setTimeout(() => {
            this.timer = undefined;
            this.kick();
          }, RETRY_MS);
          this.timer.unref();
        }
      } while (this.again && !this.stopped);
    })().finally(() => {
      this.mirroring = undefined;
    });
  }

  /** One pass: prune, then download what is missing. True when everything named is held. */
  private async mirrorOnce(): Promise<boolean> {
    for (const f of await readdir(this.store).catch(() => [] as string[])) {
      const sha = f.endsWith(".partial") ? f.slice(0, -".partial".length) : f;
      if (!this.named.has(sha)) await rm(join(this.store, f), { force: true });
    }
    let all = true;
    let client: (ArtifactClient & { close?: () => void }) | undefined;
    try {
      for (const [sha256, length] of this.named) {
        if (this.stopped) return false;
        if ((await stat(join(this.store, sha256)).catch(() => undefined))?.size === length) continue;
        try {
          client ??= await this.o.client();
          await fetchArtifact(client, { sha256, length }, this.store);
          this.o.log.info("update cache mirrored an artifact", { sha256, length });
        } catch (err) {
          all = false;
          this.o.log.warn("update cache could not mirror an artifact; will retry", { sha256, err });
        }
      }
    } finally {
      client?.close?.();
    }
    return all;
  }

  private async listen(): Promise<void> {
    const ca = new X509Certificate(this.o.identity.caPem);
    const server = https.createServer({ key: this.o.identity.keyPem, cert: this.o.identity.certPem, ca: this.o.identity.caPem, requestCert: true, rejectUnauthorized: true, maxHeaderSize: 8192 }, (req, res) => {
      this.handle(req, res, ca).catch((err: unknown) => {
        this.o.log.warn("update cache request failed", { err });
        if (!res.headersSent) answer(res, 500, "internal error");
        else res.destroy();
      });
    });
    server.headersTimeout = 10_000;
    server.requestTimeout = 0;
    server.on("tlsClientError", () => undefined);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.o.port, this.o.host ?? "0.0.0.0", () => {
        server.off("error", reject);
        resolve();
      });
    });
    const addr = server.address();
    this.port = typeof addr === "object" && addr !== null ? addr.port : this.o.port;
    this.server = server;
    this.o.log.info("update cache listening", { port: this.port });
  }

  private async closeServer(): Promise<void> {
    const s = this.server;
    if (s === undefined) return;
    this.server = undefined;
    this.reported = undefined;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }

  private report(): void {
    const endpoint = advertised(this.o.advertise, this.port);
    this.o
      .send({ version: Date.now(), body: { endpoint } })
      .then(() => {
        this.reported = endpoint;
        this.o.log.info("update cache endpoint reported", { endpoint });
      })
      .catch((err: unknown) => {
        this.o.log.warn("update cache endpoint report failed; will retry", { err });
        if (this.stopped) return;
        setTimeout(() => {
          if (this.server !== undefined && this.reported === undefined) this.report();
        }, RETRY_MS).unref();
      });
  }

  private async handle(req: IncomingMessage, res: ServerResponse, ca: X509Certificate): Promise<void> {
    const peer = (req.socket as TLSSocket).getPeerCertificate();
    let node: string;
    try {
      const v = verifyNodeCertificate(new X509Certificate(peer.raw), ca, new Date());
      if (v.cluster !== this.o.identity.cluster) throw new Error(`a node of cluster ${v.cluster}`);
      node = v.node;
    } catch (err) {
      answer(res, 403, `client refused: ${(err as Error).message}`);
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("Allow", "GET, HEAD");
      answer(res, 405, "only GET and HEAD");
      return;
    }
    const m = PATH.exec(req.url ?? "");
    if (m === null) {
      answer(res, 400, "the path must be /v1/artifacts/<64 lowercase hex digits>");
      return;
    }
    const sha256 = m[1] as string;
    const length = this.named.get(sha256);
    const path = join(this.store, sha256);
    if (length === undefined || (await stat(path).catch(() => undefined))?.size !== length) {
      answer(res, 404, "this cache does not hold that artifact");
      return;
    }
    const range = parseByteRange(req.headers.range, length);
    if (range === "malformed") {
      answer(res, 400, "Range must be one bytes=start-end, bytes=start- or bytes=-suffix");
      return;
    }
    if (range === "unsatisfiable") {
      res.setHeader("Content-Range", `bytes */${length}`);
      answer(res, 416, "range outside the artifact");
      return;
    }
    res.setHeader("Accept-Ranges", "bytes");
    res.setHeader("Content-Type", "application/octet-stream");
    res.setHeader("ETag", `"${sha256}"`);
    if (range !== undefined) {
      res.statusCode = 206;
      res.setHeader("Content-Range", `bytes ${range.start}-${range.end}/${length}`);
      res.setHeader("Content-Length", range.end - range.start + 1);
    } else {
      res.statusCode = 200;
      res.setHeader("Content-Length", length);
    }
    if (req.method === "HEAD") {
      res.end();
      return;
    }
    const stream = createReadStream(path, range === undefined ? { highWaterMark: 256 * 1024 } : { start: range.start, end: range.end, highWaterMark: 256 * 1024 });
    let sent = 0;
    stream.on("data", (c: Buffer | string) => (sent += c.length));
    stream.on("error", () => res.destroy());
    res.on("close", () => {
      stream.destroy();
      this.servedBytes.set(node, (this.servedBytes.get(node) ?? 0) + sent);
      this.o.log.info("update cache served", { client: node, sha256, bytes: sent, ...(range !== undefined ? { from: range.start } : {}) });
    });
    stream.pipe(res);
  }
}

function answer(res: ServerResponse, status: number, message: string): void {
  res.statusCode = status;
  res.setHeader("Content-Type", "text/plain; charset=utf-8");
  res.end(`${message}\n`);
}

/** The endpoint to report: the flag (port 0 = bound port), or the host's first non-internal IPv4. */
export function advertised(flag: string | undefined, port: number): string {
  if (flag !== undefined) {
    const m = /^(.*):(\d{1,5})$/.exec(flag);
    if (m === null) throw new Error(`update cache advertise ${JSON.stringify(flag)} is not ip:port`);
    return `${m[1]}:${m[2] === "0" ? port : m[2]}`;
  }
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return `${a.address}:${port}`;
  }
  return `127.0.0.1:${port}`;
}
