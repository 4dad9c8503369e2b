/**
 * The signed, scoped per-node snapshot (ARCHITECTURE.md "Signed, scoped
 * snapshots"): one complete desired state per node per cluster, never a delta,
 * signed with the cluster's Ed25519 snapshot key.
 *
 * Wire form: the canonical JSON (RFC 8785, ./canonical-json.ts) of
 * `{ header, payload, signature }`. The signature covers the UTF-8 bytes of
 * `SIGNATURE_DOMAIN + canonicalize({ header, payload })`. The domain prefix
 * keeps a snapshot signature from ever being valid for another message type
 * signed with the same key (and vice versa), and names the format version.
 *
 * Versioning: `header.formatVersion` says how to read everything else. Within
 * version 1, new *payload* fields may be added that older agents can safely
 * ignore (verifiers accept unknown payload members; they are still covered by
 * the signature). Anything an older agent must not ignore (a new header field,
 * a changed meaning) needs formatVersion 2, which v1 agents reject as
 * malformed. The header and envelope are closed: unknown members are rejected.
 *
 * Need-to-know: the payload holds only what this node's roles require and
 * never a secret value (VPN assignments say `hasCredentialRef`, nothing more).
 */
import type { VpnSnapshotPart } from "../agent-protocol.js";
import { createHash, createPublicKey, sign as edSign, type KeyObject } from "node:crypto";
import { canonicalize } from "./canonical-json.js";
import { ErrMalformed } from "./errors.js";
import { assertSnapshotHeader, assertSnapshotPayload } from "./shape.js";

/** The only format version this code writes and reads. */
export const SNAPSHOT_FORMAT_VERSION = 1;

/** Prefix of the signed message: domain separation for snapshot signatures, format v1. */
export const SIGNATURE_DOMAIN = "accessfabric-snapshot-v1\n";

/** Who the snapshot is for, under which authority, and how long it is good for. */
export interface SnapshotHeader {
  formatVersion: 1;
  /** FabricCluster name. */
  cluster: string;
  /** FabricNode name (this membership). */
  node: string;
  /** Per node; only grows. Equal serial means the same snapshot. */
  serial: number;
  /** Authority term of the leader that issued it (fencing: agents reject older terms). */
  authorityTerm: number;
  /** RFC 3339 UTC, `YYYY-MM-DDTHH:MM:SS[.fff]Z` (what Date#toISOString prints). */
  issuedAt: string;
  /** RFC 3339 UTC; the snapshot is expired when expiresAt <= now. */
  expiresAt: string;
  /** {@link keyIdOf} of the signing key: first 16 hex chars of sha256(raw public key). */
  keyId: string;
}

/** Desired state of a FabricNode membership (spec.desiredMembership). */
export type MembershipState = "Active" | "Disabled" | "Revoked";

/** Who this node is in this cluster: enough for the agent to check it talks about itself. */
export interface NodeIdentitySummary {
  /** FabricNode name; equals header.node. */
  name: string;
  /** sha256:<hex> fingerprint of the host identity that enrolled. */
  hostFingerprint: string;
  /** Serial of the node's current cluster-issued certificate (hex). */
  certificateSerial: string;
  /** RFC 3339 notAfter of that certificate, so the agent can renew in time. */
  certificateNotAfter: string;
  /** NodeGroup (an operator folder, never a permission). */
  group?: string;
  membership: MembershipState;
}

/** A role this node holds, and the RoleAssignment that gave it. */
export interface SnapshotRole {
  role: string;
  /** RoleAssignment name. */
  assignment: string;
  /** Organization (namespace) the assignment is scoped to, if any. */
  organization?: string;
}

/** How the agent probes a workload's health. */
export type SnapshotHealthProbe =
  | { kind: "http"; url: string; periodSeconds: number; timeoutSeconds: number; failureThreshold: number }
  | { kind: "tcp"; port: number; periodSeconds: number; timeoutSeconds: number; failureThreshold: number }
  | { kind: "exec"; command: string[]; periodSeconds: number; timeoutSeconds: number; failureThreshold: number };

/** One desired service workload on this node (from a ServiceWorkload). */
export interface SnapshotWorkload {
  /** ServiceWorkload name. */
  name: string;
  /** ServiceWorkload metadata.generation, echoed back as observedGeneration in reports. */
  generation: number;
  /** The role that placed it on this node. */
  role: string;
  runtime: "native" | "container";
  /** Required when runtime is "container". */
  containerEngine?: "docker" | "podman";
  /** Container image; required when runtime is "container". */
  image?: string;
  command: string[];
  args: string[];
  /** Plain configuration only; secrets are resolved on the host, never shipped here. */
  env: Record<string, string>;
  restartPolicy: "Always" | "OnFailure" | "Never";
  healthProbe?: SnapshotHealthProbe;
  /** Release the workload runs, if it is tied to one. */
  release?: { component: string; version: string };
  /** ReleaseChannel whose assigned release's executable the agent runs instead of `command` (payload.releaseUpdates). */
  releaseChannel?: string;
}

/** Mesh peer classes; they decide how many active peers a node keeps. */
export type NodeClass = "core" | "relay" | "standard" | "thin";

/**
 * A QUIC mesh peer candidate (sent only to nodes with mesh roles; the
 * control plane's bounded candidate set, docs/mesh.md). The agent picks its
 * active peers among these by measuring them; a node not listed here is not
 * an authorised peer.
 */
export interface SnapshotMeshPeer {
  /** FabricNode name of the peer. */
  node: string;
  /** host:port QUIC endpoints (IPv6 as [addr]:port), preferred first, as the peer reported them. */
  endpoints: string[];
  /** DNS SAN to pass as QUIC serverName (`<fabricnode>.<cluster>.fabric.internal`). */
  serverName: string;
  /**
   * sha256:<hex> of the SubjectPublicKeyInfo of the peer's current
   * certificate: the pin to check beside the chain to the cluster CA.
   */
  certificateFingerprint: string;
  nodeClass: NodeClass;
  region?: string;
  /** Failure-domain zone (label topology.kubernetes.io/zone). */
  zone?: string;
  /** The peer's mesh roles (entry-node, relay-node, core-node), sorted; other roles are not shown to peers. */
  roles: string[];
  /** Reported relay capability, and a relay or core role: it may forward between two of its peers. */
  relayCapable?: boolean;
  /** Whether the peer reported itself directly reachable (false: reach it through a relay). */
  directlyReachable?: boolean;
}

/**
 * A node whose candidate set lists this one while this node's own set does
 * not list it: it may dial this node, which accepts it (pinned) but never
 * dials it. Links are thus authorised from either side's set.
 */
export interface SnapshotMeshInbound {
  /** FabricNode name of the peer. */
  node: string;
  /** sha256:<hex> of the SPKI of the peer's current certificate (the pin). */
  certificateFingerprint: string;
}

/** This node's own mesh settings (present only for nodes with a mesh role). */
export interface SnapshotMeshSettings {
  nodeClass: NodeClass;
  /** Active-set bounds for this class from FabricCluster spec.peerPolicy. */
  activePeers: { min: number; max: number };
  /** FabricCluster spec.peerPolicy.hysteresisPercent. */
  hysteresisPercent: number;
}

/** The seed's VPN assignment form, superseded by `vpn` (always sent empty by the builder). */
export interface SnapshotVpnAssignment {
  /** VPNConnection name. */
  connection: string;
  /** Its namespace (the organization). */
  organization: string;
  enabled: boolean;
  /** Routed prefixes (CIDR). */
  routes: string[];
  /** Whether a credential Secret is referenced. The secret itself never enters a snapshot. */
  hasCredentialRef: boolean;
}

/** The release artifact for this node's OS and architecture. */
export interface SnapshotArtifact {
  os: string;
  arch: string;
  /** https URL or a path served over the agent API. */
  url: string;
  /** Lower-case hex sha256 of the artifact. */
  sha256: string;
  size: number;
}

/** Desired release of one component on this node (from its ReleaseChannel and ring). */
export interface SnapshotUpdate {
  component: string;
  channel: string;
  version: string;
  /** Rollout ring this node is in. */
  ring?: string;
  artifact: SnapshotArtifact;
  /** Release signature (base64), verified by the updater independently of the snapshot. */
  releaseSignature?: string;
}

/** A release trust set (FabricCluster spec.releaseTrust without its rotation). */
export interface SnapshotReleaseTrust {
  keys: { keyId: string; publicKey: string }[];
  threshold: number;
}

/** The release a channel assigns to one of this node's workloads; the agent verifies `envelope` against the trust itself. */
export interface SnapshotReleaseAssignment {
  /** ServiceWorkload name. */
  workload: string;
  /** ReleaseChannel name. */
  channel: string;
  component: string;
  version: string;
  /** The Release's signed DSSE envelope. */
  envelope: unknown;
  /** The artifact for this node's OS and architecture (GET /v1/artifacts/<sha256>). */
  artifact: { os: string; arch: string; length: number; sha256: string };
}

/** Release assignments of this node's channel-bound workloads (present only for nodes that have some). */
export interface SnapshotReleaseUpdates {
  trust: SnapshotReleaseTrust;
  assignments: SnapshotReleaseAssignment[];
  /** The cluster's update-cache nodes to try before the control plane (absent when none; docs/releases.md "Update caches"). */
  caches?: SnapshotUpdateCacheEndpoint[];
}

/** An update-cache node as fetching nodes see it. */
export interface SnapshotUpdateCacheEndpoint {
  /** FabricNode name of the cache. */
  node: string;
  /** host:port (IPv6 as [addr]:port) of its HTTPS endpoint, as it reported it. */
  endpoint: string;
  /** sha256:<hex> of the SPKI of the cache's current certificate (checked beside the chain to the cluster CA). */
  certificateFingerprint: string;
}

/** What an update-cache node may mirror: the artifacts of verified releases assigned in its cluster (bounded). */
export interface SnapshotUpdateCache {
  artifacts: { sha256: string; length: number }[];
}

/** Everything a node needs, and nothing more. Lists are sorted by name by the builder. */
export interface SnapshotPayload {
  identity: NodeIdentitySummary;
  roles: SnapshotRole[];
  workloads: SnapshotWorkload[];
  meshPeers: SnapshotMeshPeer[];
  /** Present only for nodes with a mesh role (a v1 addition older agents ignore). */
  mesh?: SnapshotMeshSettings;
  /** Nodes that list this one but are not in meshPeers, sorted, bounded (mesh members only; a v1 addition older agents ignore). */
  meshInbound?: SnapshotMeshInbound[];
  vpnAssignments: SnapshotVpnAssignment[];
  /** VPN connections this node may own (lib/agent-protocol.ts VpnSnapshotPart); present only when it may own one. */
  vpn?: VpnSnapshotPart;
  updates: SnapshotUpdate[];
  /** Release channel assignments (a v1 addition older agents ignore; docs/releases.md "Agent updates"). */
  releaseUpdates?: SnapshotReleaseUpdates;
  /** Present only for nodes with the update-cache role (a v1 addition older agents ignore). */
  updateCache?: SnapshotUpdateCache;
}

/** The envelope agents receive and checkpoint. */
export interface SignedSnapshot {
  header: SnapshotHeader;
  payload: SnapshotPayload;
  /** Base64 Ed25519 signature over SIGNATURE_DOMAIN + canonicalize({ header, payload }). */
  signature: string;
}

/** The exact bytes a snapshot signature covers. */
export function signedMessage(header: SnapshotHeader, payload: SnapshotPayload): Buffer {
  return Buffer.from(SIGNATURE_DOMAIN + canonicalize({ header, payload }), "utf8");
}

function ed25519Public(key: KeyObject): KeyObject {
  if (key.asymmetricKeyType !== "ed25519") {
    throw new TypeError(`snapshot keys are ed25519, got ${String(key.asymmetricKeyType)}`);
  }
  return key.type === "private" ? createPublicKey(key) : key;
}

const keyIds = new WeakMap<KeyObject, string>();

/**
 * Key id of an Ed25519 key: the first 16 hex characters of the SHA-256 of the
 * raw 32-byte public key (the same id lib/crypto/cluster-keys.ts publishes in
 * FabricCluster status). Accepts the private half too (its public key's id).
 * Throws TypeError for a non-Ed25519 key.
 */
export function keyIdOf(key: KeyObject): string {
  const cached = keyIds.get(key);
  if (cached !== undefined) return cached;
  const jwk = ed25519Public(key).export({ format: "jwk" });
  if (typeof jwk.x !== "string") throw new TypeError("ed25519 public key without x");
  const id = createHash("sha256").update(Buffer.from(jwk.x, "base64url")).digest("hex").slice(0, 16);
  keyIds.set(key, id);
  return id;
}

/** The checks every signing path makes; returns the canonical body `{"header":..,"payload":..}`. */
function checkedBody(header: SnapshotHeader, payload: SnapshotPayload, privateKey: KeyObject): string {
  checkSigning(header, payload, privateKey);
  return canonicalize({ header, payload });
}

/** The checks every signing path makes before it signs. */
function checkSigning(header: SnapshotHeader, payload: SnapshotPayload, privateKey: KeyObject): void {
  if (privateKey.type !== "private") throw new TypeError("signing a snapshot needs a private key");
  assertSnapshotHeader(header);
  assertSnapshotPayload(payload);
  if (payload.identity.name !== header.node) {
    throw new ErrMalformed("/payload/identity/name: does not match /header/node");
  }
  const keyId = keyIdOf(privateKey);
  if (header.keyId !== keyId) {
    throw new Error(`signing snapshot: header keyId ${header.keyId} is not the signing key's id ${keyId}`);
  }
}

function signCanonical(header: SnapshotHeader, payload: SnapshotPayload, privateKey: KeyObject): { body: string; signature: string } {
  const body = checkedBody(header, payload, privateKey);
  const signature = edSign(null, Buffer.from(SIGNATURE_DOMAIN + body, "utf8"), privateKey).toString("base64");
  return { body, signature };
}

function envelopeBytes(body: string, signature: string): Buffer {
  return Buffer.from(`${body.slice(0, -1)},"signature":${JSON.stringify(signature)}}`, "utf8");
}

/**
 * Signs a snapshot for the control plane's snapshot builder. Checks the header
 * and payload with the same shape rules agents apply (throws ErrMalformed, so
 * a builder bug fails at build time rather than on every host), that the
 * payload identity names header.node (ErrMalformed), and that header.keyId is
 * the id of `privateKey` (Error). Values that have no canonical JSON form
 * throw CanonicalizeError. Does not copy: the returned envelope shares
 * `header` and `payload` with the caller.
 */
export function signSnapshot(header: SnapshotHeader, payload: SnapshotPayload, privateKey: KeyObject): SignedSnapshot {
  const { signature } = signCanonical(header, payload, privateKey);
  return { header, payload, signature };
}

/**
 * {@link signSnapshot} and {@link encodeSnapshot} in one pass: the envelope's
 * canonical form is the signed body with the signature member appended
 * ("header" < "payload" < "signature" in code-unit order), so the value is
 * canonicalised once instead of twice. Same checks and errors as
 * signSnapshot; `bytes` equals `encodeSnapshot(snapshot)`.
 */
export function signAndEncodeSnapshot(
  header: SnapshotHeader,
  payload: SnapshotPayload,
  privateKey: KeyObject,
): { snapshot: SignedSnapshot; bytes: Buffer } {
  const { body, signature } = signCanonical(header, payload, privateKey);
  return { snapshot: { header, payload, signature }, bytes: envelopeBytes(body, signature) };
}

/**
 * {@link signAndEncodeSnapshot} for bulk signing (the snapshot builder): the
 * Ed25519 signature is computed on libuv's thread pool (Node's callback form
 * of crypto.sign), so the caller can keep many signatures in flight and use
 * every core while its own thread canonicalises the next nodes. Same checks
 * and errors (thrown synchronously, before anything is queued) and exactly
 * the same bytes as signAndEncodeSnapshot (Ed25519 is deterministic).
 *
 * `canonicalPayload`, when given, must be `canonicalize(payload)` — what the
 * builder already computed to hash the payload — and is used instead of
 * walking the payload a second time. Callers that do not have it leave it
 * unset. Keep the number of calls in flight bounded (a few hundred): the thread
 * pool is shared with file system, DNS and zlib work.
 */
export function signAndEncodeSnapshotAsync(
  header: SnapshotHeader,
  payload: SnapshotPayload,
  privateKey: KeyObject,
  canonicalPayload?: string,
): Promise<{ snapshot: SignedSnapshot; bytes: Buffer }> {
  checkSigning(header, payload, privateKey);
  const signed = signSpliced(header, privateKey, Buffer.from(canonicalPayload ?? canonicalize(payload), "utf8"));
  return signed.then(({ bytes, signature }) => ({ snapshot: { header, payload, signature }, bytes }));
}

/**
 * {@link signAndEncodeSnapshotAsync} for a payload the builder already holds
 * as canonical UTF-8 bytes (`canonicalPayload` must be
 * `Buffer.from(canonicalize(payload))`, which the builder also hashes): the
 * payload is neither walked nor encoded again. Same checks and errors,
 * exactly the bytes of signAndEncodeSnapshot.
 */
export function signAndEncodeCanonicalAsync(header: SnapshotHeader, payload: SnapshotPayload, privateKey: KeyObject, canonicalPayload: Buffer): Promise<Buffer> {
  checkSigning(header, payload, privateKey);
  return signSpliced(header, privateKey, canonicalPayload).then((s) => s.bytes);
}

const SIGNATURE_DOMAIN_BYTES = Buffer.from(SIGNATURE_DOMAIN, "utf8");
const CLOSE = Buffer.from("}", "utf8");

/**
 * Signs on the thread pool: the signed message and the envelope are spliced
 * from the header's canonical bytes and the payload's, since RFC 8785 orders
 * the members "header" < "payload" < "signature".
 */
function signSpliced(header: SnapshotHeader, privateKey: KeyObject, canonicalPayload: Buffer): Promise<{ bytes: Buffer; signature: string }> {
  const head = Buffer.from(`{"header":${canonicalize(header)},"payload":`, "utf8");
  const message = Buffer.concat([SIGNATURE_DOMAIN_BYTES, head, canonicalPayload, CLOSE]);
  return new Promise((resolve, reject) => {
    edSign(null, message, privateKey, (err, sig) => {
      if (err !== null) {
        reject(err);
        return;
      }
      const signature = sig.toString("base64");
      resolve({ bytes: Buffer.concat([head, canonicalPayload, Buffer.from(`,"signature":"${signature}"}`, "utf8")]), signature });
    });
  });
}

/** The wire and checkpoint form of a snapshot: its canonical JSON, UTF-8. */
export function encodeSnapshot(snapshot: SignedSnapshot): Buffer {
  return Buffer.from(canonicalize(snapshot), "utf8");
}
