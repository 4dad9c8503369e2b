/**
 * Test support for the controllers: run them in this process against a test
 * control plane (real API server, real PostgreSQL), read their metrics, and
 * read rows.
 */
import { randomBytes } from "node:crypto";
import type { KubeConfig } from "@kubernetes/client-node";
import type pg from "pg";
import { Registry } from "prom-client";
import { startControllers, type ControllersOptions, type RunningControllers } from "../../controllers/main.js";
import { kekFromBase64, type Kek } from "../../lib/crypto/kek.js";
import { logger } from "../../lib/log.js";

/** A random KEK for one test run. */
export function testKek(): Kek {
  return kekFromBase64(randomBytes(32).toString("base64"));
}

/** Controllers started by a test, with their registry. */
export interface TestControllers extends RunningControllers {
  registry: Registry;
  identity: string;
}

/** Starts controllers against kc/pool; without lease settings the instance always leads. */
export function startTestControllers(
  kc: KubeConfig,
  pool: pg.Pool,
  kek: Kek,
  extra: Partial<Omit<ControllersOptions, "kubeConfig" | "pool" | "kek">> = {},
): TestControllers {
  const registry = extra.registry ?? new Registry();
  const identity = extra.identity ?? `test-${randomBytes(3).toString("hex")}`;
  const c = startControllers({
    kubeConfig: kc,
    pool,
    kek,
    registry,
    identity,
    log: logger("test-controllers", { identity }),
    sweepIntervalMs: 1000,
    ...extra,
  });
  return Object.assign(c, { registry, identity });
}

/** Sum of a counter's values whose labels include `labels`. */
export async function metricSum(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = registry.getSingleMetric(name);
  if (m === undefined) return 0;
  const data = await m.get();
  let sum = 0;
  for (const v of data.values) {
    const l = v.labels as Record<string, string | number | undefined>;
    if (Object.entries(labels).every(([k, want]) => String(l[k]) === want)) sum += v.value;
  }
  return sum;
}

/** Count of audit rows. */
export async function auditCount(pool: pg.Pool): Promise<number> {
  const r = await pool.query<{ n: string }>("SELECT count(*) AS n FROM audit_events");
  return Number(r.rows[0]?.n ?? 0);
}
