/**
 * Pure decisions of the ServiceWorkload controller: spec validation, the
 * per-node snapshot form of the workload, the nodes that should run it, and
 * the status summarised from the agents' reports.
 */
import type { ServiceWorkloadSpec, ServiceWorkloadStatus, ServiceWorkloadStatusNode } from "../../lib/api/types.generated.js";
import type { SnapshotHealthProbe, SnapshotWorkload } from "../../lib/snapshot/format.js";
import type { NodeRoleRow, WorkloadReportRow } from "../../lib/state/index.js";
import { setCondition, type Condition } from "../runtime/index.js";

/** Ready reasons of ServiceWorkload. */
export const WorkloadReasons = {
  AllReady: "AllReady",
  Progressing: "Progressing",
  Degraded: "Degraded",
  NoNodes: "NoNodes",
  NodesNotReady: "NodesNotReady",
  InvalidSpec: "InvalidSpec",
  ClusterNotFound: "ClusterNotFound",
} as const;

/** At most this many nodes in status.nodes. */
export const MAX_STATUS_NODES = 256;

/**
 * Runtime-specific checks the schema cannot express: Native needs a
 * command; Docker and Podman need an image; a health probe names exactly one
 * of exec, http, tcp. Returns the problems (empty when valid).
 */
export function validateWorkloadSpec(spec: ServiceWorkloadSpec): string[] {
  const out: string[] = [];
  const runtime = spec.runtime ?? "Native";
  if (runtime === "Native") {
    // A channel-bound workload runs its release's executable instead of a command.
    if (spec.releaseChannel === undefined && ((spec.command ?? []).length === 0 || (spec.command?.[0] ?? "") === "")) out.push("spec.command: required for the Native runtime");
    if (spec.image !== undefined && spec.image !== "") out.push("spec.image: only for the Docker and Podman runtimes");
  } else {
    if (spec.image === undefined || spec.image.trim() === "") out.push(`spec.image: required for the ${runtime} runtime`);
    if (spec.releaseChannel !== undefined) out.push("spec.releaseChannel: only for the Native runtime");
  }
  const p = spec.healthProbe;
  if (p !== undefined) {
    const kinds = [p.exec, p.http, p.tcp].filter((x) => x !== undefined).length;
    if (kinds !== 1) out.push("spec.healthProbe: exactly one of exec, http, tcp");
  }
  return out;
}

function probeOf(spec: ServiceWorkloadSpec): SnapshotHealthProbe | undefined {
  const p = spec.healthProbe;
  if (p === undefined) return undefined;
  const timing = { periodSeconds: p.periodSeconds ?? 10, timeoutSeconds: p.timeoutSeconds ?? 1, failureThreshold: p.failureThreshold ?? 3 };
  if (p.exec !== undefined) return { kind: "exec", command: [...p.exec.command], ...timing };
  if (p.http !== undefined) {
    const scheme = (p.http.scheme ?? "HTTP").toLowerCase();
    const path = p.http.path ?? "/healthz";
    return { kind: "http", url: `${scheme}://127.0.0.1:${p.http.port}${path.startsWith("/") ? path : `/${path}`}`, ...timing };
  }
  if (p.tcp !== undefined) return { kind: "tcp", port: p.tcp.port, ...timing };
  return undefined;
}

/**
 * The workload as it travels in a node's snapshot. Plain configuration only:
 * env values are literal spec values (the schema has no secret references).
 * `workingDir`, `initialDelaySeconds` and `meshPorts` are additional v1 payload members
 * (payload objects are open; older agents ignore them).
 */
export function snapshotWorkloadOf(name: string, generation: number, spec: ServiceWorkloadSpec): SnapshotWorkload & Record<string, unknown> {
  const runtime = spec.runtime ?? "Native";
  const env: Record<string, string> = {};
  for (const e of spec.env ?? []) env[e.name] = e.value ?? "";
  const w: SnapshotWorkload & Record<string, unknown> = {
    name,
    generation,
    role: spec.role,
    runtime: runtime === "Native" ? "native" : "container",
    command: [...(spec.command ?? [])],
    args: [...(spec.args ?? [])],
    env,
    restartPolicy: spec.restartPolicy ?? "Always",
  };
  if (runtime !== "Native") {
    w.containerEngine = runtime === "Docker" ? "docker" : "podman";
    w.image = spec.image ?? "";
  }
  const probe = probeOf(spec);
  if (probe !== undefined) w.healthProbe = probe;
  if (spec.workingDir !== undefined && spec.workingDir !== "") w.workingDir = spec.workingDir;
  if ((spec.healthProbe?.initialDelaySeconds ?? 0) > 0) w.initialDelaySeconds = spec.healthProbe?.initialDelaySeconds;
  // The ports the node's agent accepts mesh streams for (agent/mesh/forward-policy.ts declaredMeshPorts).
  if ((spec.meshPorts ?? []).length > 0) w.meshPorts = (spec.meshPorts ?? []).map((p) => ({ name: p.name, port: p.port, protocol: "tcp" }));
  if (spec.releaseChannel !== undefined) w.releaseChannel = spec.releaseChannel;
  return w;
}

/**
 * Nodes that should run the workload: holders of the role (for the
 * workload's organization when it has one), narrowed by the selector
 * (`matches`; never widened). Sorted, deduplicated.
 */
export function targetNodes(holders: readonly NodeRoleRow[], organization: string, matches: (node: string) => boolean): string[] {
  const out = new Set<string>();
  for (const h of holders) {
    if (organization !== "" && h.organization !== organization) continue;
    if (matches(h.node)) out.add(h.node);
  }
  return [...out].sort();
}

const DEGRADED = new Set(["Degraded", "Failed", "Unsupported"]);

/** Whether a report counts as ready for this generation. */
export function reportReady(r: WorkloadReportRow | undefined, generation: number): boolean {
  return r !== undefined && r.ready && r.state === "Running" && r.observedGeneration >= generation;
}

/** The message of a node whose FabricNode is not Ready: its last report is not trusted. */
export const NODE_NOT_READY_MESSAGE = "NodeNotReady: the node is not Ready (no recent heartbeat, or not active); its last report does not count";

/**
 * The status to publish from the desired nodes and their reports. An
 * instance on a node in `notReadyNodes` (FabricNode Ready is not True: e.g.
 * Unknown after its heartbeats stopped) never counts as ready, whatever its
 * last report said.
 */
export function desiredWorkloadStatus(
  current: ServiceWorkloadStatus | undefined,
  generation: number,
  nodes: readonly string[],
  reports: ReadonlyMap<string, WorkloadReportRow>,
  problem: { reason: "InvalidSpec" | "ClusterNotFound"; message: string } | undefined,
  now: Date,
  notReadyNodes: ReadonlySet<string> = new Set(),
): ServiceWorkloadStatus {
  let ready = 0;
  let degraded = 0;
  let onNotReady = 0;
  const detail: ServiceWorkloadStatusNode[] = [];
  for (const n of nodes) {
    const r = reports.get(n);
    const nodeNotReady = notReadyNodes.has(n);
    const ok = !nodeNotReady && reportReady(r, generation);
    if (ok) ready++;
    else if (r !== undefined && DEGRADED.has(r.state)) degraded++;
    else if (nodeNotReady) onNotReady++;
    if (detail.length < MAX_STATUS_NODES) {
      const d: ServiceWorkloadStatusNode = { node: n, state: r?.state ?? "Pending", ready: ok };
      if (r !== undefined) d.restartCount = r.restartCount;
      const msg = [...(nodeNotReady ? [NODE_NOT_READY_MESSAGE] : []), ...(r === undefined ? [] : [r.reason, r.message])].filter((x) => x !== "").join(": ");
      if (msg !== "") d.message = msg.slice(0, 1024);
      detail.push(d);
    }
  }
  let cond: Omit<Condition, "lastTransitionTime">;
  if (problem !== undefined) cond = { type: "Ready", status: "False", reason: WorkloadReasons[problem.reason], message: problem.message, observedGeneration: generation };
  else if (nodes.length === 0) cond = { type: "Ready", status: "False", reason: WorkloadReasons.NoNodes, message: "no active node holds the role (or matches the selector)", observedGeneration: generation };
  else if (ready === nodes.length) cond = { type: "Ready", status: "True", reason: WorkloadReasons.AllReady, message: `ready on ${ready} of ${nodes.length} node(s)`, observedGeneration: generation };
  else if (degraded > 0) cond = { type: "Ready", status: "False", reason: WorkloadReasons.Degraded, message: `${degraded} of ${nodes.length} node(s) degraded; ${ready} ready`, observedGeneration: generation };
  else if (onNotReady > 0) cond = { type: "Ready", status: "False", reason: WorkloadReasons.NodesNotReady, message: `${onNotReady} of ${nodes.length} node(s) not Ready; ${ready} ready`, observedGeneration: generation };
  else cond = { type: "Ready", status: "False", reason: WorkloadReasons.Progressing, message: `ready on ${ready} of ${nodes.length} node(s)`, observedGeneration: generation };
  const out: ServiceWorkloadStatus = {
    ...current,
    observedGeneration: generation,
    desired: nodes.length,
    ready,
    degraded,
    conditions: setCondition(current?.conditions as Condition[] | undefined, cond, now),
  };
  if (detail.length > 0) out.nodes = detail;
  else delete out.nodes;
  return out;
}
