/**
 * ReleaseChannelReconciler (leader only): gathers what the rollout plan
 * needs — the channel's nodes (those whose desired workloads reference the
 * channel), ring membership (label selector or NodeGroups; first ring
 * wins), verified releases of the component, the agents' `updates` reports,
 * node readiness and workload instance readiness — runs planRollout
 * (plan.ts), and commits the assignments with the rollout state (fenced,
 * audited, only the changed nodes marked for a new snapshot), records every
 * decision as an Event and publishes the status.
 *
 * A release counts as verified only when its status says so AND its
 * envelope verifies here against the cluster's trust set (a stale status
 * never lets an unverified release through); the node's artifact is chosen
 * from the verified manifest by the node's reported OS and architecture.
 */
import type { CustomObjectsApi } from "@kubernetes/client-node";
import { RESOURCES } from "../../lib/api/types.generated.js";
import { canonicalJson } from "../../lib/canonical-json.js";
import type { ReleaseChannelSpec, ReleaseChannelStatus } from "../../lib/api/types.generated.js";
import { labelSelectorFromMetav1, matchesLabels, SelectorError } from "../../lib/kube/selectors.js";
import { parseDuration } from "../../lib/enrollment/token.js";
import { verifyEnvelope, type ReleaseManifest, type TrustSet } from "../../lib/release/index.js";
import type { WorkloadStore } from "../../lib/state/index.js";
import type { ReleaseStore } from "../../lib/state/releases.js";
import type { AssignmentRow, RolloutStore, UpdateReportItem } from "../../lib/state/rollouts.js";
import type { FabricClusterObject, FabricNodeObject, Kube, ServiceWorkloadObject } from "../objects.js";
import type { Release, ReleaseChannel } from "../../lib/api/types.generated.js";
import { formatTime, isTrue, patchStatusIfChanged, realClock, setCondition, type Clock, type Condition, type EventRecorderLike, type Informer, type ObjectKey, type ReconcileContext, type ReconcileResult, type Reconciler } from "../runtime/index.js";
import { emptyRolloutState, planRollout, type ChannelPolicy, type NodeObservation, type PlanOutput, type RingPolicy, type RolloutState } from "./plan.js";

export type ReleaseChannelObject = Kube<ReleaseChannel>;
export type ReleaseObject = Kube<Release>;

export interface ReleaseChannelReconcilerDeps {
  informer: Informer<ReleaseChannelObject>;
  releases: Informer<ReleaseObject>;
  nodes: Informer<FabricNodeObject>;
  clusters: Informer<FabricClusterObject>;
  workloadObjects: Informer<ServiceWorkloadObject>;
  workloads: WorkloadStore;
  rollouts: RolloutStore;
  /** The Release controller's verification outcomes and accepted trust sets. */
  releaseRows: ReleaseStore;
  api: CustomObjectsApi;
  events?: EventRecorderLike;
  /** Requeues a FabricNode (whose controller publishes its status.workloadUpdates). */
  wakeNode?: (name: string) => void;
  clock?: Clock;
  /** Requeue while a rollout moves (default 2 s) and otherwise (default 30 s). */
  pollMs?: { moving?: number; idle?: number };
}

const res = RESOURCES.ReleaseChannel;
/** Node OS/arch as the agent reports them (node:os) to the manifest's names. */
const ARCH: Record<string, string> = { x64: "amd64", arm64: "arm64", arm: "arm" };
const MAX_FAILURES_LISTED = 100;

/** A verified release of the channel's component. */
interface VerifiedRelease {
  name: string;
  manifest: ReleaseManifest;
  envelope: unknown;
}

/** See the module comment. */
export class ReleaseChannelReconciler implements Reconciler {
  constructor(private readonly d: ReleaseChannelReconcilerDeps) {}

  async reconcile(key: ObjectKey, ctx: ReconcileContext): Promise<ReconcileResult | void> {
    const obj = this.d.informer.get(key);
    if (obj === undefined) {
      if (await this.d.rollouts.deleteChannel(key.name)) ctx.log.info("release channel removed: assignments withdrawn", { channel: key.name });
      return;
    }
    const spec = obj.spec;
    const now = new Date((this.d.clock ?? realClock).now());
    const cluster = this.d.clusters.get({ name: spec.cluster });
    if (cluster === undefined) return this.publishProblem(obj, "ClusterNotFound", `FabricCluster ${spec.cluster} does not exist`, now);
    // The trust set the Release controller accepted (rotations included), not the spec as written.
    const trust = (await this.d.releaseRows.trustOf(spec.cluster))?.trust;
    if (trust === undefined) return this.publishProblem(obj, "NoTrust", `FabricCluster ${spec.cluster} has no accepted release trust: no release can be verified`, now);
    await this.d.rollouts.setTrust(spec.cluster, trust);

    const verified = await this.verifiedReleases(spec, trust, now);
    // The channel's nodes: every node a workload referencing the channel is placed on.
    const bound = this.d.workloadObjects.list().filter((w) => w.spec.releaseChannel === key.name && w.spec.cluster === spec.cluster);
    const nodeWorkloads = new Map<string, string[]>();
    for (const w of bound) {
      const name = w.metadata.name ?? "";
      for (const row of await this.d.workloads.desired(name)) nodeWorkloads.set(row.node, [...(nodeWorkloads.get(row.node) ?? []), name]);
    }
    let rings: RingPolicy[];
    try {
      rings = this.resolveRings(spec, [...nodeWorkloads.keys()].sort());
    } catch (err) {
      if (!(err instanceof SelectorError)) throw err;
      return this.publishProblem(obj, "InvalidSpec", `spec.rings: ${err.message}`, now);
    }
    const assigned = await this.d.rollouts.assignments(key.name);
    const reports = await this.d.rollouts.updateReports(spec.cluster, [...nodeWorkloads.keys()]);
    const ready = new Map<string, boolean>();
    for (const w of bound) {
      for (const [node, r] of await this.d.workloads.reportsOfWorkload(w.metadata.name ?? "")) ready.set(`${node}/${w.metadata.name}`, (ready.get(`${node}/${w.metadata.name}`) ?? true) && r.ready);
    }
    const observations = new Map<string, NodeObservation>();
    const reportItems: NodeReport[] = [];
    for (const [node, wls] of nodeWorkloads) {
      const items = (reports.get(node) ?? []).filter((i) => i.channel === key.name && wls.includes(i.workload));
      reportItems.push(...items.map((i) => ({ ...i, node })));
      const all = reports.get(node) ?? [];
      if (n0(this.d.nodes.get({ name: node })?.status?.workloadUpdates) !== n0(all.length === 0 ? undefined : all)) this.d.wakeNode?.(node);
      const n = this.d.nodes.get({ name: node });
      observations.set(node, {
        assigned: assigned.get(node)?.version,
        report: worstReport(items, wls),
        nodeReady: isTrue(n?.status?.conditions as Condition[] | undefined, "Ready"),
        instancesReady: wls.every((w) => ready.get(`${node}/${w}`) === true),
      });
    }
    const state = (await this.d.rollouts.state<RolloutState>(key.name)) ?? emptyRolloutState();
    const out = planRollout({ policy: policyOf(spec, rings), verified: new Set(verified.keys()), nodes: observations, state, now: now.getTime() });

    const ringOf = new Map(rings.flatMap((r) => r.nodes.map((n) => [n, r.name] as const)));
    const want = new Map<string, AssignmentRow>();
    const noArtifact: string[] = [];
    for (const [node, version] of out.assignments) {
      const rel = version === undefined ? undefined : verified.get(version);
      if (rel === undefined) continue;
      const facts = (this.d.nodes.get({ name: node })?.status?.facts ?? {}) as Record<string, unknown>;
      const os = String(facts.os ?? "");
      const arch = ARCH[String(facts.arch ?? "")] ?? String(facts.arch ?? "");
      const a = rel.manifest.artifacts.find((x) => x.os === os && x.arch === arch);
      if (a === undefined) {
        noArtifact.push(node);
        continue;
      }
      want.set(node, { version: rel.manifest.version, releaseName: rel.name, artifact: { os: a.os, arch: a.arch, length: a.length, sha256: a.sha256 }, envelope: rel.envelope, ring: ringOf.get(node) ?? "" });
    }
    const change = await this.d.rollouts.commit(
      key.name,
      spec.cluster,
      spec.component,
      out.state,
      want,
      out.decisions.map((dec) => ({ action: `rollout.${dec.type.toLowerCase()}`, details: { ring: dec.ring, version: dec.version, nodes: dec.nodes?.slice(0, 100), message: dec.message } })),
    );
    if (change.assigned.length + change.removed.length > 0) ctx.log.info("rollout assignments changed", { channel: key.name, assigned: change.assigned.length, removed: change.removed.length });
    for (const dec of out.decisions) this.d.events?.event(obj, dec.warning === true ? "Warning" : "Normal", `Rollout${dec.type}`, dec.message);
    if (noArtifact.length > 0) this.d.events?.event(obj, "Warning", "NoArtifact", `${noArtifact.length} node(s) have no artifact for their OS/architecture: ${noArtifact.slice(0, 10).join(", ")}`);

    const status = statusOf(obj.status, obj.metadata.generation ?? 0, out, reportItems, now);
    await patchStatusIfChanged(this.d.api, { group: res.group, version: res.version, plural: res.plural, name: key.name }, obj.status, status);
    const moving = out.phase === "Progressing" || out.phase === "Halted";
    const poll = moving ? (this.d.pollMs?.moving ?? 2000) : (this.d.pollMs?.idle ?? 30_000);
    return { requeueAfterMs: Math.max(10, Math.min(poll, out.requeueMs ?? poll)) };
  }

  /** Verified releases of the channel's cluster and component, by version. */
  private async verifiedReleases(spec: ReleaseChannelSpec, trust: TrustSet, now: Date): Promise<Map<string, VerifiedRelease>> {
    const out = new Map<string, VerifiedRelease>();
    for (const r of this.d.releases.list()) {
      if (r.spec.cluster !== spec.cluster || r.spec.component !== spec.component) continue;
      // PostgreSQL's verification outcome is the authority; the status is only its mirror.
      const row = await this.d.releaseRows.get(r.metadata.name ?? "");
      if (row?.verified !== true || row.uid !== r.metadata.uid) continue;
      try {
        const v = verifyEnvelope(r.spec.envelope, trust, { component: spec.component, now });
        if (v.manifest.version !== r.spec.version) continue;
        out.set(v.manifest.version, { name: r.metadata.name ?? "", manifest: v.manifest, envelope: r.spec.envelope });
      } catch {
        // Status says verified but the envelope does not verify now (expired, trust rotated): not assignable.
      }
    }
    return out;
  }

  /** Rings with their nodes (a node belongs to the first ring that matches it). */
  private resolveRings(spec: ReleaseChannelSpec, nodes: readonly string[]): RingPolicy[] {
    const taken = new Set<string>();
    return (spec.rings ?? []).map((r) => {
      const sel = r.nodeSelector === undefined ? undefined : labelSelectorFromMetav1(r.nodeSelector);
      const groups = new Set(r.nodeGroups ?? []);
      const members = nodes.filter((n) => {
        if (taken.has(n)) return false;
        const obj = this.d.nodes.get({ name: n });
        if (obj === undefined) return false;
        return (sel !== undefined && matchesLabels(sel, obj.metadata.labels ?? {})) || (obj.spec.group !== undefined && groups.has(obj.spec.group));
      });
      for (const n of members) taken.add(n);
      return { name: r.name, nodes: members, version: r.version ?? "current", soakMs: parseDuration(r.soakTime ?? "1h") };
    });
  }

  private async publishProblem(obj: ReleaseChannelObject, reason: string, message: string, now: Date): Promise<ReconcileResult> {
    const status: ReleaseChannelStatus = {
      ...obj.status,
      observedGeneration: obj.metadata.generation ?? 0,
      conditions: setCondition(obj.status?.conditions as Condition[] | undefined, { type: "Ready", status: "False", reason, message }, now) as ReleaseChannelStatus["conditions"],
    };
    await patchStatusIfChanged(this.d.api, { group: res.group, version: res.version, plural: res.plural, name: obj.metadata.name ?? "" }, obj.status, status);
    return { requeueAfterMs: this.d.pollMs?.idle ?? 30_000 };
  }
}

/** The channel spec as the plan reads it. */
export function policyOf(spec: ReleaseChannelSpec, rings: RingPolicy[]): ChannelPolicy {
  const gate = spec.healthGate ?? {};
  return {
    stable: spec.stable === "" ? undefined : spec.stable,
    current: spec.current === "" ? undefined : spec.current,
    candidate: spec.candidate === "" ? undefined : spec.candidate,
    rings,
    maxUnavailable: spec.maxUnavailable ?? 1,
    minHealthyPercent: gate.minHealthyPercent ?? 100,
    maxFailures: gate.maxFailures ?? 1,
    paused: spec.paused ?? false,
    blocklist: spec.blocklist ?? [],
    pin: spec.pin === undefined ? undefined : { version: spec.pin.version, reason: spec.pin.reason },
  };
}

/** A report list in a comparable form (undefined members dropped and keys ordered, as a stored status may reorder them). */
const n0 = (v: unknown): string => canonicalJson(v === undefined ? null : JSON.parse(JSON.stringify(v)));

/** An update report item with its node. */
export type NodeReport = UpdateReportItem & { node: string };

const FAILED = new Set(["rolled_back", "failed", "fenced", "rollback_required", "rolling_back"]);

/** The node's report the plan judges by: a failure if any workload failed, else the least advanced one. */
function worstReport(items: UpdateReportItem[], workloads: readonly string[]): NodeObservation["report"] {
  if (items.length === 0) return undefined;
  const failed = items.find((i) => FAILED.has(i.state));
  if (failed !== undefined) return { state: failed.state, version: failed.version, reason: failed.reason };
  // Every workload must report running on a version for the node to count as updated.
  const running = items.filter((i) => i.state === "running");
  if (running.length === workloads.length && new Set(running.map((i) => i.version)).size === 1) return { state: "running", version: running[0]?.version };
  const other = items.find((i) => i.state !== "running") ?? items[0];
  return other === undefined ? undefined : { state: other.state, version: other.version, reason: other.reason };
}

/** The channel's status from a plan. */
export function statusOf(prev: ReleaseChannelStatus | undefined, generation: number, out: PlanOutput, reports: readonly NodeReport[], now: Date): ReleaseChannelStatus {
  const s = out.state;
  const states = new Map<string, number>();
  for (const r of reports) states.set(r.state, (states.get(r.state) ?? 0) + 1);
  const total = out.rings.reduce((a, r) => a + r.total, 0);
  const updated = out.rings.reduce((a, r) => a + r.updated, 0);
  const targets = [...new Set(out.rings.map((r) => r.targetVersion).filter((v): v is string => v !== undefined))];
  const failures = reports
    .filter((r) => FAILED.has(r.state) && r.version !== undefined)
    .map((r) => ({ node: r.node, version: r.version as string, reason: r.reason, time: r.since }));
  const ready = out.phase === "Complete" || out.phase === "Pinned";
  const reason = { Idle: "Idle", Progressing: "Progressing", Complete: "RolloutComplete", Halted: "RolloutHalted", Paused: "Paused", Pinned: "Pinned" }[out.phase];
  const message = out.phase === "Halted" ? (s.halted?.reason ?? "halted") : `${updated}/${total} nodes on ${targets.join(", ") || "no version"}`;
  return {
    observedGeneration: generation,
    phase: out.phase,
    progress: `${updated}/${total} nodes on ${targets.join(", ") || "-"}`.slice(0, 256),
    stable: s.stable,
    lastCompleted: s.lastCompleted,
    halted: s.halted === undefined ? undefined : { version: s.halted.version, ring: s.halted.ring, reason: s.halted.reason, time: formatTime(new Date(s.halted.at)) },
    nodeStates: [...states].sort(([a], [b]) => a.localeCompare(b)).slice(0, 16).map(([state, nodes]) => ({ state, nodes })),
    rings: out.rings.map((r) => ({
      name: r.name,
      targetVersion: r.targetVersion,
      phase: r.phase,
      total: r.total,
      updated: r.updated,
      healthy: r.healthy,
      failed: r.failed,
      healthySince: r.healthySince === undefined ? undefined : formatTime(new Date(r.healthySince)),
    })),
    failures: failures.slice(0, MAX_FAILURES_LISTED),
    promotionHistory: s.history.map((h) => ({ version: h.version, to: h.to, time: formatTime(new Date(h.at)) })),
    conditions: setCondition(prev?.conditions as Condition[] | undefined, { type: "Ready", status: ready ? "True" : "False", reason, message }, now) as ReleaseChannelStatus["conditions"],
  };
}
