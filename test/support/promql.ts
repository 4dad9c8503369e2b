/**
 * A loose reading of PromQL for tests: the metric names an expression
 * selects, so a test can check that every metric a dashboard or an alert
 * rule queries is exposed. Not a parser: strings, label matchers, range and
 * offset durations, grouping label lists and Grafana variables are removed,
 * then every identifier not followed by "(" and not a PromQL keyword is a
 * metric name.
 */

const KEYWORDS = new Set(["by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset", "inf", "nan", "atan2"]);

/** The metric names `expr` selects (sorted, distinct). */
export function metricNamesOf(expr: string): string[] {
  let s = expr;
  s = s.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""');
  s = s.replace(/\$\{[^}]*\}|\$\w+/g, "1");
  s = s.replace(/\{[^}]*\}/g, " ");
  s = s.replace(/\[[^\]]*\]/g, " ");
  s = s.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
  s = s.replace(/\boffset\s+-?\w+/g, " ");
  const out = new Set<string>();
  for (const m of s.matchAll(/(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g)) {
    const name = m[1] ?? "";
    if (m[2] !== undefined || KEYWORDS.has(name.toLowerCase())) continue;
    // Durations and numbers in exponent form (5m, 1e3) start with a digit and never match; what is left is a selector.
    out.add(name);
  }
  return [...out].sort();
}

/** Every `expr` of a Grafana dashboard's panels (rows included) and the metrics of its `label_values(...)` variables. */
export function metricNamesOfDashboard(dashboard: unknown): string[] {
  const out = new Set<string>();
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) {
      for (const x of v) walk(x);
      return;
    }
    if (v === null || typeof v !== "object") return;
    const o = v as Record<string, unknown>;
    if (typeof o.expr === "string") for (const n of metricNamesOf(o.expr)) out.add(n);
    for (const [k, x] of Object.entries(o)) {
      if (k === "templating") {
        for (const t of ((x as { list?: unknown[] }).list ?? []) as Array<{ query?: unknown; definition?: unknown }>) {
          for (const q of [t.query, t.definition, (t.query as { query?: unknown } | undefined)?.query]) {
            if (typeof q !== "string") continue;
            const lv = /label_values\(\s*([^,)]*)/.exec(q);
            if (lv !== null) for (const n of metricNamesOf(lv[1] ?? "")) out.add(n);
          }
        }
      } else walk(x);
    }
  };
  walk(dashboard);
  return [...out].sort();
}

/** The metrics the `expr`s of a Prometheus rule file select, less the series its own recording rules define. */
export function metricNamesOfRules(file: unknown): string[] {
  const groups = ((file as { groups?: unknown[] } | null)?.groups ?? []) as Array<{ rules?: Array<{ expr?: unknown; record?: unknown }> }>;
  const out = new Set<string>();
  const recorded = new Set<string>();
  for (const g of groups) {
    for (const r of g.rules ?? []) {
      if (typeof r.record === "string") recorded.add(r.record);
      if (typeof r.expr === "string") for (const n of metricNamesOf(r.expr)) out.add(n);
    }
  }
  return [...out].filter((n) => !recorded.has(n)).sort();
}
