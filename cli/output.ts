/**
 * Output formats shared by the commands: `-o table` (kubectl-style columns),
 * `-o json` and `-o yaml` (the same facts, structured). The yaml module is
 * imported only when asked for.
 */
import { UsageError } from "./errors.js";

/** The formats of `--output`. */
export type OutputFormat = "table" | "json" | "yaml";

/** Parses `--output`; anything else is a usage error. */
export function outputFormat(v: string | undefined): OutputFormat {
  const f = v ?? "table";
  if (f === "table" || f === "json" || f === "yaml") return f;
  throw new UsageError(`--output must be table, json or yaml, not "${f}"`);
}

/** Columns padded to their widest cell, separated by three spaces (as kubectl prints). */
export function formatTable(headers: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("   ")
      .trimEnd();
  return [line(headers), ...rows.map(line)].join("\n") + "\n";
}

/** `value` as JSON or YAML text. */
export async function structured(value: unknown, format: "json" | "yaml"): Promise<string> {
  if (format === "json") return JSON.stringify(value, null, 2) + "\n";
  const { stringify } = await import("yaml");
  return stringify(value);
}

/** A kubectl-style age: 45s, 12m, 3h20m, 5d. */
export function age(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 24) return m % 60 === 0 || h >= 8 ? `${h}h` : `${h}h${m % 60}m`;
  return `${Math.floor(h / 24)}d`;
}

/** Time until `iso` from `now` as "in 5h" / "expired 2m ago", or "<none>". */
export function until(iso: string | undefined, now: number): string {
  if (iso === undefined) return "<none>";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "<invalid>";
  return t >= now ? `in ${age(t - now)}` : `expired ${age(now - t)} ago`;
}
