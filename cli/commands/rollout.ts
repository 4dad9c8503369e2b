/**
 * `fabricctl rollout status <channel> [--watch]`: the ReleaseChannel's
 * rollout as its status publishes it — phase, versions (stable, current,
 * candidate, pin), a progress bar per ring (nodes updated on the ring's
 * target out of its nodes, failures), the halted version and why, the
 * agents' update states, and the latest promotions.
 *
 * `--watch` prints it again every interval until the rollout settles, like
 * `kubectl rollout status`: the controller has seen the latest spec and the
 * phase is Complete, Idle or Pinned (exit 0) or Halted (exit 1); Paused and
 * Progressing keep it watching. Ctrl-C (SIGINT) or SIGTERM before that ends
 * it with exit 130.
 */
import type { ReleaseChannelSpec, ReleaseChannelStatus } from "../../lib/api/types.generated.js";
import { flagDuration } from "../duration.js";
import { refreshUntilSignal } from "../watch.js";
import type { KubeClient } from "../kube/client.js";
import type { Io } from "../main.js";
import { structured, type OutputFormat } from "../output.js";

export interface RolloutStatusOptions {
  channel: string;
  watch: boolean;
  interval: string;
  format: OutputFormat;
}

interface ChannelObject {
  metadata: { name: string; generation?: number };
  spec: ReleaseChannelSpec;
  status?: ReleaseChannelStatus;
}

const BAR_WIDTH = 24;

/** A progress bar: `[#########.......]`, failures as `x`. */
export function progressBar(updated: number, failed: number, total: number, width = BAR_WIDTH): string {
  if (total <= 0) return `[${" ".repeat(width)}]`;
  const ok = Math.round((Math.min(updated, total) / total) * width);
  const bad = Math.min(width - ok, Math.round((Math.min(failed, total) / total) * width));
  return `[${"#".repeat(ok)}${"x".repeat(bad)}${".".repeat(width - ok - bad)}]`;
}

/** The text view of a channel. */
export function renderRollout(c: ChannelObject): string {
  const s = c.status ?? {};
  const lines: string[] = [];
  const ready = s.conditions?.find((x) => x.type === "Ready");
  lines.push(`ReleaseChannel ${c.metadata.name} (cluster ${c.spec.cluster}, component ${c.spec.component})`);
  lines.push(`  phase:     ${s.phase ?? "Unknown"}${c.spec.paused === true ? " (paused)" : ""}${ready?.message !== undefined ? ` - ${ready.message}` : ""}`);
  lines.push(`  versions:  stable ${s.stable ?? "-"}, current ${c.spec.current ?? "-"}, candidate ${c.spec.candidate ?? "-"}${c.spec.pin !== undefined ? `, PINNED to ${c.spec.pin.version}${c.spec.pin.reason ? ` (${c.spec.pin.reason})` : ""}` : ""}`);
  if (s.halted !== undefined) lines.push(`  halted:    ${s.halted.version} in ring ${s.halted.ring ?? "?"}: ${s.halted.reason ?? ""}`);
  if ((c.spec.blocklist ?? []).length > 0) lines.push(`  blocklist: ${(c.spec.blocklist ?? []).join(", ")}`);
  if (s.observedGeneration !== undefined && c.metadata.generation !== undefined && s.observedGeneration < c.metadata.generation) lines.push("  (the controller has not seen the latest spec yet)");
  lines.push("  rings:");
  const rings = s.rings ?? [];
  if (rings.length === 0) lines.push("    (none reported)");
  const nameWidth = Math.max(4, ...rings.map((r) => r.name.length));
  for (const r of rings) {
    const total = r.total ?? 0;
    const updated = r.updated ?? 0;
    const failed = r.failed ?? 0;
    lines.push(
      `    ${r.name.padEnd(nameWidth)} ${progressBar(updated, failed, total)} ${String(updated).padStart(4)}/${String(total).padEnd(4)} ${(r.targetVersion ?? "-").padEnd(12)} ${r.phase ?? ""}${failed > 0 ? `, ${failed} failed` : ""}`,
    );
  }
  if ((s.nodeStates ?? []).length > 0) lines.push(`  agents:    ${(s.nodeStates ?? []).map((n) => `${n.state} ${n.nodes}`).join(", ")}`);
  for (const f of (s.failures ?? []).slice(0, 5)) lines.push(`  failure:   ${f.node} ${f.version}: ${f.reason ?? ""}`);
  const hist = (s.promotionHistory ?? []).slice(0, 3);
  if (hist.length > 0) lines.push(`  promoted:  ${hist.map((h) => `${h.version} -> ${h.to}${h.time !== undefined ? ` (${h.time})` : ""}`).join("; ")}`);
  return `${lines.join("\n")}\n`;
}

/** Exit code once a watched rollout settled, undefined while it moves (or the controller has not seen the latest spec). */
export function settledExit(c: { metadata: { generation?: number }; status?: { phase?: string; observedGeneration?: number } }): number | undefined {
  const s = c.status;
  if (s === undefined || s.observedGeneration === undefined || (c.metadata.generation !== undefined && s.observedGeneration < c.metadata.generation)) return undefined;
  switch (s.phase) {
    case "Complete":
    case "Idle":
    case "Pinned":
      return 0;
    case "Halted":
      return 1;
    default:
      return undefined;
  }
}

/** Prints the rollout once, or every interval with --watch until it settles or SIGINT/SIGTERM. */
export async function rolloutStatus(client: KubeClient, o: RolloutStatusOptions, io: Io): Promise<number> {
  const intervalMs = flagDuration("--interval", o.interval);
  let exit: number | undefined;
  const once = async (): Promise<boolean> => {
    const c = await client.get<ChannelObject>("ReleaseChannel", o.channel);
    if (o.format === "json") io.out(o.watch ? `${JSON.stringify(c.status ?? {})}\n` : await structured(c.status ?? {}, "json"));
    else if (o.format === "yaml") io.out((o.watch ? "---\n" : "") + (await structured(c.status ?? {}, "yaml")));
    else io.out((o.watch && process.stdout.isTTY ? "\x1b[H\x1b[2J" : o.watch ? `--- ${new Date().toISOString()}\n` : "") + renderRollout(c));
    exit = settledExit(c);
    return exit !== undefined;
  };
  if (!o.watch) {
    await once();
    return 0;
  }
  return (await refreshUntilSignal(once, intervalMs, io)) === "settled" ? (exit ?? 0) : 130;
}
