/**
 * Snapshot verification on the agent, in one fixed order (ARCHITECTURE.md,
 * "Signed, scoped snapshots"; nebula's ca_pool.go for the typed errors):
 *
 *  1. size      bytes.length <= maxBytes (default 4 MiB), before anything is
 *               parsed, so a hostile or broken server cannot make the agent
 *               parse an unbounded document                  → ErrMalformed
 *  2. shape     strict UTF-8, nesting at most 64 deep (counted on the raw
 *               text before parsing: lib/json-limits.ts), JSON, closed v1
 *               envelope/header, typed payload, canonical form
 *                                                            → ErrMalformed
 *  3. key       header.keyId is in the trusted set           → ErrUnknownKey
 *  4. signature Ed25519 over SIGNATURE_DOMAIN + canonical({header, payload})
 *                                                            → ErrBadSignature
 *  5. cluster   header.cluster is this membership's cluster  → ErrWrongCluster
 *  6. node      header.node and payload.identity.name are this node
 *                                                            → ErrWrongNode
 *  7. term      authorityTerm >= last seen term              → ErrOlderTerm
 *  8. serial    serial >= last applied serial                → ErrRollback
 *  9. expiry    expiresAt > now                              → ErrExpired
 *  then: same term and same serial as last applied → "unchanged", else "accepted".
 *
 * Why this order. Nothing in the header means anything until the signature
 * holds, so 3-4 come before every semantic check: a tampered header must fail
 * as BadSignature, never as WrongNode or Rollback (otherwise an attacker could
 * probe the agent's trust state, and the reported reason would be a lie).
 * Steps 5-9 then defend against the three TUF attacks that a valid signature
 * does not stop:
 *  - mix-and-match (5, 6): a genuine snapshot of another cluster or another
 *    node replayed to this one. The key set is per cluster, so a key of
 *    another cluster is already UnknownKey at 3; 5 catches a key shared or
 *    misconfigured across clusters;
 *  - rollback (7, 8): a genuine but older snapshot, or one from a fenced
 *    ex-leader (older authority term). Term first: it is the coarser clock,
 *    and a lower term is rejected even with a higher serial;
 *  - freeze (9): a genuine, newest-we-know snapshot that should no longer be
 *    trusted because the control plane stopped renewing it. Expiry is last so
 *    that a replay is reported as what it is (Rollback) rather than as
 *    Expired, and because expiry alone is the one failure the agent may live
 *    with (see agent/state/checkpoint.ts: boot in stale mode).
 *
 * Only typed errors leave the verifier. Everything computed from the bytes
 * is guarded (the depth limit keeps every later walk shallow, and the
 * canonicaliser does not recurse anyway); should anything derived from the
 * bytes still throw something else, it is reported as ErrMalformed with the
 * original as its cause, so a hostile snapshot always shows up as a
 * rejection (status, metrics) and never as a transport failure. The only
 * other errors are TypeErrors for caller bugs in the context (an invalid
 * clock, a trusted key that is not an Ed25519 public key).
 *
 * What is verified is what is used: the signature covers the canonical form
 * of the *parsed* header and payload, so duplicate JSON keys, number spellings
 * or whitespace in the received bytes cannot make the agent act on anything
 * other than what was signed.
 *
 * "unchanged" is only returned when every check passed; an expired re-send of
 * the current serial is ErrExpired, so the agent learns that it is stale.
 * An equal serial under a higher term is "accepted": the new authority's
 * snapshot supersedes (serials continue across terms in PostgreSQL, so this
 * only happens if a new leader re-issued the serial).
 */
import { verify as edVerify, type KeyObject } from "node:crypto";
import { JsonLimitError, parseJsonWithLimits } from "../json-limits.js";
import { canonicalize, CanonicalizeError } from "./canonical-json.js";
import {
  SnapshotError,
  ErrBadSignature,
  ErrExpired,
  ErrMalformed,
  ErrOlderTerm,
  ErrRollback,
  ErrUnknownKey,
  ErrWrongCluster,
  ErrWrongNode,
} from "./errors.js";
import { SIGNATURE_DOMAIN, type SignedSnapshot } from "./format.js";
import { assertSignedSnapshot } from "./shape.js";

export {
  SnapshotError,
  ErrBadSignature,
  ErrExpired,
  ErrMalformed,
  ErrOlderTerm,
  ErrRollback,
  ErrUnknownKey,
  ErrWrongCluster,
  ErrWrongNode,
  type SnapshotErrorCode,
} from "./errors.js";

/** Default upper bound on a snapshot's encoded size. */
export const DEFAULT_MAX_SNAPSHOT_BYTES = 4 * 1024 * 1024;

/**
 * Deepest nesting of arrays and objects a snapshot may have, envelope
 * included. A real v1 snapshot is 6 deep (envelope > payload > workloads >
 * workload > healthProbe > command); the rest is room for payload members a
 * later v1 builder may add.
 */
export const DEFAULT_MAX_SNAPSHOT_DEPTH = 64;

/** What the agent knows when it verifies a snapshot for one cluster membership. */
export interface VerifyContext {
  /** Snapshot keys trusted for this cluster, by key id ({@link keyIdOf}). Ed25519 public keys. */
  trustedKeys: ReadonlyMap<string, KeyObject>;
  /** This membership's cluster. */
  cluster: string;
  /** This node's FabricNode name. */
  node: string;
  /** Highest authority term seen in an applied snapshot; undefined before the first. */
  lastTerm?: number;
  /** Serial of the last applied snapshot; undefined before the first. */
  lastSerial?: number;
  /** The verifier's clock (injected). */
  now: Date;
  /** Size limit in bytes; default {@link DEFAULT_MAX_SNAPSHOT_BYTES}. */
  maxBytes?: number;
}

/** A caller bug in the VerifyContext: let through as is, never reported as a snapshot rejection. */
class ContextError extends TypeError {}

/** A snapshot that passed every check. "unchanged": same term and serial as the last applied one; nothing to do. */
export interface VerifyResult {
  status: "accepted" | "unchanged";
  snapshot: SignedSnapshot;
}

/** {@link VerifyResult} plus whether the snapshot is expired, for callers that may run stale. */
export interface InspectResult extends VerifyResult {
  expired: boolean;
}

/**
 * Runs checks 1-8 of the module comment and reports expiry (9) instead of
 * throwing it. Throws the SnapshotError of the first failing check, or a
 * TypeError for a caller bug (invalid clock, a trusted key that is not an
 * Ed25519 public key), and nothing else. Used by
 * the checkpoint loader, which boots from an expired snapshot in stale mode;
 * everything else should call {@link verifySnapshot}.
 */
export function inspectSnapshot(bytes: Uint8Array, ctx: VerifyContext): InspectResult {
  try {
    return inspect(bytes, ctx);
  } catch (err) {
    if (err instanceof SnapshotError || err instanceof ContextError) throw err;
    throw new ErrMalformed(`unexpected ${err instanceof Error ? err.name : typeof err} while reading the snapshot`, { cause: err });
  }
}

function inspect(bytes: Uint8Array, ctx: VerifyContext): InspectResult {
  // An Invalid Date would make every expiry comparison false, i.e. every snapshot fresh.
  const nowMs = ctx.now.getTime();
  if (!Number.isFinite(nowMs)) throw new ContextError("verifying a snapshot needs a valid clock");

  // 1. size, before parsing; 2. shape: UTF-8, depth before parsing, JSON.
  const maxBytes = ctx.maxBytes ?? DEFAULT_MAX_SNAPSHOT_BYTES;
  let parsed: unknown;
  try {
    parsed = parseJsonWithLimits(bytes, { maxBytes, maxDepth: DEFAULT_MAX_SNAPSHOT_DEPTH });
  } catch (cause) {
    if (!(cause instanceof JsonLimitError)) throw cause;
    const reason = cause.code === "NotUtf8" || cause.code === "NotJson" ? "not UTF-8 JSON" : cause.reason;
    throw new ErrMalformed(reason, { cause });
  }
  assertSignedSnapshot(parsed);
  const snapshot = parsed;
  const { header, payload } = snapshot;
  const signature = Buffer.from(snapshot.signature, "base64");
  // Only the canonical base64 spelling: the stored bytes then have one form.
  if (signature.toString("base64") !== snapshot.signature) throw new ErrMalformed("/signature: non-canonical base64");
  let message: Buffer;
  try {
    message = Buffer.from(SIGNATURE_DOMAIN + canonicalize({ header, payload }), "utf8");
  } catch (cause) {
    // A lone surrogate escaped in a JSON string, or a number that parsed to Infinity.
    if (cause instanceof CanonicalizeError) throw new ErrMalformed(`${cause.path}: ${cause.reason}`, { cause });
    throw cause;
  }

  // 3. key.
  const key = ctx.trustedKeys.get(header.keyId);
  if (key === undefined) throw new ErrUnknownKey(header.keyId);
  if (key.asymmetricKeyType !== "ed25519" || key.type !== "public") {
    throw new ContextError(`trusted snapshot key ${header.keyId} is not an ed25519 public key`);
  }

  // 4. signature.
  if (!edVerify(null, message, key, signature)) throw new ErrBadSignature(header.keyId);

  // 5-6. binding (mix-and-match).
  if (header.cluster !== ctx.cluster) throw new ErrWrongCluster(header.cluster, ctx.cluster);
  if (header.node !== ctx.node) throw new ErrWrongNode(header.node, ctx.node);
  // A signed payload describing another node than its header is a builder bug; never apply it.
  if (payload.identity.name !== ctx.node) throw new ErrWrongNode(payload.identity.name, ctx.node);

  // 7-8. rollback.
  if (ctx.lastTerm !== undefined && header.authorityTerm < ctx.lastTerm) {
    throw new ErrOlderTerm(header.authorityTerm, ctx.lastTerm);
  }
  if (ctx.lastSerial !== undefined && header.serial < ctx.lastSerial) {
    throw new ErrRollback(header.serial, ctx.lastSerial);
  }

  // 9. freeze: reported here, thrown by verifySnapshot.
  const expired = Date.parse(header.expiresAt) <= nowMs;

  const sameTerm = ctx.lastTerm === undefined || header.authorityTerm === ctx.lastTerm;
  const unchanged = ctx.lastSerial !== undefined && header.serial === ctx.lastSerial && sameTerm;
  return { status: unchanged ? "unchanged" : "accepted", snapshot, expired };
}

/**
 * Verifies encoded snapshot bytes for this node in the fixed order of the
 * module comment. Returns "accepted" (apply it) or "unchanged" (same term and
 * serial as the last applied one: a no-op). Throws the SnapshotError subclass
 * of the first failing check (a rejected snapshot must change nothing), or a
 * TypeError for a caller bug (see {@link inspectSnapshot}).
 */
export function verifySnapshot(bytes: Uint8Array, ctx: VerifyContext): VerifyResult {
  const { status, snapshot, expired } = inspectSnapshot(bytes, ctx);
  if (expired) throw new ErrExpired(snapshot.header.expiresAt, ctx.now.toISOString());
  return { status, snapshot };
}
