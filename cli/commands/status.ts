/** `fabricctl status [--watch]`: collects, summarizes and prints the overview. */
import { flagDuration } from "../duration.js";
import { UsageError } from "../errors.js";
import { refreshUntilSignal } from "../watch.js";
import type { DatabaseFlags } from "../database.js";
import type { KubeClient } from "../kube/client.js";
import type { Io } from "../main.js";
import { structured, type OutputFormat } from "../output.js";
import { collectStatus } from "../status/collect.js";
import { summarize, type StatusInput } from "../status/facts.js";
import { renderStatus } from "../status/render.js";

/** Options of `status`. */
export interface StatusCommandOptions {
  cluster?: string;
  watch: boolean;
  interval: string;
  certWarning?: string;
  /** NAMESPACE/NAME; undefined tries the two default places. */
  lease?: string;
  db: DatabaseFlags;
  format: OutputFormat;
}

/** Where the controllers' Lease is by default: fabric-controllers' namespace, then fabric-controlplane's. */
const DEFAULT_LEASES = [
  { namespace: "fabric-system", name: "fabric-controllers" },
  { namespace: "kube-system", name: "fabric-controllers" },
];

/** Keeps only the objects of one cluster. */
function onlyCluster(input: StatusInput, cluster: string): StatusInput {
  return {
    ...input,
    clusters: input.clusters.filter((c) => c.metadata.name === cluster),
    nodes: input.nodes.filter((n) => n.spec.cluster === cluster),
    joinRequests: input.joinRequests.filter((j) => j.spec.cluster === cluster),
    roleAssignments: input.roleAssignments.filter((r) => r.spec.cluster === cluster),
    workloads: input.workloads.filter((w) => w.spec.cluster === cluster),
  };
}

/** Prints the overview once, or every interval with --watch until SIGINT/SIGTERM. */
export async function runStatus(client: KubeClient, o: StatusCommandOptions, io: Io): Promise<number> {
  let leases: Array<{ namespace: string; name: string }> = DEFAULT_LEASES;
  if (o.lease !== undefined) {
    const [namespace, name, ...extra] = o.lease.split("/");
    if (namespace === undefined || name === undefined || namespace === "" || name === "" || extra.length > 0) throw new UsageError(`--lease must be NAMESPACE/NAME, not "${o.lease}"`);
    leases = [{ namespace, name }];
  }
  const intervalMs = flagDuration("--interval", o.interval);
  const certWarningMs = o.certWarning !== undefined ? flagDuration("--cert-warning", o.certWarning) : undefined;
  const once = async (): Promise<void> => {
    let input = await collectStatus(client, { leases, db: o.db, now: Date.now });
    if (o.cluster !== undefined) input = onlyCluster(input, o.cluster);
    const now = Date.now();
    const report = summarize(input, now, { certWarningMs });
    if (o.format === "json") io.out(o.watch ? JSON.stringify(report) + "\n" : await structured(report, "json"));
    else if (o.format === "yaml") io.out((o.watch ? "---\n" : "") + (await structured(report, "yaml")));
    else io.out((o.watch && process.stdout.isTTY ? "\x1b[H\x1b[2J" : o.watch ? `--- ${report.generatedAt}\n` : "") + renderStatus(report, now));
  };
  if (!o.watch) {
    await once();
    return 0;
  }
  await refreshUntilSignal(once, intervalMs, io);
  return 0;
}
