/**
 * The agent's sync routes (lib/agent-protocol.ts): snapshot long poll,
 * heartbeats and generic status reports. Every request is authenticated with
 * the node's client certificate (auth.ts: revoked or superseded identities
 * are refused on every request, and again before a held poll answers), and
 * a node only ever reads its own snapshot.
 */
import { UPDATE_CACHE_STATUS_KIND } from "../lib/agent-protocol.js";
import { validateUpdateCacheReport, type UpdateCacheReport } from "../lib/state/update-cache.js";
import { Router } from "@koa/router";
import type Koa from "koa";
import type pg from "pg";
import {
  DEFAULT_POLL_WAIT_SECONDS,
  MAX_HEARTBEAT_BYTES,
  MAX_MESH_ENDPOINTS,
  MAX_POLL_WAIT_SECONDS,
  MAX_STATUS_REPORT_BYTES,
  MESH_STATUS_KIND,
  SNAPSHOT_SERIAL_HEADER,
  type HeartbeatMesh,
  type HeartbeatRequest,
  type HeartbeatResponse,
} from "../lib/agent-protocol.js";
import { isIP } from "node:net";
import { validateMeshStatusBody } from "./mesh-status-report.js";
import { writeStatusReport } from "../lib/state/heartbeats.js";
import { serialOf, snapshotOf } from "../lib/state/snapshots.js";
import { authenticate, type AuthOptions } from "./auth.js";
import { AgentApiError } from "./errors.js";
import type { HeartbeatBatcher } from "./heartbeat-batcher.js";
import type { SnapshotFeed } from "./snapshot-feed.js";

/** Dependencies of the sync routes. */
export interface NodeRoutesDeps {
  pool: pg.Pool;
  auth: AuthOptions;
  feed: SnapshotFeed;
  heartbeats: HeartbeatBatcher;
  /** Heartbeat interval told to agents (seconds, default 10). */
  heartbeatIntervalSeconds?: number;
}

const KIND = /^[a-z][a-z0-9-]{0,62}$/;

function bad(message: string): AgentApiError {
  return new AgentApiError(400, "InvalidRequest", message);
}

function intParam(v: unknown, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== "string" || !/^\d{1,15}$/.test(v)) throw bad(`${name} must be a non-negative integer`);
  return Number(v);
}

/** Validates a heartbeat body; throws InvalidRequest naming the field. */
export function validateHeartbeat(b: unknown): HeartbeatRequest {
  if (typeof b !== "object" || b === null || Array.isArray(b)) throw bad("body must be a JSON object");
  const o = b as Record<string, unknown>;
  if (typeof o.seq !== "number" || !Number.isSafeInteger(o.seq) || o.seq < 0) throw bad("seq must be a non-negative integer");
  if (typeof o.agentVersion !== "string" || o.agentVersion.length === 0 || o.agentVersion.length > 64) throw bad("agentVersion must be a string of at most 64 characters");
  if (!Array.isArray(o.capabilities) || o.capabilities.length > 128 || !o.capabilities.every((c) => typeof c === "string" && c.length <= 63)) throw bad("capabilities must be a list of at most 128 names");
  if (typeof o.facts !== "object" || o.facts === null || Array.isArray(o.facts)) throw bad("facts must be an object");
  const h = o.health as { status?: unknown; message?: unknown } | undefined;
  if (typeof h !== "object" || h === null || (h.status !== "Healthy" && h.status !== "Degraded")) throw bad("health.status must be Healthy or Degraded");
  if (h.message !== undefined && (typeof h.message !== "string" || h.message.length > 1024)) throw bad("health.message must be a string of at most 1024 characters");
  const out: HeartbeatRequest = {
    seq: o.seq,
    agentVersion: o.agentVersion,
    capabilities: [...new Set(o.capabilities as string[])].sort(),
    facts: o.facts as Record<string, unknown>,
    health: { status: h.status, ...(typeof h.message === "string" ? { message: h.message } : {}) },
  };
  if (o.snapshot !== undefined) {
    const s = o.snapshot as { serial?: unknown; hash?: unknown; appliedAt?: unknown };
    if (typeof s !== "object" || s === null || typeof s.serial !== "number" || !Number.isSafeInteger(s.serial) || typeof s.hash !== "string" || !/^[a-f0-9]{64}$/.test(s.hash) || typeof s.appliedAt !== "string" || !Number.isFinite(Date.parse(s.appliedAt))) {
      throw bad("snapshot must be { serial, hash (sha256 hex), appliedAt }");
    }
    out.snapshot = { serial: s.serial, hash: s.hash, appliedAt: s.appliedAt };
  }
  if (o.mesh !== undefined) out.mesh = validateMesh(o.mesh);
  return out;
}

const MESH_KEYS = new Set(["endpoints", "reachable", "relayCapable", "load"]);

/**
 * Validates a heartbeat's mesh report: endpoints are IP literals (no names,
 * no zone ids, not unspecified or multicast) with ports 1..65535, at most
 * MAX_MESH_ENDPOINTS and no duplicates; load a number in 0..1.
 */
export function validateMesh(m: unknown): HeartbeatMesh {
  if (typeof m !== "object" || m === null || Array.isArray(m)) throw bad("mesh must be an object");
  const o = m as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!MESH_KEYS.has(k)) throw bad(`mesh.${k.slice(0, 32)} is not a known field`);
  if (!Array.isArray(o.endpoints) || o.endpoints.length > MAX_MESH_ENDPOINTS) throw bad(`mesh.endpoints must be a list of at most ${MAX_MESH_ENDPOINTS} endpoints`);
  const endpoints: { address: string; port: number }[] = [];
  const seen = new Set<string>();
  for (const e of o.endpoints as unknown[]) {
    const ep = e as { address?: unknown; port?: unknown } | null;
    if (typeof ep !== "object" || ep === null || Array.isArray(ep)) throw bad("mesh.endpoints[] must be { address, port }");
    const { address, port } = ep;
    if (typeof address !== "string" || address.length > 45 || isIP(address) === 0 || address.includes("%") || isUnusable(address)) throw bad("mesh.endpoints[].address must be a unicast IP address");
    if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) throw bad("mesh.endpoints[].port must be an integer in 1..65535");
    const key = `${address.toLowerCase()}|${port}`;
    if (seen.has(key)) throw bad("mesh.endpoints must not repeat an endpoint");
    seen.add(key);
    endpoints.push({ address: address.toLowerCase(), port });
  }
  if (typeof o.reachable !== "boolean") throw bad("mesh.reachable must be a boolean");
  if (o.relayCapable !== undefined && typeof o.relayCapable !== "boolean") throw bad("mesh.relayCapable must be a boolean");
  if (typeof o.load !== "number" || !Number.isFinite(o.load) || o.load < 0 || o.load > 1) throw bad("mesh.load must be a number in 0..1");
  return { endpoints, reachable: o.reachable, relayCapable: o.relayCapable === true, load: o.load };
}

function isUnusable(address: string): boolean {
  const a = address.toLowerCase();
  return a === "0.0.0.0" || a === "::" || a === "255.255.255.255" || /^2(2[4-9]|3\d)\./.test(a) || a.startsWith("ff");
}

/** The wire form of an endpoint: `host:port`, IPv6 bracketed. */
export function endpointString(e: { address: string; port: number }): string {
  return e.address.includes(":") ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}

/**
 * Every node route acts for the certificate's node only; a request that
 * names another node in `?node=` is refused (403) rather than silently
 * served for the caller, so a confused client learns of its mistake.
 */
function refuseOtherNode(ctx: Koa.Context, node: string, message: string): void {
  const asked = ctx.query.node;
  if (asked !== undefined && asked !== node) throw new AgentApiError(403, "Forbidden", message);
}

/** A cache's endpoint report (lib/state/update-cache.ts), or 400. */
function updateCacheBody(body: unknown): UpdateCacheReport {
  const v = validateUpdateCacheReport(body);
  if (typeof v === "string") throw bad(`update-cache report: ${v}`);
  return v;
}

/** Builds the router. */
export function nodeRouter(d: NodeRoutesDeps, readJson: (ctx: Koa.Context, limit?: number) => Promise<unknown>): Router {
  const router = new Router();

  router.get("/v1/snapshot", async (ctx) => {
    const n = await authenticate(ctx, d.auth);
    refuseOtherNode(ctx, n.node, "a node may read only its own snapshot");
    const after = intParam(ctx.query.after, "after", 0);
    const waitSeconds = Math.min(MAX_POLL_WAIT_SECONDS, intParam(ctx.query.wait, "wait", DEFAULT_POLL_WAIT_SECONDS));
    let serial = await serialOf(d.pool, n.node);
    if ((serial === undefined || serial <= after) && waitSeconds > 0) {
      const gone = new AbortController();
      const onClose = (): void => gone.abort();
      ctx.req.once("close", onClose);
      try {
        serial = await d.feed.wait(n.node, after, waitSeconds * 1000, gone.signal);
      } finally {
        ctx.req.off("close", onClose);
      }
      if (gone.signal.aborted) return;
      // The identity may have been revoked while the poll was held.
      if (serial !== undefined) await authenticate(ctx, d.auth);
    }
    if (serial === undefined || serial <= after) {
      ctx.status = 204;
      return;
    }
    const snap = await snapshotOf(d.pool, n.node);
    if (snap === undefined || snap.serial <= after) {
      ctx.status = 204;
      return;
    }
    ctx.set(SNAPSHOT_SERIAL_HEADER, String(snap.serial));
    ctx.type = "application/json";
    ctx.body = snap.bytes;
  });

  // The answer never changes: serialize it once.
  const heartbeatAnswer = JSON.stringify({ intervalSeconds: d.heartbeatIntervalSeconds ?? 10 } satisfies HeartbeatResponse);
  // Per heartbeat: authenticate (from memory, auth.ts), validate, queue for the next batch, answer 202.
  router.post("/v1/heartbeat", async (ctx) => {
    const n = await authenticate(ctx, d.auth);
    refuseOtherNode(ctx, n.node, "a node may send heartbeats only for itself");
    const hb = validateHeartbeat(await readJson(ctx, MAX_HEARTBEAT_BYTES));
    d.heartbeats.add({
      node: n.node,
      cluster: n.cluster,
      receivedAt: new Date(),
      seq: hb.seq,
      agentVersion: hb.agentVersion,
      capabilities: hb.capabilities,
      facts: hb.facts,
      health: hb.health.status,
      healthMessage: hb.health.message ?? "",
      ...(hb.snapshot !== undefined ? { snapshotSerial: hb.snapshot.serial, snapshotHash: hb.snapshot.hash, snapshotAppliedAt: new Date(hb.snapshot.appliedAt) } : {}),
    });
    if (hb.mesh !== undefined) {
      d.heartbeats.addMesh({
        node: n.node,
        cluster: n.cluster,
        endpoints: hb.mesh.endpoints.map(endpointString),
        reachable: hb.mesh.reachable,
        relayCapable: hb.mesh.relayCapable === true,
        load: hb.mesh.load,
      });
    }
    ctx.status = 202;
    ctx.type = "application/json";
    ctx.body = heartbeatAnswer;
  });

  router.post("/v1/status/:kind", async (ctx) => {
    const n = await authenticate(ctx, d.auth);
    refuseOtherNode(ctx, n.node, "a node may report status only for itself");
    const kind = ctx.params.kind ?? "";
    if (!KIND.test(kind)) throw bad("kind must be a lowercase name");
    const b = await readJson(ctx, MAX_STATUS_REPORT_BYTES);
    if (typeof b !== "object" || b === null || Array.isArray(b)) throw bad("body must be a JSON object");
    const { version, body } = b as { version?: unknown; body?: unknown };
    if (typeof version !== "number" || !Number.isSafeInteger(version) || version < 0) throw bad("version must be a non-negative integer");
    if (typeof body !== "object" || body === null || Array.isArray(body)) throw bad("body must be an object");
    // Kinds the control plane reads have a schema; others are stored as sent (bounded by the body limits).
    const checked = kind === MESH_STATUS_KIND ? validateMeshStatusBody(body, n) : kind === UPDATE_CACHE_STATUS_KIND ? updateCacheBody(body) : body;
    const stored = await writeStatusReport(d.pool, { node: n.node, cluster: n.cluster, kind, version, body: checked });
    ctx.status = 202;
    ctx.body = { stored };
  });

  return router;
}
