/**
 * The enrollment wire protocol shared by the agent API and fabric-agent
 * (JSON over HTTPS).
 *
 *   GET  /v1/enroll/ca                    the agent API CA (trusted only after the --ca-hash pin matches)
 *   POST /v1/enroll                       EnrollRequest -> EnrollResponse (201 created, 200 replay)
 *   GET  /v1/enroll/requests/:name        proof of possession headers -> PollResponse
 *   GET  /v1/identity                     mTLS -> who the certificate authenticates
 *   POST /v1/identity/renew               mTLS, RenewRequest -> RenewResponse
 *
 * Refusals: `{ "error": { "code", "message" } }` with 400/401/403/404/409/429/503.
 */
import { sign, verify, type KeyObject } from "node:crypto";

/** Body of POST /v1/enroll. */
export interface EnrollRequest {
  token: string;
  /** The cluster the operator meant (optional; a token of another cluster is refused). */
  cluster?: string;
  nodeName: string;
  hostFingerprint: string;
  /** PEM PKCS#10 made with the key generated on the host. */
  csr: string;
  capabilities: string[];
  facts: Record<string, unknown>;
  requestedRoles: string[];
}

/** Answer to POST /v1/enroll. */
export interface EnrollResponse {
  joinRequest: string;
  cluster: string;
  /** FabricNode name the membership will have. */
  node: string;
  replayed: boolean;
}

/** Answer to a poll. */
export interface PollResponse {
  state: "Pending" | "Approved" | "Denied";
  reason?: string;
  cluster: string;
  node: string;
  unsupportedRoles?: string[];
  /** Set once approved. */
  certificate?: string;
  /** The cluster CA (PEM), set once approved. */
  caBundle?: string;
  /** The cluster's snapshot verification key, set once approved. */
  snapshotKey?: { keyId: string; publicKey: string };
}

/** Body of POST /v1/identity/renew. */
export interface RenewRequest {
  csr: string;
}

/** Answer to a renewal. */
export interface RenewResponse {
  certificate: string;
  caBundle: string;
  notAfter: string;
}

/** Headers carrying the proof of possession of a poll. */
export const POP_TIMESTAMP_HEADER = "x-fabric-timestamp";
/** See POP_TIMESTAMP_HEADER. */
export const POP_SIGNATURE_HEADER = "x-fabric-signature";
/** How far a poll's timestamp may be from the server's clock. */
export const POP_MAX_SKEW_MS = 5 * 60_000;

function popMessage(requestName: string, timestampMs: number): Buffer {
  return Buffer.from(`accessfabric.io/enroll-poll/v1|${requestName}|${timestampMs}`, "utf8");
}

function digestOf(key: KeyObject): string | null {
  return key.asymmetricKeyType === "ed25519" ? null : "sha256";
}

/** Signs a poll with the enrollment key: proves the poller holds the key of the CSR. */
export function signPoll(requestName: string, timestampMs: number, privateKey: KeyObject): string {
  return sign(digestOf(privateKey), popMessage(requestName, timestampMs), privateKey).toString("base64");
}

/** Verifies a poll signature against the request's public key. */
export function verifyPoll(requestName: string, timestampMs: number, signatureB64: string, publicKey: KeyObject): boolean {
  try {
    return verify(digestOf(publicKey), popMessage(requestName, timestampMs), publicKey, Buffer.from(signatureB64, "base64"));
  } catch {
    return false;
  }
}
