/**
 * Structural checks of a parsed snapshot, shared by the signer (so a builder
 * bug fails at build time) and the verifier (so nothing downstream reads a
 * field of the wrong type). Purely structural: no key, clock or trust state
 * is consulted here. Every failure is an ErrMalformed naming a JSON Pointer.
 *
 * The envelope and the header are closed (unknown members rejected: an old
 * agent must not silently ignore a new header constraint). Payload objects
 * are open: later v1 builders may add members that older agents ignore.
 */
import { ErrMalformed } from "./errors.js";
import type {
  SignedSnapshot,
  SnapshotHeader,
  SnapshotPayload,
} from "./format.js";

type Json = Record<string, unknown>;

const RFC3339_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;
const KEY_ID = /^[0-9a-f]{16}$/;
/** 64 signature bytes in padded standard base64. */
const SIGNATURE = /^[A-Za-z0-9+/]{86}==$/;

const HEADER_KEYS = ["formatVersion", "cluster", "node", "serial", "authorityTerm", "issuedAt", "expiresAt", "keyId"];
const ENVELOPE_KEYS = ["header", "payload", "signature"];

function fail(path: string, what: string): never {
  throw new ErrMalformed(`${path === "" ? "(root)" : path}: ${what}`);
}

function obj(v: unknown, path: string): Json {
  if (typeof v !== "object" || v === null || Array.isArray(v)) fail(path, "expected an object");
  return v as Json;
}

function closed(o: Json, allowed: readonly string[], path: string): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) fail(`${path}/${k}`, "unknown member");
}

function str(o: Json, key: string, path: string, opts: { optional?: boolean; nonEmpty?: boolean } = {}): void {
  const v = o[key];
  if (v === undefined && opts.optional) return;
  if (typeof v !== "string") fail(`${path}/${key}`, "expected a string");
  if (opts.nonEmpty !== false && v.length === 0) fail(`${path}/${key}`, "expected a non-empty string");
}

function uint(o: Json, key: string, path: string): void {
  const v = o[key];
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) fail(`${path}/${key}`, "expected a non-negative integer");
}

function bool(o: Json, key: string, path: string): void {
  if (typeof o[key] !== "boolean") fail(`${path}/${key}`, "expected a boolean");
}

function oneOf(o: Json, key: string, values: readonly string[], path: string, optional = false): void {
  const v = o[key];
  if (v === undefined && optional) return;
  if (typeof v !== "string" || !values.includes(v)) fail(`${path}/${key}`, `expected one of ${values.join(", ")}`);
}

function time(o: Json, key: string, path: string): number {
  const v = o[key];
  if (typeof v !== "string" || !RFC3339_UTC.test(v)) fail(`${path}/${key}`, "expected an RFC 3339 UTC timestamp");
  const ms = Date.parse(v);
  if (!Number.isFinite(ms)) fail(`${path}/${key}`, "expected a valid timestamp");
  return ms;
}

function strings(o: Json, key: string, path: string): void {
  const v = o[key];
  if (!Array.isArray(v)) fail(`${path}/${key}`, "expected an array of strings");
  v.forEach((s, i) => {
    if (typeof s !== "string") fail(`${path}/${key}/${i}`, "expected a string");
  });
}

/** True when `v` and everything it holds are frozen: it can never change again. */
function deepFrozen(v: unknown): boolean {
  if (typeof v !== "object" || v === null) return true;
  if (!Object.isFrozen(v)) return false;
  for (const x of Object.values(v)) if (!deepFrozen(x)) return false;
  return true;
}

/**
 * Deep-frozen items already checked, per item checker. The snapshot builder
 * shares one frozen entry among every payload listing it (the mesh
 * directory's peers): it is checked once, not once per payload.
 */
const checkedFrozen = new WeakMap<(item: Json, path: string) => void, WeakSet<object>>();

function list(o: Json, key: string, path: string, each: (item: Json, path: string) => void): void {
  const v = o[key];
  if (!Array.isArray(v)) fail(`${path}/${key}`, "expected an array");
  let checked = checkedFrozen.get(each);
  for (let i = 0; i < v.length; i++) {
    const item: unknown = v[i];
    if (checked !== undefined && checked.has(item as object)) continue;
    const at = `${path}/${key}/${i}`;
    each(obj(item, at), at);
    if (deepFrozen(item)) {
      if (checked === undefined) checkedFrozen.set(each, (checked = new WeakSet()));
      checked.add(item as object);
    }
  }
}

/** Throws ErrMalformed unless `h` is a closed, well-typed v1 header with issuedAt <= expiresAt. */
export function assertSnapshotHeader(h: unknown, path = "/header"): asserts h is SnapshotHeader {
  const o = obj(h, path);
  if (o.formatVersion !== 1) fail(`${path}/formatVersion`, `unsupported format version ${JSON.stringify(o.formatVersion)}`);
  closed(o, HEADER_KEYS, path);
  str(o, "cluster", path);
  str(o, "node", path);
  uint(o, "serial", path);
  uint(o, "authorityTerm", path);
  const issued = time(o, "issuedAt", path);
  const expires = time(o, "expiresAt", path);
  if (expires < issued) fail(`${path}/expiresAt`, "before issuedAt");
  if (typeof o.keyId !== "string" || !KEY_ID.test(o.keyId)) fail(`${path}/keyId`, "expected 16 lower-case hex digits");
}

const PROBE_KINDS = ["http", "tcp", "exec"];

function assertWorkload(w: Json, path: string): void {
  str(w, "name", path);
  uint(w, "generation", path);
  str(w, "role", path);
  oneOf(w, "runtime", ["native", "container"], path);
  oneOf(w, "containerEngine", ["docker", "podman"], path, true);
  str(w, "image", path, { optional: true });
  str(w, "releaseChannel", path, { optional: true });
  if (w.runtime === "container" && (w.containerEngine === undefined || w.image === undefined)) {
    fail(path, "a container workload needs containerEngine and image");
  }
  strings(w, "command", path);
  strings(w, "args", path);
  const env = obj(w.env, `${path}/env`);
  for (const [k, v] of Object.entries(env)) if (typeof v !== "string") fail(`${path}/env/${k}`, "expected a string");
  oneOf(w, "restartPolicy", ["Always", "OnFailure", "Never"], path);
  if (w.healthProbe !== undefined) {
    const p = obj(w.healthProbe, `${path}/healthProbe`);
    const pp = `${path}/healthProbe`;
    oneOf(p, "kind", PROBE_KINDS, pp);
    if (p.kind === "http") str(p, "url", pp);
    if (p.kind === "tcp") uint(p, "port", pp);
    if (p.kind === "exec") strings(p, "command", pp);
    uint(p, "periodSeconds", pp);
    uint(p, "timeoutSeconds", pp);
    uint(p, "failureThreshold", pp);
  }
  if (w.release !== undefined) {
    const r = obj(w.release, `${path}/release`);
    str(r, "component", `${path}/release`);
    str(r, "version", `${path}/release`);
  }
}

function assertMeshPeer(p: Json, path: string): void {
  str(p, "node", path);
  strings(p, "endpoints", path);
  str(p, "serverName", path);
  str(p, "certificateFingerprint", path);
  oneOf(p, "nodeClass", ["core", "relay", "standard", "thin"], path);
  str(p, "region", path, { optional: true });
  str(p, "zone", path, { optional: true });
  strings(p, "roles", path);
  if (p.relayCapable !== undefined) bool(p, "relayCapable", path);
  if (p.directlyReachable !== undefined) bool(p, "directlyReachable", path);
}

function assertMeshInbound(r: Json, path: string): void {
  str(r, "node", path);
  str(r, "certificateFingerprint", path);
}

function assertMeshSettings(m: Json, path: string): void {
  oneOf(m, "nodeClass", ["core", "relay", "standard", "thin"], path);
  const a = obj(m.activePeers, `${path}/activePeers`);
  uint(a, "min", `${path}/activePeers`);
  uint(a, "max", `${path}/activePeers`);
  uint(m, "hysteresisPercent", path);
}

function assertVpnAssignment(v: Json, path: string): void {
  str(v, "connection", path);
  str(v, "organization", path);
  bool(v, "enabled", path);
  strings(v, "routes", path);
  bool(v, "hasCredentialRef", path);
}

function assertVpnPart(a: Json, path: string): void {
  str(a, "connection", path);
  oneOf(a, "mode", ["Exit", "Connector"], path);
  uint(a, "preference", path);
  list(a, "routes", path, (r, rp) => {
    str(r, "destination", rp);
    oneOf(r, "action", ["Route", "Exclude"], rp);
    uint(r, "metric", rp);
  });
  uint(a, "leaseTtlMs", path);
  bool(a, "hasCredentialRef", path);
  bool(a, "enabled", path);
}

function assertUpdate(u: Json, path: string): void {
  str(u, "component", path);
  str(u, "channel", path);
  str(u, "version", path);
  str(u, "ring", path, { optional: true });
  const a = obj(u.artifact, `${path}/artifact`);
  const ap = `${path}/artifact`;
  str(a, "os", ap);
  str(a, "arch", ap);
  str(a, "url", ap);
  if (typeof a.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(a.sha256)) fail(`${ap}/sha256`, "expected 64 lower-case hex digits");
  uint(a, "size", ap);
  str(u, "releaseSignature", path, { optional: true });
}

function assertReleaseAssignment(a: Json, path: string): void {
  str(a, "workload", path);
  str(a, "channel", path);
  str(a, "component", path);
  str(a, "version", path);
  obj(a.envelope, `${path}/envelope`);
  const ap = `${path}/artifact`;
  const art = obj(a.artifact, ap);
  str(art, "os", ap);
  str(art, "arch", ap);
  uint(art, "length", ap);
  if (typeof art.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(art.sha256)) fail(`${ap}/sha256`, "expected 64 lower-case hex digits");
}

function assertReleaseUpdates(v: unknown, path: string): void {
  const o = obj(v, path);
  const t = obj(o.trust, `${path}/trust`);
  list(t, "keys", `${path}/trust`, (k, kp) => {
    str(k, "keyId", kp);
    str(k, "publicKey", kp);
  });
  uint(t, "threshold", `${path}/trust`);
  list(o, "assignments", path, assertReleaseAssignment);
  if (o.caches !== undefined)
    list(o, "caches", path, (c, cp) => {
      str(c, "node", cp);
      str(c, "endpoint", cp);
      str(c, "certificateFingerprint", cp);
    });
}

function assertUpdateCache(v: unknown, path: string): void {
  list(obj(v, path), "artifacts", path, (a, ap) => {
    uint(a, "length", ap);
    if (typeof a.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(a.sha256)) fail(`${ap}/sha256`, "expected 64 lower-case hex digits");
  });
}

/** Throws ErrMalformed unless `p` has every v1 payload member with the right types (extra members allowed). */
export function assertSnapshotPayload(p: unknown, path = "/payload"): asserts p is SnapshotPayload {
  const o = obj(p, path);
  const id = obj(o.identity, `${path}/identity`);
  const ip = `${path}/identity`;
  str(id, "name", ip);
  str(id, "hostFingerprint", ip);
  str(id, "certificateSerial", ip);
  time(id, "certificateNotAfter", ip);
  str(id, "group", ip, { optional: true });
  oneOf(id, "membership", ["Active", "Disabled", "Revoked"], ip);
  list(o, "roles", path, (r, rp) => {
    str(r, "role", rp);
    str(r, "assignment", rp);
    str(r, "organization", rp, { optional: true });
  });
  list(o, "workloads", path, assertWorkload);
  list(o, "meshPeers", path, assertMeshPeer);
  if (o.mesh !== undefined) assertMeshSettings(obj(o.mesh, `${path}/mesh`), `${path}/mesh`);
  if (o.meshInbound !== undefined) list(o, "meshInbound", path, assertMeshInbound);
  list(o, "vpnAssignments", path, assertVpnAssignment);
  if (o.vpn !== undefined) {
    const v = obj(o.vpn, `${path}/vpn`);
    list(v, "assignments", `${path}/vpn`, assertVpnPart);
  }
  list(o, "updates", path, assertUpdate);
  if (o.releaseUpdates !== undefined) assertReleaseUpdates(o.releaseUpdates, `${path}/releaseUpdates`);
  if (o.updateCache !== undefined) assertUpdateCache(o.updateCache, `${path}/updateCache`);
}

/**
 * Throws ErrMalformed unless `v` is a closed `{ header, payload, signature }`
 * envelope of format v1. Cross-field consistency (payload identity versus
 * header node) is the verifier's job after the signature, so that a tampered
 * header is reported as a bad signature rather than as malformed.
 */
export function assertSignedSnapshot(v: unknown): asserts v is SignedSnapshot {
  const o = obj(v, "");
  closed(o, ENVELOPE_KEYS, "");
  assertSnapshotHeader(o.header);
  if (typeof o.signature !== "string" || !SIGNATURE.test(o.signature)) {
    fail("/signature", "expected a base64 Ed25519 signature (64 bytes)");
  }
  assertSnapshotPayload(o.payload);
}
