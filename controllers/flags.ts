/**
 * Command-line flags shared by fabric-controlplane and fabric-controllers:
 * identity, Lease election timings (seconds, as kube-controller-manager
 * spells them), the watch silence timeout and node liveness (durations).
 */
import { parseDuration } from "../lib/enrollment/token.js";
import type { ControllersOptions } from "./main.js";

/** parseArgs option definitions of the controller flags. */
export function leaseFlagOptions(defaultIdentity: string, defaultNamespace: string) {
  return {
    identity: { type: "string", default: defaultIdentity },
    "leader-elect": { type: "string", default: "true" },
    "leader-elect-namespace": { type: "string", default: defaultNamespace },
    "leader-elect-name": { type: "string", default: "fabric-controllers" },
    "leader-elect-lease-duration": { type: "string", default: "15" },
    "leader-elect-renew-deadline": { type: "string", default: "10" },
    "leader-elect-retry-period": { type: "string", default: "2" },
    "watch-silence-timeout": { type: "string", default: "30" },
    "node-grace-period": { type: "string", default: "40s" },
    "node-heartbeat-publish-interval": { type: "string", default: "5m" },
    "node-startup-grace-period": { type: "string", default: "5m" },
  } as const;
}

/** Usage lines of the controller flags. */
export function leaseFlagUsage(defaultNamespace: string): string {
  return `  --identity ID                         controller identity: lease holder and audit actor (default hostname-pid)
  --leader-elect BOOL                   elect a leader through a Lease (default true)
  --leader-elect-namespace NS           namespace of the Lease (default ${defaultNamespace})
  --leader-elect-name NAME              name of the Lease (default fabric-controllers)
  --leader-elect-lease-duration SEC     how long a lease is honoured without renewal (default 15)
  --leader-elect-renew-deadline SEC     the leader steps down after failing to renew this long (default 10)
  --leader-elect-retry-period SEC       between acquire/renew attempts (default 2)
  --watch-silence-timeout SEC           restart a watch that sent nothing for this long (default 30)
  --node-grace-period DUR               a node without heartbeats this long goes Ready=Unknown (default 40s)
  --node-heartbeat-publish-interval DUR republish an unchanged node's lastHeartbeatTime this often (default 5m)
  --node-startup-grace-period DUR       a node whose agent sent no heartbeat this long after its certificate was issued goes Ready=Unknown (default 5m)
`;
}

/** The parsed values of the controller flags. */
export interface LeaseFlagValues {
  identity: string;
  "leader-elect": string;
  "leader-elect-namespace": string;
  "leader-elect-name": string;
  "leader-elect-lease-duration": string;
  "leader-elect-renew-deadline": string;
  "leader-elect-retry-period": string;
  "watch-silence-timeout": string;
  "node-grace-period": string;
  "node-heartbeat-publish-interval": string;
  "node-startup-grace-period": string;
}

function seconds(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`invalid --${flag}: ${v} (seconds, > 0)`);
  return Math.round(n * 1000);
}

/** Controller settings from the flags (validated; timings must satisfy lease > renew > 1.2 * retry). */
export function leaseSettingsFromFlags(v: LeaseFlagValues): Pick<ControllersOptions, "identity" | "lease" | "informer" | "nodeHealth"> {
  if (v.identity === "") throw new Error("--identity must not be empty");
  if (v["leader-elect"] !== "true" && v["leader-elect"] !== "false") throw new Error(`invalid --leader-elect: ${v["leader-elect"]}`);
  const lease =
    v["leader-elect"] === "false"
      ? undefined
      : {
          namespace: v["leader-elect-namespace"],
          name: v["leader-elect-name"],
          leaseDurationMs: seconds("leader-elect-lease-duration", v["leader-elect-lease-duration"]),
          renewDeadlineMs: seconds("leader-elect-renew-deadline", v["leader-elect-renew-deadline"]),
          retryPeriodMs: seconds("leader-elect-retry-period", v["leader-elect-retry-period"]),
        };
  if (lease !== undefined && !(lease.leaseDurationMs > lease.renewDeadlineMs && lease.renewDeadlineMs > 1.2 * lease.retryPeriodMs)) {
    throw new Error("leader election timings need lease-duration > renew-deadline > 1.2 * retry-period");
  }
  const duration = (flag: "node-grace-period" | "node-heartbeat-publish-interval" | "node-startup-grace-period"): number => {
    let ms: number;
    try {
      ms = parseDuration(v[flag]);
    } catch (cause) {
      throw new Error(`invalid --${flag}: ${v[flag]}`, { cause });
    }
    if (!(ms > 0)) throw new Error(`invalid --${flag}: ${v[flag]} (must be > 0)`);
    return ms;
  };
  return {
    identity: v.identity,
    lease,
    informer: { silenceTimeoutMs: seconds("watch-silence-timeout", v["watch-silence-timeout"]) },
    nodeHealth: {
      gracePeriodMs: duration("node-grace-period"),
      heartbeatPublishIntervalMs: duration("node-heartbeat-publish-interval"),
      startupGracePeriodMs: duration("node-startup-grace-period"),
    },
  };
}
