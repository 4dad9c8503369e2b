/**
 * Pure decisions of the ReleaseChannel controller: which version each node
 * of the channel is assigned, ring by ring, from the channel policy, the
 * verified releases, the agents' update reports and the persisted rollout
 * state.
 *
 * Rules (docs/releases.md, "Channels and rollouts"):
 * - A ring's target is the channel's `candidate` (falling back to `current`)
 *   or its `current`, per ring. A ring moves to its target only after every
 *   earlier ring with the same target completed.
 * - A moving ring assigns the target to at most maxUnavailable nodes that are
 *   not yet updated at once; a node counts as updated once its agent reports
 *   `running` on the target, its FabricNode is Ready and its workload
 *   instances are ready. When every node of the ring is updated and the
 *   healthy share reaches minHealthyPercent, the ring soaks; soakTime later
 *   it is complete. Losing health during the soak restarts it.
 * - Failed updates (reports rolled_back, failed or fenced for the target)
 *   reaching maxFailures halt the rollout: the version is refused for the
 *   channel until its target changes, the ring's nodes go back to `stable`,
 *   later rings never receive it.
 * - `stable` is the status' last version that completed a rollout over
 *   every ring (set automatically on completion); spec.stable is accepted
 *   only if it names such a version.
 * - Only verified, non-blocklisted, non-halted versions are ever assigned;
 *   a node whose assignment is not assignable goes back to stable (or has
 *   no assignment when there is no assignable stable).
 * - pin assigns one version to every node, overriding rings; paused stops
 *   new assignments and ring progress but never a halt's rollback.
 * Every change comes with a decision (audited and emitted as an Event by the
 * reconciler).
 */

/** Ring phases in status. */
export type RingPhase = "Idle" | "Pending" | "WaitingForRelease" | "Blocked" | "Paused" | "Progressing" | "Soaking" | "Complete" | "Halted" | "Pinned";

/** Update states the agents report (seed). */
export const UPDATE_STATES = [
  "idle",
  "checking",
  "downloading",
  "verifying",
  "staging",
  "migrating",
  "starting",
  "health_checking",
  "promoting",
  "running",
  "rollback_required",
  "rolling_back",
  "rolled_back",
  "failed",
  "fenced",
] as const;
export type UpdateState = (typeof UPDATE_STATES)[number];

/** States that count as a failed update of the version reported. */
export const FAILED_STATES: ReadonlySet<string> = new Set(["rollback_required", "rolling_back", "rolled_back", "failed", "fenced"]);

/** One ring with its nodes resolved (a node belongs to the first ring that matches it). */
export interface RingPolicy {
  name: string;
  nodes: readonly string[];
  version: "candidate" | "current";
  soakMs: number;
}

/** The channel spec the plan needs. */
export interface ChannelPolicy {
  stable?: string;
  current?: string;
  candidate?: string;
  rings: readonly RingPolicy[];
  /** A count, or a percentage such as "25%" of the ring's nodes (at least 1). */
  maxUnavailable: number | string;
  minHealthyPercent: number;
  /** Failed updates in a ring that halt the rollout (0 counts as 1). */
  maxFailures: number;
  paused: boolean;
  blocklist: readonly string[];
  pin?: { version: string; reason?: string };
}

/** What is known about one node of the channel. */
export interface NodeObservation {
  /** Version currently assigned to the node (PostgreSQL). */
  assigned?: string;
  /** The agent's newest update report for the channel's workloads on this node. */
  report?: { state: string; version?: string; reason?: string };
  /** FabricNode Ready. */
  nodeReady: boolean;
  /** Every instance of the channel's workloads on the node reports ready. */
  instancesReady: boolean;
}

/** Persisted progress of one ring. */
export interface RingState {
  target?: string;
  phase: RingPhase;
  healthySince?: number;
}

/** Rollout progress persisted between reconciles (PostgreSQL, release_rollouts.state). */
export interface RolloutState {
  rings: Record<string, RingState>;
  stable?: string;
  current?: string;
  lastCompleted?: string;
  /** Versions that completed a rollout, newest first (bounded). */
  completed: string[];
  halted?: { version: string; ring: string; at: number; reason: string };
  history: { version: string; to: "current" | "stable"; at: number }[];
  /** The spec.stable last refused (refused once, not at every reconcile). */
  refusedStable?: string;
}

export const MAX_COMPLETED = 50;
export const MAX_HISTORY = 50;

/** One decision, for the audit log and Events. */
export interface RolloutDecision {
  type: "Assign" | "RollBack" | "Halt" | "RingSoaking" | "RingComplete" | "RolloutComplete" | "Promote" | "Refuse" | "Pin";
  ring?: string;
  version?: string;
  nodes?: string[];
  message: string;
  warning?: boolean;
}

/** Progress of one ring, for status. */
export interface RingProgress {
  name: string;
  targetVersion?: string;
  phase: RingPhase;
  total: number;
  updated: number;
  healthy: number;
  failed: number;
  healthySince?: number;
}

export interface PlanInput {
  policy: ChannelPolicy;
  /** Versions with a verified Release of the channel's component. */
  verified: ReadonlySet<string>;
  nodes: ReadonlyMap<string, NodeObservation>;
  state: RolloutState;
  now: number;
}

export interface PlanOutput {
  /** The version every node of the channel is assigned (undefined: none). */
  assignments: Map<string, string | undefined>;
  state: RolloutState;
  rings: RingProgress[];
  decisions: RolloutDecision[];
  /** Overall phase for status. */
  phase: "Idle" | "Progressing" | "Complete" | "Halted" | "Paused" | "Pinned";
  /** When the plan wants to look again (a soak ending), ms from now. */
  requeueMs?: number;
}

/** A fresh state. */
export function emptyRolloutState(): RolloutState {
  return { rings: {}, completed: [], history: [] };
}

/** maxUnavailable as a node count for a ring of `total` nodes (at least 1). */
export function maxUnavailableCount(v: number | string, total: number): number {
  if (typeof v === "number") return Math.max(1, Math.floor(v));
  const m = /^([0-9]+)(%?)$/.exec(v);
  if (m === null) return 1;
  const n = Number(m[1]);
  return Math.max(1, m[2] === "%" ? Math.ceil((n * total) / 100) : n);
}

interface NodeOutcome {
  updated: boolean;
  healthy: boolean;
  failed: boolean;
}

function outcome(o: NodeObservation | undefined, target: string): NodeOutcome {
  const r = o?.report;
  const onTarget = o?.assigned === target && r !== undefined && r.version === target;
  const updated = onTarget && r.state === "running";
  return {
    updated,
    healthy: updated && o.nodeReady && o.instancesReady,
    failed: r !== undefined && r.version === target && FAILED_STATES.has(r.state),
  };
}

function clone(s: RolloutState): RolloutState {
  return {
    rings: Object.fromEntries(Object.entries(s.rings).map(([k, v]) => [k, { ...v }])),
    stable: s.stable,
    current: s.current,
    lastCompleted: s.lastCompleted,
    completed: [...s.completed],
    halted: s.halted === undefined ? undefined : { ...s.halted },
    history: s.history.map((h) => ({ ...h })),
    refusedStable: s.refusedStable,
  };
}

function pushHistory(s: RolloutState, entry: RolloutState["history"][number]): void {
  s.history = [entry, ...s.history].slice(0, MAX_HISTORY);
}

/** See the module comment. */
export function planRollout(input: PlanInput): PlanOutput {
  const { policy, verified, nodes, now } = input;
  const state = clone(input.state);
  const decisions: RolloutDecision[] = [];
  const blocked = new Set(policy.blocklist);

  // Promotions recorded from the spec: current moves; stable only to a completed version.
  if (policy.current !== undefined && policy.current !== state.current) {
    state.current = policy.current;
    pushHistory(state, { version: policy.current, to: "current", at: now });
    decisions.push({ type: "Promote", version: policy.current, message: `current is now ${policy.current}` });
  }
  if (policy.stable !== undefined && policy.stable !== state.stable) {
    if (state.completed.includes(policy.stable) && verified.has(policy.stable)) {
      state.stable = policy.stable;
      pushHistory(state, { version: policy.stable, to: "stable", at: now });
      decisions.push({ type: "Promote", version: policy.stable, message: `stable is now ${policy.stable} (set in spec)` });
    } else if (state.refusedStable !== policy.stable) {
      state.refusedStable = policy.stable;
      decisions.push({
        type: "Refuse",
        version: policy.stable,
        warning: true,
        message: `spec.stable ${policy.stable} refused: only a verified release that completed a rollout may become stable`,
      });
    }
  }

  const assignable = (v: string | undefined): v is string => v !== undefined && verified.has(v) && !blocked.has(v);
  const fallback = assignable(state.stable) ? state.stable : undefined;
  const assignments = new Map<string, string | undefined>();
  // Default: keep what a node has if still assignable, else stable.
  for (const [node, o] of nodes) assignments.set(node, assignable(o.assigned) ? o.assigned : fallback);

  const rollBack = (list: string[], why: string, ring?: string): void => {
    const moved = list.filter((n) => nodes.get(n)?.assigned !== undefined && nodes.get(n)?.assigned !== fallback);
    if (moved.length > 0) {
      decisions.push({
        type: "RollBack",
        ring,
        version: fallback,
        nodes: moved,
        warning: true,
        message: `${moved.length} node(s) back to ${fallback === undefined ? "no assignment (no stable release)" : `stable ${fallback}`}: ${why}`,
      });
    }
  };
  const notAssignable = [...nodes].filter(([, o]) => o.assigned !== undefined && !assignable(o.assigned)).map(([n]) => n);
  if (notAssignable.length > 0) rollBack(notAssignable, "assigned version blocklisted or not verified");

  // Emergency pin: every node, no rings.
  if (policy.pin !== undefined) {
    const v = policy.pin.version;
    const rings: RingProgress[] = [];
    if (!assignable(v) || state.halted?.version === v) {
      decisions.push({ type: "Refuse", version: v, warning: true, message: `pin ${v} refused: not a verified, allowed release` });
    } else {
      const moved = [...nodes.keys()].filter((n) => nodes.get(n)?.assigned !== v);
      for (const n of nodes.keys()) assignments.set(n, v);
      if (moved.length > 0) decisions.push({ type: "Pin", version: v, nodes: moved, message: `pinned to ${v}${policy.pin.reason ? `: ${policy.pin.reason}` : ""}` });
    }
    for (const r of policy.rings) {
      const c = count(r.nodes, nodes, v);
      rings.push({ name: r.name, targetVersion: v, phase: "Pinned", ...c });
    }
    return { assignments, state, rings, decisions, phase: "Pinned" };
  }

  const progress: RingProgress[] = [];
  let requeueMs: number | undefined;
  const complete = new Map<string, boolean>(); // target -> every earlier ring with it complete
  for (const ring of policy.rings) {
    const target = ring.version === "candidate" ? (policy.candidate ?? policy.current) : policy.current;
    let rs = state.rings[ring.name];
    if (rs === undefined || rs.target !== target) rs = { target, phase: "Pending" };
    state.rings[ring.name] = rs;
    const prereq = target === undefined || complete.get(target) !== false;
    const phase = ((): RingPhase => {
      if (target === undefined) return "Idle";
      if (blocked.has(target) || !verified.has(target)) return blocked.has(target) ? "Blocked" : "WaitingForRelease";
      // A ring that completed before a later ring halted keeps the version it proved.
      if (rs.phase === "Complete") return "Complete";
      if (state.halted?.version === target) return state.halted.ring === ring.name ? "Halted" : "Blocked";
      if (!prereq) return "Pending";
      if (policy.paused) return "Paused";
      return "Progressing";
    })();
    rs.phase = phase === "Progressing" && rs.phase === "Soaking" ? "Soaking" : phase;
    if (phase === "Halted" || phase === "Blocked") {
      const back = ring.nodes.filter((n) => nodes.get(n)?.assigned === target);
      if (assignable(target)) rollBack(back, `rollout of ${target} halted`, ring.name);
      for (const n of ring.nodes) if (assignments.get(n) === target) assignments.set(n, fallback);
    }
    if (phase === "Complete" && target !== undefined) {
      for (const n of ring.nodes) assignments.set(n, target);
    }
    if (phase === "Progressing" || phase === "Paused") {
      const t = target as string;
      const outcomes = new Map(ring.nodes.map((n) => [n, outcome(nodes.get(n), t)] as const));
      const failed = ring.nodes.filter((n) => outcomes.get(n)?.failed === true);
      // The halt threshold applies even while paused: a failing version is never left in place.
      if (failed.length >= Math.max(1, policy.maxFailures)) {
        state.halted = { version: t, ring: ring.name, at: now, reason: `${failed.length} failed update(s) in ring ${ring.name}` };
        rs.phase = "Halted";
        delete rs.healthySince;
        decisions.push({
          type: "Halt",
          ring: ring.name,
          version: t,
          nodes: failed,
          warning: true,
          message: `rollout of ${t} halted in ring ${ring.name}: ${failed.length} failed update(s) (threshold ${Math.max(1, policy.maxFailures)})`,
        });
        const back = ring.nodes.filter((n) => nodes.get(n)?.assigned === t);
        rollBack(back, `rollout of ${t} halted`, ring.name);
        for (const n of ring.nodes) if (assignments.get(n) === t) assignments.set(n, fallback);
        // Later rings with this target see the halt; earlier completed ones keep what they run.
        for (const later of policy.rings.slice(policy.rings.indexOf(ring) + 1)) {
          for (const n of later.nodes) if (assignments.get(n) === t) assignments.set(n, fallback);
        }
        progress.push({ name: ring.name, targetVersion: t, phase: "Halted", ...count(ring.nodes, nodes, t) });
        complete.set(t, false);
        continue;
      }
      if (phase === "Progressing") {
        for (const n of ring.nodes) if (nodes.get(n)?.assigned === t) assignments.set(n, t);
        const inFlight = ring.nodes.filter((n) => assignments.get(n) === t && outcomes.get(n)?.updated !== true).length;
        const room = maxUnavailableCount(policy.maxUnavailable, ring.nodes.length) - inFlight;
        const fresh = [...ring.nodes].sort().filter((n) => assignments.get(n) !== t).slice(0, Math.max(0, room));
        for (const n of fresh) assignments.set(n, t);
        if (fresh.length > 0) decisions.push({ type: "Assign", ring: ring.name, version: t, nodes: fresh, message: `${fresh.length} node(s) of ring ${ring.name} assigned ${t}` });
        const c = count(ring.nodes, nodes, t);
        const gate = ring.nodes.length > 0 && c.updated === ring.nodes.length && (c.healthy * 100) / ring.nodes.length >= policy.minHealthyPercent;
        if (!gate) {
          rs.phase = "Progressing";
          delete rs.healthySince;
        } else {
          if (rs.healthySince === undefined) {
            rs.healthySince = now;
            decisions.push({ type: "RingSoaking", ring: ring.name, version: t, message: `ring ${ring.name} passed the health gate on ${t}; soaking` });
          }
          if (now - rs.healthySince >= ring.soakMs) {
            rs.phase = "Complete";
            decisions.push({ type: "RingComplete", ring: ring.name, version: t, message: `ring ${ring.name} completed ${t}` });
          } else {
            rs.phase = "Soaking";
            const left = ring.soakMs - (now - rs.healthySince);
            requeueMs = Math.min(requeueMs ?? left, left);
          }
        }
      } else {
        // Paused: nodes already moved keep their target, nobody new moves.
        for (const n of ring.nodes) if (nodes.get(n)?.assigned === t) assignments.set(n, t);
      }
    }
    if (target !== undefined) complete.set(target, complete.get(target) !== false && rs.phase === "Complete");
    progress.push({ name: ring.name, targetVersion: target, phase: rs.phase, ...count(ring.nodes, nodes, target), healthySince: rs.healthySince });
  }

  // A version that completed every ring it targets, and is current, completed a rollout.
  const cur = policy.current;
  const curRings = policy.rings.filter((r) => (r.version === "current" ? cur : (policy.candidate ?? cur)) === cur);
  if (cur !== undefined && curRings.length > 0 && curRings.every((r) => state.rings[r.name]?.phase === "Complete") && state.lastCompleted !== cur) {
    state.lastCompleted = cur;
    state.completed = [cur, ...state.completed.filter((v) => v !== cur)].slice(0, MAX_COMPLETED);
    decisions.push({ type: "RolloutComplete", version: cur, message: `${cur} completed its rollout over every ring` });
    if (state.stable !== cur) {
      state.stable = cur;
      pushHistory(state, { version: cur, to: "stable", at: now });
      decisions.push({ type: "Promote", version: cur, message: `stable is now ${cur} (completed rollout)` });
    }
  }
  const phases = progress.map((p) => p.phase);
  const phase: PlanOutput["phase"] = phases.includes("Halted")
    ? "Halted"
    : policy.paused && phases.some((p) => p !== "Complete" && p !== "Idle")
      ? "Paused"
      : phases.length > 0 && phases.every((p) => p === "Complete")
        ? "Complete"
        : phases.every((p) => p === "Idle")
          ? "Idle"
          : "Progressing";
  return { assignments, state, rings: progress, decisions, phase, requeueMs };
}

function count(ringNodes: readonly string[], nodes: ReadonlyMap<string, NodeObservation>, target: string | undefined): Omit<RingProgress, "name" | "phase" | "targetVersion"> {
  let updated = 0;
  let healthy = 0;
  let failed = 0;
  if (target !== undefined) {
    for (const n of ringNodes) {
      const o = outcome(nodes.get(n), target);
      if (o.updated) updated++;
      if (o.healthy) healthy++;
      if (o.failed) failed++;
    }
  }
  return { total: ringNodes.length, updated, healthy, failed };
}
