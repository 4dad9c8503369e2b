/**
 * Fixture builders for the table tests of the controllers' pure plans
 * (controllers/<kind>/plan.ts).
 *
 * Time comes from an injected FakeClock, never the wall clock, so an
 * expected lastTransitionTime or expiry is a constant of the test. Inputs
 * are deep-frozen (Maps included, which Object.freeze alone leaves
 * writable): a plan that mutated an object taken from an informer cache
 * would throw here instead of corrupting the cache in production.
 */
import assert from "node:assert/strict";
import { FakeClock } from "../../controllers/runtime/clock.js";
import type { Condition } from "../../controllers/runtime/conditions.js";
import type { HeartbeatRow } from "../../lib/state/heartbeats.js";
import type { ClusterRow, IdentityRow, NodeRoleRow, NodeRow, RequestRow, RoleCandidate, TokenRow, WorkloadReportRow } from "../../lib/state/index.js";
import type { StoredSnapshotMeta } from "../../lib/state/snapshots.js";

/** The instant every plan test starts at. */
export const T0 = new Date("2030-01-01T00:00:00Z");

/** A manual clock at T0 with Date helpers for plan inputs. */
export class PlanClock extends FakeClock {
  constructor(start: Date = T0) {
    super(start.getTime());
  }

  /** The current time as a Date (what reconcilers pass as `now`). */
  date(): Date {
    return new Date(this.now());
  }

  /** T0 plus `ms` (negative for the past), independent of advance(). */
  static at(ms: number): Date {
    return new Date(T0.getTime() + ms);
  }
}

/** T0 plus `ms`. */
export const at = PlanClock.at;

/** A Map whose mutators throw, for ReadonlyMap inputs. */
class FrozenMap<K, V> extends Map<K, V> {
  private sealed = false;
  constructor(entries: Iterable<readonly [K, V]>) {
    super();
    for (const [k, v] of entries) super.set(k, v);
    this.sealed = true;
  }
  override set(key: K, value: V): this {
    if (this.sealed) throw new TypeError("plan mutated a frozen Map (set)");
    return super.set(key, value);
  }
  override delete(_key: K): boolean {
    throw new TypeError("plan mutated a frozen Map (delete)");
  }
  override clear(): void {
    throw new TypeError("plan mutated a frozen Map (clear)");
  }
}

/**
 * Freezes value and everything reachable from it; Maps become read-only
 * Maps with frozen values. Dates and Buffers are left alone (they cannot be
 * frozen; plans only read them, and deterministic() compares copies).
 */
export function frozen<V>(value: V): V {
  if (value === null || typeof value !== "object" || value instanceof Date || ArrayBuffer.isView(value) || Object.isFrozen(value)) return value;
  if (value instanceof FrozenMap) return value;
  if (value instanceof Map) {
    const m = new FrozenMap([...value].map(([k, v]) => [frozen(k), frozen(v)] as const));
    return Object.freeze(m) as unknown as V;
  }
  Object.freeze(value);
  for (const k of Object.keys(value)) frozen((value as Record<string, unknown>)[k]);
  return value;
}

/** A frozen ReadonlyMap from entries. */
export function frozenMap<K, V>(entries: Iterable<readonly [K, V]>): ReadonlyMap<K, V> {
  return frozen(new Map(entries));
}

/**
 * Runs `plan` twice on the same (frozen) inputs and asserts both results
 * are equal and the inputs still deep-equal copies taken before the first
 * run.
 * Returns the first result.
 */
export function deterministic<A extends unknown[], R>(plan: (...args: A) => R, ...args: A): R {
  // Functions (lookups, matchers) cannot be cloned; they are compared by identity.
  const copy = (): unknown[] => args.map((a) => (typeof a === "function" ? a : structuredClone(a)));
  const before = copy();
  const first = plan(...args);
  const second = plan(...args);
  assert.deepEqual(second, first, "same input, same output");
  assert.deepEqual(copy(), before, "inputs unchanged");
  return first;
}

/** The condition of type t in a status, or a failed assertion. */
export function conditionOf(status: { conditions?: ReadonlyArray<unknown> } | undefined, t: string): Condition {
  const c = (status?.conditions as Condition[] | undefined)?.find((x) => x.type === t);
  assert.ok(c !== undefined, `condition ${t} present`);
  return c;
}

/** A condition as it would have been published at `when`. */
export function publishedCondition(c: Omit<Condition, "lastTransitionTime">, when: Date): Condition {
  return { ...c, lastTransitionTime: when.toISOString().replace(/\.\d+Z$/, "Z") };
}

const fp = (c: string): string => `sha256:${c.repeat(64)}`;

/** A clusters row. */
export function clusterRow(over: Partial<ClusterRow> = {}): ClusterRow {
  return {
    name: "east",
    uid: "uid-east-1",
    generation: 1,
    spec: { displayName: "East" },
    caCertPem: "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n",
    caFingerprint: fp("a"),
    snapshotPublicKey: "pk",
    snapshotKeyId: "key-1",
    snapshotKeyFingerprint: fp("b"),
    ...over,
  };
}

/** A nodes row of an Active node. */
export function nodeRow(over: Partial<NodeRow> = {}): NodeRow {
  return {
    name: "east.web-1",
    cluster: "east",
    nodeName: "web-1",
    hostFingerprint: fp("c"),
    membership: "Active",
    joinRequest: "jr-web-1",
    capabilities: ["can_route_mesh"],
    facts: { os: "linux" },
    nodeGroup: null,
    ...over,
  };
}

/** The active identity of a node, valid from an hour before T0 to a day after, issued a minute before T0. */
export function identityRow(over: Partial<IdentityRow> = {}): IdentityRow {
  return {
    serial: "0a1b2c",
    node: "east.web-1",
    cluster: "east",
    publicKeyFingerprint: fp("d"),
    notBefore: at(-3_600_000),
    notAfter: at(86_400_000),
    status: "active",
    issuedAt: at(-60_000),
    ...over,
  };
}

/** A heartbeat received at T0 + receivedMs. */
export function heartbeatRow(receivedMs: number, over: Partial<HeartbeatRow> = {}): HeartbeatRow {
  return {
    node: "east.web-1",
    cluster: "east",
    receivedAt: at(receivedMs),
    seq: 1,
    agentVersion: "0.1.0",
    capabilities: ["can_route_mesh", "can_accept_node_ingress"],
    facts: { os: "linux", hostname: "web-1" },
    health: "Healthy",
    healthMessage: "",
    ...over,
  };
}

/** A join_requests row, Pending, made with a manual-approval token. */
export function requestRow(over: Partial<RequestRow> = {}): RequestRow {
  return {
    name: "jr-web-1",
    cluster: "east",
    tokenName: "tok-1",
    nodeName: "web-1",
    hostFingerprint: fp("c"),
    publicKeyFingerprint: fp("d"),
    publicKeyDer: Buffer.from("der"),
    csrPem: "-----BEGIN CERTIFICATE REQUEST-----\n",
    capabilities: ["can_accept_client_ingress"],
    requestedRoles: ["entry-node"],
    facts: { hostname: "web-1" },
    nodeGroup: null,
    autoApprove: false,
    state: "Pending",
    approvedHow: null,
    reason: null,
    fabricNode: null,
    certificatePem: null,
    decidedAt: null,
    createdAt: at(-60_000),
    ...over,
  };
}

/** A join_tokens row: 3 uses, none used, expiring an hour after T0. */
export function tokenRow(over: Partial<TokenRow> = {}): TokenRow {
  return {
    name: "tok-1",
    uid: "uid-tok-1",
    tokenId: "abcdef",
    secretHash: Buffer.from("hash"),
    cluster: "east",
    expiresAt: at(3_600_000),
    maxUses: 3,
    used: 0,
    allowedRoles: [],
    autoApprove: false,
    nodeGroup: null,
    revokedAt: null,
    expiredAt: null,
    lastUsedAt: null,
    ...over,
  };
}

/** An enrollment record as RoleAssignment sees it. */
export function candidate(name: string, over: Partial<RoleCandidate> = {}): RoleCandidate {
  return { name, cluster: "east", membership: "Active", capabilities: [], ...over };
}

/** A node_roles row. */
export function holder(node: string, organization = "", over: Partial<NodeRoleRow> = {}): NodeRoleRow {
  return { assignment: "ra-1", node, cluster: "east", role: "entry-node", organization, ...over };
}

/** A workload report, Running and ready at generation 1. */
export function reportRow(node: string, over: Partial<WorkloadReportRow> = {}): WorkloadReportRow {
  return {
    node,
    workload: "web",
    state: "Running",
    ready: true,
    reason: "",
    message: "",
    restartCount: 0,
    observedGeneration: 1,
    reportedAt: T0,
    ...over,
  };
}

/** A stored snapshot issued at T0 + issuedMs for lifetimeMs. */
export function storedSnapshot(issuedMs: number, lifetimeMs: number, over: Partial<StoredSnapshotMeta> = {}): StoredSnapshotMeta {
  return {
    cluster: "east",
    node: "east.web-1",
    serial: 7,
    term: 1,
    payloadHash: "p1",
    hash: "h1",
    issuedAt: at(issuedMs),
    expiresAt: at(issuedMs + lifetimeMs),
    ...over,
  };
}
