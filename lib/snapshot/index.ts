/** Signed per-node snapshots: canonical JSON, the v1 format, signing and verification. */
export { canonicalize, CanonicalizeError, type CanonicalizeErrorCode } from "./canonical-json.js";
export {
  SIGNATURE_DOMAIN,
  SNAPSHOT_FORMAT_VERSION,
  encodeSnapshot,
  keyIdOf,
  signAndEncodeSnapshot,
  signAndEncodeSnapshotAsync,
  signSnapshot,
  signedMessage,
  type MembershipState,
  type NodeClass,
  type NodeIdentitySummary,
  type SignedSnapshot,
  type SnapshotArtifact,
  type SnapshotHealthProbe,
  type SnapshotHeader,
  type SnapshotMeshInbound,
  type SnapshotMeshPeer,
  type SnapshotPayload,
  type SnapshotRole,
  type SnapshotUpdate,
  type SnapshotVpnAssignment,
  type SnapshotWorkload,
} from "./format.js";
export { assertSignedSnapshot, assertSnapshotHeader, assertSnapshotPayload } from "./shape.js";
export {
  DEFAULT_MAX_SNAPSHOT_BYTES,
  inspectSnapshot,
  verifySnapshot,
  type InspectResult,
  type VerifyContext,
  type VerifyResult,
} from "./verify.js";
export * from "./errors.js";
