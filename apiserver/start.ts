/**
 * Starts the kube-compatible API server: serving certificate, admin
 * credential, kubeconfig, storage, watch fan-out, history compaction and the
 * namespace lifecycle.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync, renameSync } from "node:fs";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type pg from "pg";
import type client from "prom-client";
import { stringify as toYaml } from "yaml";
import type { CertBundle } from "../lib/crypto/pki.js";
import { createEcCertificateAuthority, issueEcServingCertificate } from "../lib/crypto/ec-certs.js";
import type { Logger } from "../lib/log.js";
import { OpenApiDocs } from "./discovery.js";
import { kubeTime, type KubeObject } from "./object.js";
import { loadCrds, Registry } from "./registry.js";
import { ResourceHandler } from "./rest/handler.js";
import { ADMIN_USER, apiMetrics, createApp } from "./server.js";
import { ArtifactStore } from "../lib/state/artifacts.js";
import { Store } from "./store.js";
import { WatchHub } from "./watch-hub.js";

/** Options of the API server. */
export interface ApiServerOptions {
  stateDir: string;
  pool: pg.Pool;
  databaseUrl: string;
  host?: string;
  port: number;
  metrics: client.Registry;
  log: Logger;
  crdDir?: string;
  /** Watch history kept for resumption (events / seconds). */
  watchHistoryEvents?: number;
  watchHistorySeconds?: number;
  compactIntervalMs?: number;
  bookmarkIntervalMs?: number;
  maxBodyBytes?: number;
  /** Largest artifact the version store accepts (default 4 GiB). */
  maxArtifactBytes?: number;
}

/** A running API server. */
export interface ApiServer {
  url: string;
  port: number;
  kubeconfigPath: string;
  adminToken: string;
  caPem: string;
  store: Store;
  hub: WatchHub;
  registry: Registry;
  /** What /readyz answers: serving, and the watch hub's PostgreSQL listener connected. */
  ready(): boolean;
  /** Compacts watch history now (tests use it to provoke 410 Gone). */
  compact(keepEvents: number, keepSeconds: number): Promise<number>;
  stop(): Promise<void>;
}

function writeFileAtomic(path: string, data: string, mode: number): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode });
  renameSync(tmp, path);
}

/** Loads or creates the API server's CA, serving certificate and admin token in `dir`. */
export function loadOrCreateCredentials(dir: string, host: string): { ca: CertBundle; serving: CertBundle; token: string } {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const p = (f: string) => join(dir, f);
  let ca: CertBundle;
  if (existsSync(p("ca.crt")) && existsSync(p("ca.key"))) {
    ca = { certPem: readFileSync(p("ca.crt"), "utf8"), keyPem: readFileSync(p("ca.key"), "utf8") };
  } else {
    // ECDSA P-256 through Node's crypto: instant, where an RSA key from
    // node-forge cost ~0.2 s of every first start. An existing (RSA) CA is kept.
    ca = createEcCertificateAuthority("access-fabric-apiserver-ca");
    writeFileAtomic(p("ca.key"), ca.keyPem, 0o600);
    writeFileAtomic(p("ca.crt"), ca.certPem, 0o644);
  }
  let serving: CertBundle;
  if (existsSync(p("serving.crt")) && existsSync(p("serving.key"))) {
    serving = { certPem: readFileSync(p("serving.crt"), "utf8"), keyPem: readFileSync(p("serving.key"), "utf8") };
  } else {
    const ips = ["127.0.0.1", "::1"];
    if (host !== "0.0.0.0" && host !== "127.0.0.1" && /^[\d.]+$/.test(host)) ips.push(host);
    serving = issueEcServingCertificate(ca, "access-fabric-apiserver", ["localhost", "fabric-apiserver"], ips);
    writeFileAtomic(p("serving.key"), serving.keyPem, 0o600);
    writeFileAtomic(p("serving.crt"), serving.certPem, 0o644);
  }
  let token: string;
  if (existsSync(p("admin-token"))) token = readFileSync(p("admin-token"), "utf8").trim();
  else {
    token = randomBytes(32).toString("base64url");
    writeFileAtomic(p("admin-token"), token + "\n", 0o600);
  }
  return { ca, serving, token };
}

/** A kubeconfig for the admin user. */
export function kubeconfigYaml(server: string, caPem: string, token: string): string {
  return toYaml({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "fabric", cluster: { server, "certificate-authority-data": Buffer.from(caPem).toString("base64") } }],
    users: [{ name: ADMIN_USER, user: { token } }],
    contexts: [{ name: "fabric", context: { cluster: "fabric", user: ADMIN_USER } }],
    "current-context": "fabric",
    preferences: {},
  });
}

const bootstrapNamespaces = ["default", "kube-system", "kube-public", "kube-node-lease"];

/** Starts the API server. */
export async function startApiServer(o: ApiServerOptions): Promise<ApiServer> {
  const host = o.host ?? "127.0.0.1";
  const log = o.log;
  const creds = loadOrCreateCredentials(join(o.stateDir, "pki", "apiserver"), host);
  const registry = new Registry(loadCrds(o.crdDir));
  const store = new Store(o.pool);
  const hub = new WatchHub(store, o.databaseUrl, log.with({ part: "watch" }));
  await hub.start();
  const watchGauge = apiMetrics;
  void watchGauge;
  let openWatches = 0;
  const handler = new ResourceHandler(
    store,
    hub,
    {
      maxBodyBytes: o.maxBodyBytes ?? 3 * 1024 * 1024,
      bookmarkIntervalMs: o.bookmarkIntervalMs ?? 10_000,
      watchTimeoutMs: 30 * 60_000,
    },
    (d) => {
      openWatches += d;
    },
  );
  await bootstrap(store, handler, registry);

  const artifacts = new ArtifactStore(o.pool, o.stateDir, o.maxArtifactBytes);
  artifacts.sweepTemporary();
  let address = "";
  let ready = false;
  const app = createApp({
    registry,
    handler,
    openapi: new OpenApiDocs(),
    adminToken: creds.token,
    metrics: o.metrics,
    log,
    serverAddress: () => address,
    // Ready: started, not stopping, and the watch hub holds its LISTEN
    // connection to PostgreSQL (lost when the database goes away; the hub
    // reconnects on its own), as kube-apiserver's readyz includes etcd.
    ready: () => ready && hub.connected(),
    artifacts,
  });
  const gauge = o.metrics.getSingleMetric("apiserver_registered_watchers");
  if (gauge && "set" in gauge) {
    const g = gauge as client.Gauge;
    const t = setInterval(() => g.set(openWatches), 1000);
    t.unref();
  }
  const server = https.createServer({ cert: creds.serving.certPem, key: creds.serving.keyPem }, app.callback());
  server.keepAliveTimeout = 65_000;
  server.requestTimeout = 0;
  // closeAllConnections() only knows connections that carried an HTTP request;
  // a TLS connection that never sent one would keep close() waiting.
  const sockets = new Set<import("node:net").Socket>();
  server.on("connection", (sock: import("node:net").Socket) => {
    sockets.add(sock);
    sock.once("close", () => sockets.delete(sock));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  address = `${host === "0.0.0.0" ? "127.0.0.1" : host}:${port}`;
  const url = `https://${address}`;
  const kubeconfigPath = join(o.stateDir, "kubeconfig");
  writeFileAtomic(kubeconfigPath, kubeconfigYaml(url, creds.ca.certPem, creds.token), 0o600);

  const compactTimer = setInterval(() => {
    store.compact(o.watchHistoryEvents ?? 100_000, o.watchHistorySeconds ?? 900).catch((err: unknown) => log.warn("compacting watch history failed", { err }));
  }, o.compactIntervalMs ?? 30_000);
  compactTimer.unref();
  let sweeping = false;
  const nsTimer = setInterval(() => {
    if (sweeping) return;
    sweeping = true;
    sweepTerminatingNamespaces(store, handler, registry, log)
      .catch((err: unknown) => log.warn("namespace cleanup failed", { err }))
      .finally(() => (sweeping = false));
  }, 1000);
  nsTimer.unref();
  ready = true;

  return {
    url,
    port,
    kubeconfigPath,
    adminToken: creds.token,
    caPem: creds.ca.certPem,
    store,
    hub,
    registry,
    ready: () => ready && hub.connected(),
    compact: (keepEvents, keepSeconds) => store.compact(keepEvents, keepSeconds),
    async stop() {
      ready = false;
      clearInterval(compactTimer);
      clearInterval(nsTimer);
      server.closeAllConnections();
      for (const sock of sockets) sock.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await hub.stop();
    },
  };
}

async function bootstrap(store: Store, _handler: ResourceHandler, _registry: Registry): Promise<void> {
  for (const name of bootstrapNamespaces) {
    await store.mutate({ group: "", plural: "namespaces", namespace: "", name }, (cur) => {
      if (cur) return { type: "noop", object: cur };
      const obj: KubeObject = {
        apiVersion: "v1",
        kind: "Namespace",
        metadata: { name, creationTimestamp: kubeTime(), labels: { "kubernetes.io/metadata.name": name } },
        spec: { finalizers: ["kubernetes"] },
        status: { phase: "Active" },
      };
      return { type: "create", object: obj };
    });
  }
}

/** Deletes the contents of terminating namespaces, then the namespaces themselves. */
async function sweepTerminatingNamespaces(store: Store, handler: ResourceHandler, registry: Registry, log: Logger): Promise<void> {
  const nss = await store.list("", "namespaces", {});
  for (const ns of nss.items) {
    if (!ns.metadata.deletionTimestamp) continue;
    const name = ns.metadata.name ?? "";
    const keys = await store.keysInNamespace(name);
    for (const k of keys) {
      const def = registry.defs.find((d) => d.group === k.group && d.plural === k.plural);
      if (!def) continue;
      await handler.deleteOne(k, def).catch((err: unknown) => log.debug("deleting namespaced object failed", { err, name: k.name }));
    }
    if (keys.length === 0) {
      await store.mutate({ group: "", plural: "namespaces", namespace: "", name }, (cur) =>
        cur ? { type: "delete", object: cur } : { type: "noop", object: ns },
      );
    }
  }
}
