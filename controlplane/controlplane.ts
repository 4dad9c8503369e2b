/**
 * The composition root of `bin/fabric-controlplane`: the one place that starts
 * the parts of the control plane and hands each what it needs. It opens the
 * database, starts the API server and the metrics endpoint, then, when asked,
 * the controllers (against this process's own API server, through a
 * kubeconfig like any client) and the agent API (given the controllers'
 * certificate issuer for renewals). The parts never import one another; they
 * meet here, through the Kubernetes API and through the state layer
 * (docs/architecture.md, "Import boundaries").
 */
import { CoreV1Api, CustomObjectsApi } from "@kubernetes/client-node";
import client from "prom-client";
import { publishAgentApiInfo } from "../agentapi/discovery.js";
import type { RateLimit } from "../agentapi/rate-limit.js";
import { startAgentApi, type AgentApi } from "../agentapi/server.js";
import { kubeSecretReader } from "../agentapi/vpn-routes.js";
import { startApiServer, type ApiServer } from "../apiserver/start.js";
import { startControllers, type ControllersOptions, type RunningControllers } from "../controllers/main.js";
import { kekFileOf, loadKek } from "../lib/crypto/kek.js";
import { openDatabase, type Database } from "../lib/db/database.js";
import { createPool } from "../lib/db/pool.js";
import { EventRecorder, coreV1EventSink } from "../lib/kube/events.js";
import { loadKubeConfig } from "../lib/kube/kubeconfig.js";
import type { Logger } from "../lib/log.js";
import { startMetricsServer } from "./metrics-server.js";

/** Options of {@link runControlPlane}. */
export interface ControlPlaneOptions {
  stateDir: string;
  host: string;
  port: number;
  metricsPort: number;
  databaseUrl?: string;
  fsync: boolean;
  log: Logger;
  watchHistoryEvents?: number;
  compactIntervalMs?: number;
  bookmarkIntervalMs?: number;
  /** Run the controllers in this process against its own API server (the CLI's default); off when absent. */
  controllers?: ControlPlaneControllers;
  /** Run the agent-facing HTTPS API on this port (0: ephemeral); off when absent. */
  agentPort?: number;
  /** Agent API tuning (rate limits, extra serving-certificate names, renewal grace after expiry). */
  agentApi?: { rateLimit?: RateLimit; failureRateLimit?: RateLimit; serverNames?: string[]; renewGraceMs?: number };
}

/**
 * Controller settings of an embedded control plane. The KEK comes from
 * FABRIC_KEK or `<state-dir>/pki/kek` (created on first start).
 */
export type ControlPlaneControllers = Pick<ControllersOptions, "identity" | "lease" | "informer" | "workers" | "sweepIntervalMs" | "enrollment" | "nodeHealth" | "snapshots">;

/** A running control plane. */
export interface ControlPlane {
  api: ApiServer;
  db: Database;
  metricsUrl: string;
  /** The controllers, when enabled. */
  controllers?: RunningControllers;
  /** The agent API, when enabled. */
  agentApi?: AgentApi;
  stop(): Promise<void>;
}

/** Starts everything; logs one "control plane ready" line with the addresses. */
export async function runControlPlane(o: ControlPlaneOptions): Promise<ControlPlane> {
  const started = Date.now();
  const metrics = new client.Registry();
  client.collectDefaultMetrics({ register: metrics });
  const db = await openDatabase({ stateDir: o.stateDir, databaseUrl: o.databaseUrl, fsync: o.fsync, log: o.log.with({ part: "db" }), maxConnections: 20 });
  let api: ApiServer;
  try {
    api = await startApiServer({
      stateDir: o.stateDir,
      pool: db.pool,
      databaseUrl: db.url,
      host: o.host,
      port: o.port,
      metrics,
      log: o.log.with({ part: "apiserver" }),
      watchHistoryEvents: o.watchHistoryEvents,
      compactIntervalMs: o.compactIntervalMs,
      bookmarkIntervalMs: o.bookmarkIntervalMs,
    });
  } catch (err) {
    await db.close();
    throw err;
  }
  const metricsServer = await startMetricsServer(metrics, o.metricsPort, { ready: () => api.ready() });
  const metricsUrl = metricsServer.url;
  let controllers: RunningControllers | undefined;
  if (o.controllers !== undefined) {
    const kubeConfig = loadKubeConfig(api.kubeconfigPath);
    controllers = startControllers({
      ...o.controllers,
      kubeConfig,
      pool: db.pool,
      kek: loadKek({ file: kekFileOf(o.stateDir), createIfMissing: true }),
      registry: metrics,
      log: o.log.with({ part: "controllers" }),
    });
  }
  let agentApi: AgentApi | undefined;
  let agentPool: ReturnType<typeof createPool> | undefined;
  let agentEvents: EventRecorder | undefined;
  if (o.agentPort !== undefined) {
    agentPool = createPool(db.url, { max: 8 });
    const kc = loadKubeConfig(api.kubeconfigPath);
    const actor = `agentapi/${o.controllers?.identity ?? "controlplane"}`;
    agentEvents = new EventRecorder({ sink: coreV1EventSink(kc.makeApiClient(CoreV1Api)), component: "fabric-agentapi", host: actor, registry: metrics, log: o.log.with({ part: "agentapi-events" }) });
    const running = controllers;
    agentApi = await startAgentApi({
      stateDir: o.stateDir,
      host: o.host,
      port: o.agentPort,
      pool: agentPool,
      api: kc.makeApiClient(CustomObjectsApi),
      actor,
      log: o.log.with({ part: "agentapi" }),
      metrics,
      events: agentEvents,
      ...o.agentApi,
      renewal: running === undefined ? undefined : { issuer: running.issuer, nodes: running.nodes, onRenewed: (n) => running.enqueueNode(n) },
      vpn: running === undefined ? undefined : { fence: running.fence, readSecret: kubeSecretReader(kc.makeApiClient(CoreV1Api)), onChange: (c) => running.enqueueVpnConnection(c) },
    });
    await publishAgentApiInfo(kc, agentApi, o.log.with({ part: "agentapi" }));
  }
  o.log.info("control plane ready", {
    api: api.url,
    kubeconfig: api.kubeconfigPath,
    metrics: metricsUrl,
    agentApi: agentApi?.url,
    agentApiCaHash: agentApi?.caHash,
    database: db.embedded ? "embedded" : "external",
    startupMs: Date.now() - started,
  });
  return {
    api,
    db,
    metricsUrl,
    controllers,
    agentApi,
    async stop() {
      // Each step is bounded: one component that fails to let go must not
      // keep SIGTERM from stopping the process (PostgreSQL last, always).
      const step = async (name: string, fn: () => Promise<unknown>, ms = 10_000): Promise<void> => {
        let timer: NodeJS.Timeout | undefined;
        const timedOut = new Promise<"timeout">((resolve) => {
          timer = setTimeout(() => resolve("timeout"), ms);
          timer.unref();
        });
        try {
          const r = await Promise.race([fn().then(() => "done" as const), timedOut]);
          if (r === "timeout") o.log.warn("shutdown step timed out; continuing", { step: name, ms });
        } catch (err) {
          o.log.warn("shutdown step failed; continuing", { step: name, err });
        } finally {
          clearTimeout(timer);
        }
      };
      await step("agent API", async () => agentApi?.stop());
      await step("agent API events", async () => agentEvents?.stop(), 5_000);
      await step("agent API pool", async () => agentPool?.end(), 5_000);
      await step("controllers", async () => controllers?.stop(), 30_000);
      await step("metrics server", () => metricsServer.stop(), 5_000);
      await step("API server", () => api.stop(), 10_000);
      await db.close();
    },
  };
}
