/**
 * Warm probing: the peer manager names the best candidates outside the
 * active set (`probe` actions); without a measurement they are scored as
 * this node's median live link, so a replacement would be picked blind.
 * This module measures them, bounded: at most `maxInFlight` probes at once,
 * one start per `spacingMs`, each a short-lived authenticated link (the
 * transport's mutual TLS and pins, like any link) that announces itself as a
 * warm probe (`WARM_PROBE_METHOD`, so the other side neither counts nor
 * reports it), takes `samples` request round trips and closes. Results are
 * handed to the peer manager as `warm` observations (RTT, jitter, the share
 * of unanswered requests as loss) until they expire after `ttlMs`; an
 * expired or never measured candidate is probed again when the peer manager
 * still asks for it.
 *
 * planWarmProbes and warmObservations are pure; measureWarm does the I/O
 * through a narrow transport interface.
 */
import { performance } from "node:perf_hooks";
import type { LinkObservation } from "./types.js";

/** One-way message a warm probe sends first: "do not count this link". */
export const WARM_PROBE_METHOD = "mesh.warm-probe";

/** Bounds of warm probing. */
export const WARM_PROBE = {
  /** Warm probes in flight at once. */
  maxInFlight: 1,
  /** Fewest ms between two probe starts. */
  spacingMs: 5_000,
  /** A measurement is used this long, then the candidate is probed again. */
  ttlMs: 180_000,
  /** Request round trips per probe. */
  samples: 3,
  /** Timeout of one request. */
  requestTimeoutMs: 2_000,
} as const;

/** A warm candidate's measurement. */
export interface WarmResult {
  node: string;
  rttMs: number;
  jitterMs: number;
  /** Share of the requests that went unanswered (0..1). */
  loss: number;
  measuredAtMs: number;
}

/** What a planning step needs. */
export interface WarmPlanInput {
  /** Candidates the peer manager asked to probe, best first. */
  wanted: readonly string[];
  /** Nodes with a transport link or a dial in flight (never warm-probed). */
  linked: ReadonlySet<string>;
  inFlight: ReadonlySet<string>;
  results: ReadonlyMap<string, WarmResult>;
  /** When the last probe started. */
  lastStartMs: number | undefined;
  now: number;
}

/** The candidates to start probing now (at most what the bounds leave; never measured first, then the oldest measurement, then the peer manager's order). */
export function planWarmProbes(input: WarmPlanInput, limits: { maxInFlight: number; spacingMs: number; ttlMs: number } = WARM_PROBE): string[] {
  const room = limits.maxInFlight - input.inFlight.size;
  if (room <= 0) return [];
  if (input.lastStartMs !== undefined && input.now - input.lastStartMs < limits.spacingMs) return [];
  const due = [...new Set(input.wanted)]
    .map((node, i) => ({ node, i, at: input.results.get(node)?.measuredAtMs }))
    .filter((c) => !input.linked.has(c.node) && !input.inFlight.has(c.node) && (c.at === undefined || input.now - c.at >= limits.ttlMs));
  due.sort((a, b) => (a.at ?? -Infinity) - (b.at ?? -Infinity) || a.i - b.i);
  // One start per spacing: the bound on probe traffic holds however many are due.
  return due.slice(0, Math.min(room, 1)).map((c) => c.node);
}

/** Unexpired results as `warm` observations for the peer manager, except nodes the transport links (their link is the measurement). */
export function warmObservations(results: ReadonlyMap<string, WarmResult>, linked: ReadonlySet<string>, now: number, ttlMs: number = WARM_PROBE.ttlMs): LinkObservation[] {
  const out: LinkObservation[] = [];
  for (const r of results.values()) {
    if (linked.has(r.node) || now - r.measuredAtMs >= ttlMs) continue;
    out.push({ node: r.node, state: "warm", rttEwmaMs: r.rttMs, jitterMs: r.jitterMs, loss: r.loss, lastHeardMs: r.measuredAtMs, failures: 0, sinceMs: r.measuredAtMs });
  }
  return out.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
}

/** Drops expired results (call once per evaluation). */
export function pruneWarmResults(results: Map<string, WarmResult>, now: number, ttlMs: number = WARM_PROBE.ttlMs): void {
  for (const [node, r] of results) if (now - r.measuredAtMs >= ttlMs) results.delete(node);
}

/** RTT (median), jitter (mean absolute difference of consecutive samples) and loss of a probe's samples; undefined when none was answered. */
export function summariseSamples(rtts: readonly number[], attempts: number): Pick<WarmResult, "rttMs" | "jitterMs" | "loss"> | undefined {
  if (rtts.length === 0 || attempts <= 0) return undefined;
  const sorted = [...rtts].sort((a, b) => a - b);
  let diff = 0;
  for (let i = 1; i < rtts.length; i++) diff += Math.abs((rtts[i] ?? 0) - (rtts[i - 1] ?? 0));
  return { rttMs: sorted[Math.floor(sorted.length / 2)] ?? 0, jitterMs: rtts.length > 1 ? diff / (rtts.length - 1) : 0, loss: Math.min(1, Math.max(0, (attempts - rtts.length) / attempts)) };
}

/** What measureWarm needs of the transport (PeerLinks). */
export interface WarmTransport {
  connect(target: { node: string; endpoints: Array<{ host: string; port: number }> }): Promise<unknown>;
  send(node: string, method: string, payload: unknown): boolean;
  request(node: string, method: string, payload: unknown, timeoutMs?: number): Promise<unknown>;
  close(node: string): Promise<void>;
}

/**
 * One warm probe: link, announce, `samples` round trips of `method`, close.
 * Rejects when the link cannot be made or nothing was answered.
 */
export async function measureWarm(
  t: WarmTransport,
  target: { node: string; endpoints: Array<{ host: string; port: number }> },
  method: string,
  now: () => number,
  samples: number = WARM_PROBE.samples,
): Promise<WarmResult> {
  await t.connect(target);
  try {
    t.send(target.node, WARM_PROBE_METHOD, null);
    const rtts: number[] = [];
    for (let i = 0; i < samples; i++) {
      const t0 = performance.now();
      try {
        await t.request(target.node, method, null, WARM_PROBE.requestTimeoutMs);
        rtts.push(performance.now() - t0);
      } catch {
        // counted as lost
      }
    }
    const s = summariseSamples(rtts, samples);
    if (s === undefined) throw new Error(`warm probe of ${target.node}: no answer to ${samples} requests`);
    return { node: target.node, ...s, measuredAtMs: now() };
  } finally {
    await t.close(target.node);
  }
}
