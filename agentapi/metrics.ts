/**
 * Prometheus metrics of the agent API, all measured by one outermost Koa
 * middleware (so the routes stay free of instrumentation): requests by
 * route template and code, latency by route, enrollments by outcome
 * (created, replayed, or the refusal code), heartbeats accepted and
 * snapshots served; plus scrape-time values of the running parts (long
 * polls held, heartbeat rows written).
 *
 * A request whose client went away before the answer counts with code 499.
 * The route label is the router's template (`/v1/status/:kind`), never
 * the raw path, so a client cannot mint series; unrouted requests share
 * the label "unmatched".
 */
import type Koa from "koa";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";

/** Values read at scrape time from the running agent API. */
export interface AgentApiGaugeSources {
  longPolls: () => number;
  heartbeatRowsWritten: () => number;
}

/** The agent API's metrics on one registry. */
export class AgentApiMetrics {
  readonly requests: Counter<"route" | "method" | "code">;
  readonly duration: Histogram<"route" | "method">;
  readonly enrollments: Counter<"outcome">;
  readonly heartbeats: Counter;
  readonly snapshotsServed: Counter;
  /** Set by the running agent API; zero before. */
  sources: AgentApiGaugeSources = { longPolls: () => 0, heartbeatRowsWritten: () => 0 };
  private rowsSeen = 0;

  constructor(registry: Registry) {
    const registers = [registry];
    this.requests = new Counter({
      name: "fabric_agentapi_requests_total",
      help: "Agent API requests by route template, method and HTTP code.",
      labelNames: ["route", "method", "code"],
      registers,
    });
    this.duration = new Histogram({
      name: "fabric_agentapi_request_duration_seconds",
      help: "Agent API request latency by route template and method (GET /v1/snapshot includes the long poll's wait).",
      labelNames: ["route", "method"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.enrollments = new Counter({
      name: "fabric_agentapi_enrollments_total",
      help: "Enrollment attempts by outcome: created, replayed, or the refusal code (TokenInvalid, TokenExpired, CapabilityMissing, RateLimited, ...).",
      labelNames: ["outcome"],
      registers,
    });
    this.heartbeats = new Counter({ name: "fabric_agentapi_heartbeats_received_total", help: "Heartbeats accepted (queued for the next batch write).", registers });
    this.snapshotsServed = new Counter({ name: "fabric_agentapi_snapshots_served_total", help: "Signed snapshots sent to agents (answers 200 to GET /v1/snapshot).", registers });
    const sources = (): AgentApiGaugeSources => this.sources;
    new Gauge({
      name: "fabric_agentapi_long_polls",
      help: "Snapshot long polls held right now.",
      registers,
      collect() {
        this.set(sources().longPolls());
      },
    });
    // A counter fed from the batcher's running total at scrape time.
    const rows = (): number => {
      const now = sources().heartbeatRowsWritten();
      const delta = Math.max(0, now - this.rowsSeen);
      this.rowsSeen = Math.max(this.rowsSeen, now);
      return delta;
    };
    new Counter({
      name: "fabric_agentapi_heartbeat_rows_written_total",
      help: "Heartbeat rows written to PostgreSQL by the batcher.",
      registers,
      collect() {
        this.inc(rows());
      },
    });
  }

  /** The outermost middleware: measures every request, whatever the routes answer or throw. */
  middleware(): Koa.Middleware {
    return async (ctx, next) => {
      const started = process.hrtime.bigint();
      try {
        await next();
      } finally {
        const matched = (ctx as { _matchedRoute?: unknown })._matchedRoute;
        const route = typeof matched === "string" ? matched : "unmatched";
        // A client that went away (a long poll given up) gets nothing: 499, as nginx logs it.
        const code = ctx.res.destroyed || ctx.req.socket.destroyed ? 499 : ctx.status;
        this.requests.inc({ route, method: ctx.method, code: String(code) });
        this.duration.observe({ route, method: ctx.method }, Number(process.hrtime.bigint() - started) / 1e9);
        if (route === "/v1/enroll" && ctx.method === "POST") this.enrollments.inc({ outcome: enrollOutcome(ctx.status, ctx.body) });
        else if (route === "/v1/heartbeat" && ctx.status === 202) this.heartbeats.inc();
        else if (route === "/v1/snapshot" && ctx.status === 200) this.snapshotsServed.inc();
      }
    };
  }
}

function enrollOutcome(status: number, body: unknown): string {
  if (status === 201) return "created";
  if (status === 200) return "replayed";
  const code = (body as { error?: { code?: unknown } } | undefined)?.error?.code;
  return typeof code === "string" ? code : `http_${status}`;
}

const byRegistry = new WeakMap<Registry, AgentApiMetrics>();

/** The agent API metrics of a registry, created on first use. */
export function agentApiMetrics(registry: Registry): AgentApiMetrics {
  let m = byRegistry.get(registry);
  if (m === undefined) {
    m = new AgentApiMetrics(registry);
    byRegistry.set(registry, m);
  }
  return m;
}
