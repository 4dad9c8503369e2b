/**
 * The agent's loops for one membership: boot from the checkpoint, then the
 * snapshot watch (long poll over mTLS) and the heartbeat loop, each
 * reconnecting with exponential backoff and full jitter. The identity is
 * re-read from disk when the server says the certificate was superseded
 * (the renewal loop wrote a new one).
 */
import { cpus, arch, platform, release, totalmem, hostname } from "node:os";
import type { HeartbeatMesh, HeartbeatRequest, HeartbeatResponse } from "../../lib/agent-protocol.js";
import { DEFAULT_MAX_SNAPSHOT_BYTES } from "../../lib/snapshot/verify.js";
import { AgentApiRequestError } from "../http/client.js";
import { loadIdentity, type StoredIdentity } from "../enroll/identity-store.js";
import { Backoff, sleep, type BackoffStep } from "./backoff.js";
import { MembershipSync } from "./snapshot-sync.js";
import { SyncTransport } from "./transport.js";

/** The agent's version, reported in heartbeats. */
export const AGENT_VERSION = "0.1.0";

/** Options of runMembership. */
export interface RunMembershipOptions {
  identity: StoredIdentity;
  signal: AbortSignal;
  log: (msg: string, fields?: Record<string, unknown>) => void;
  /** Heartbeat period (default 10 s; the server's answer overrides it). */
  heartbeatIntervalMs?: number;
  /** Long-poll hold asked of the server (default 30 s). */
  pollWaitSeconds?: number;
  maxBytes?: number;
  /** Backoff base and cap (default 500 ms and 60 s). */
  backoffBaseMs?: number;
  backoffCapMs?: number;
  /** Capabilities reported in heartbeats. */
  capabilities?: string[];
  /** The mesh report of each heartbeat (agent/mesh/mesh-loop.ts); undefined while the mesh is off. */
  mesh?: () => HeartbeatMesh | undefined;
  /** Called once the sync exists (before boot), e.g. to subscribe a workload supervisor. */
  onSync?: (sync: MembershipSync) => void;
  /** Jitter source of the backoff (default Math.random; tests inject a seeded one). */
  random?: () => number;
  /** Called on each failure with the loop's retry plan, before it sleeps `waitMs` (tests observe the backoff). */
  onBackoff?: (e: BackoffStep & { loop: "snapshot" | "heartbeat"; waitMs: number; error: string }) => void;
}

// os.cpus() reads per-CPU times and models from /proc and /sys on every call: count once.
let cpuCount: number | undefined;

function facts(): Record<string, unknown> {
  cpuCount ??= cpus().length;
  return { hostname: hostname(), os: platform(), arch: arch(), kernel: release(), cpus: cpuCount, memoryBytes: totalmem() };
}

/** Runs the loops until signal aborts; resolves with the membership's sync state. */
export async function runMembership(o: RunMembershipOptions): Promise<MembershipSync> {
  const sync = new MembershipSync({ identity: o.identity, maxBytes: o.maxBytes, log: o.log });
  o.onSync?.(sync);
  await sync.boot();
  let identity = o.identity;
  let transport = new SyncTransport(identity);
  const base = o.backoffBaseMs ?? 500;
  const cap = o.backoffCapMs ?? 60_000;
  const maxBytes = o.maxBytes ?? DEFAULT_MAX_SNAPSHOT_BYTES;

  const onAuthError = async (err: unknown): Promise<void> => {
    if (err instanceof AgentApiRequestError && err.code === "CertificateSuperseded") {
      try {
        const fresh = await loadIdentity(identity.dir);
        if (fresh.info.serial !== identity.info.serial) {
          identity = fresh;
          sync.setIdentity(fresh);
          transport.close();
          transport = new SyncTransport(identity);
          o.log("identity reloaded after renewal", { serial: fresh.info.serial });
        }
      } catch (e) {
        o.log("reloading identity failed", { error: (e as Error).message });
      }
    }
  };

  const snapshots = (async () => {
    const backoff = new Backoff({ baseMs: base, capMs: cap, random: o.random });
    let step: BackoffStep;
    while (!o.signal.aborted) {
      try {
        const r = await transport.pollSnapshot(sync.afterSerial(), o.pollWaitSeconds ?? 30, maxBytes, o.signal);
        sync.contact();
        let rejected = false;
        if (r.kind === "snapshot") rejected = (await sync.offer(r.bytes)).kind === "rejected";
        else if (r.kind === "oversized") rejected = (await sync.rejectOversized(r.received)).kind === "rejected";
        else await sync.flushStatus();
        if (!rejected) {
          backoff.succeed();
          continue;
        }
        // A server that keeps sending a bad snapshot must not make us spin.
        step = backoff.fail();
        o.onBackoff?.({ loop: "snapshot", ...step, waitMs: step.delayMs, error: "snapshot rejected" });
      } catch (err) {
        if (o.signal.aborted) break;
        step = backoff.fail();
        o.onBackoff?.({ loop: "snapshot", ...step, waitMs: step.delayMs, error: (err as Error).message });
        sync.contactFailed((err as Error).message);
        sync.refreshStaleness();
        await sync.flushStatus();
        await onAuthError(err);
        if (step.attempt === 1 || step.attempt % 10 === 0) o.log("snapshot poll failed; backing off", { error: (err as Error).message, attempt: step.attempt });
      }
      await sleep(step.delayMs, o.signal);
    }
  })();

  const heartbeats = (async () => {
    const backoff = new Backoff({ baseMs: base, capMs: cap, random: o.random });
    let seq = Date.now();
    let interval = o.heartbeatIntervalMs ?? 10_000;
    while (!o.signal.aborted) {
      const held = sync.held();
      sync.refreshStaleness();
      const stale = sync.status.snapshot?.stale === true;
      const mesh = o.mesh?.();
      const body: HeartbeatRequest = {
        seq: (seq = Math.max(seq + 1, Date.now())),
        agentVersion: AGENT_VERSION,
        capabilities: o.capabilities ?? [],
        facts: facts(),
        health: stale ? { status: "Degraded", message: "running on an expired snapshot" } : { status: "Healthy" },
        ...(held !== undefined ? { snapshot: { serial: held.held.serial, hash: held.held.hash, appliedAt: held.held.appliedAt } } : {}),
        ...(mesh !== undefined ? { mesh } : {}),
      };
      let wait: number;
      try {
        const r = await transport.postJson<HeartbeatResponse>("/v1/heartbeat", body, o.signal);
        if (Number.isFinite(r.intervalSeconds) && r.intervalSeconds >= 1 && o.heartbeatIntervalMs === undefined) interval = r.intervalSeconds * 1000;
        sync.contact();
        sync.status.heartbeats.sent++;
        sync.status.heartbeats.lastSentAt = new Date().toISOString();
        backoff.succeed();
        // ±10% so agents started together drift apart.
        wait = interval * (0.9 + 0.2 * Math.random());
      } catch (err) {
        if (o.signal.aborted) break;
        // Full jitter under min(cap, 3 intervals), never closer than 250 ms.
        const step = backoff.fail(Math.min(cap, interval * 3));
        wait = Math.max(250, step.delayMs);
        o.onBackoff?.({ loop: "heartbeat", ...step, waitMs: wait, error: (err as Error).message });
        sync.status.heartbeats.failed++;
        sync.contactFailed((err as Error).message);
        await onAuthError(err);
      }
      await sync.flushStatus();
      await sleep(wait, o.signal);
    }
  })();

  await Promise.all([snapshots, heartbeats]);
  transport.close();
  await sync.flushStatus();
  return sync;
}
