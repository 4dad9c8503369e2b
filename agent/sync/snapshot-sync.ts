/**
 * One membership's verified snapshot state on the agent: the trusted key
 * (received at enrollment, identity.json), the rollback floor (trust.json),
 * the checkpoint (snapshot.json) and the status report.
 *
 * offer() is the only way a snapshot gets in: it verifies in the fixed order
 * of lib/snapshot/verify.ts, and only an accepted snapshot is checkpointed
 * (atomic, fsync), advances the trust floor and reaches the subscribers. A
 * rejected snapshot changes nothing but the rejection counters and the
 * status file. Nothing is handed to a subscriber before the first verified
 * snapshot (from the checkpoint at boot, or from the control plane).
 */
import { createHash, createPublicKey, type KeyObject } from "node:crypto";
import { ErrMalformed, SnapshotError } from "../../lib/snapshot/errors.js";
import { encodeSnapshot, type SignedSnapshot } from "../../lib/snapshot/format.js";
import { DEFAULT_MAX_SNAPSHOT_BYTES, verifySnapshot } from "../../lib/snapshot/verify.js";
import { loadCheckpoint, saveCheckpoint, type CheckpointEvent } from "../state/checkpoint.js";
import { advanceTrust, loadTrustState, saveTrustState, type TrustState } from "../state/trust.js";
import type { StoredIdentity } from "../enroll/identity-store.js";
import { writeStatus, type AgentStatus, type HeldSnapshot } from "./status.js";

/** What offer() did. */
export type OfferOutcome =
  | { kind: "accepted"; snapshot: SignedSnapshot }
  | { kind: "unchanged" }
  | { kind: "rejected"; error: SnapshotError };

/** Called with every snapshot in force: at boot from the checkpoint, then with each accepted one. */
export type SnapshotListener = (snapshot: SignedSnapshot, held: HeldSnapshot) => void;

/** Options of MembershipSync. */
export interface MembershipSyncOptions {
  identity: StoredIdentity;
  now?: () => Date;
  maxBytes?: number;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

/** The trusted key set of a membership: the snapshot key received at enrollment. */
export function trustedKeysOf(identity: StoredIdentity): Map<string, KeyObject> {
  const k = identity.info.snapshotKey;
  if (k === undefined) return new Map();
  const key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(k.publicKey, "base64").toString("base64url") }, format: "jwk" });
  return new Map([[k.keyId, key]]);
}

function sha256(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

/** See the module comment. */
export class MembershipSync {
  private identity: StoredIdentity;
  private readonly now: () => Date;
  private readonly log: (msg: string, fields?: Record<string, unknown>) => void;
  private trust: TrustState | undefined;
  private current: { snapshot: SignedSnapshot; held: HeldSnapshot } | undefined;
  private readonly listeners: SnapshotListener[] = [];
  readonly status: AgentStatus;
  private writing: Promise<void> = Promise.resolve();

  constructor(private readonly o: MembershipSyncOptions) {
    this.identity = o.identity;
    this.now = o.now ?? (() => new Date());
    this.log = o.log ?? (() => undefined);
    const at = this.now().toISOString();
    this.status = {
      formatVersion: 1,
      cluster: o.identity.info.cluster,
      node: o.identity.info.node,
      server: o.identity.info.server,
      identitySerial: o.identity.info.serial,
      certificateNotAfter: o.identity.info.notAfter,
      pid: process.pid,
      startedAt: at,
      bootedFromCheckpoint: false,
      accepted: 0,
      rejections: {},
      heartbeats: { sent: 0, failed: 0 },
      updatedAt: at,
    };
  }

  get dir(): string {
    return this.identity.dir;
  }

  /** Replaces the identity after a renewal (the trusted key does not change with it). */
  setIdentity(identity: StoredIdentity): void {
    this.identity = identity;
    this.status.identitySerial = identity.info.serial;
    this.status.certificateNotAfter = identity.info.notAfter;
  }

  /** The snapshot in force, if any. */
  held(): { snapshot: SignedSnapshot; held: HeldSnapshot } | undefined {
    return this.current;
  }

  /** Serial to ask for newer than (the rollback floor). */
  afterSerial(): number {
    return this.trust?.lastSerial ?? 0;
  }

  /** Subscribes to the snapshot in force (called at once if there is one). */
  subscribe(l: SnapshotListener): void {
    this.listeners.push(l);
    if (this.current !== undefined) l(this.current.snapshot, this.current.held);
  }

  private ctx() {
    return {
      trustedKeys: trustedKeysOf(this.identity),
      cluster: this.identity.info.cluster,
      node: this.identity.info.node,
      lastTerm: this.trust?.lastTerm,
      lastSerial: this.trust?.lastSerial,
      now: this.now(),
      maxBytes: this.o.maxBytes ?? DEFAULT_MAX_SNAPSHOT_BYTES,
    };
  }

  /**
   * Boot: loads the trust floor and the checkpoint (re-verified; an expired
   * one boots in stale mode). Returns the snapshot in force, if any.
   */
  async boot(): Promise<HeldSnapshot | undefined> {
    const dir = this.identity.dir;
    const report = (e: CheckpointEvent | { kind: string }): void => this.log("checkpoint event", { ...e });
    this.trust = await loadTrustState(dir, { cluster: this.identity.info.cluster, node: this.identity.info.node, now: this.now(), report });
    const loaded = await loadCheckpoint(dir, { ...this.ctx(), report });
    if (loaded !== undefined) {
      const h = loaded.snapshot.header;
      // The floor never goes below the verified checkpoint (trust.json may have been lost).
      this.trust = advanceTrust(this.trust, h, this.now());
      const held: HeldSnapshot = {
        serial: h.serial,
        term: h.authorityTerm,
        hash: sha256(encodeSnapshot(loaded.snapshot)),
        issuedAt: h.issuedAt,
        expiresAt: h.expiresAt,
        appliedAt: this.now().toISOString(),
        source: "checkpoint",
        stale: loaded.stale,
      };
      this.current = { snapshot: loaded.snapshot, held };
      this.status.bootedFromCheckpoint = true;
      this.status.snapshot = held;
      this.log(loaded.stale ? "booted from checkpoint (stale: expired)" : "booted from checkpoint", { cluster: h.cluster, node: h.node, serial: h.serial, expiresAt: h.expiresAt });
      for (const l of this.listeners) l(loaded.snapshot, held);
    }
    await this.flushStatus();
    return this.current?.held;
  }

  /** Verifies and, if accepted, applies snapshot bytes (see the module comment). */
  async offer(bytes: Uint8Array): Promise<OfferOutcome> {
    let result;
    try {
      result = verifySnapshot(bytes, this.ctx());
    } catch (err) {
      if (!(err instanceof SnapshotError)) throw err;
      this.reject(err);
      await this.flushStatus();
      return { kind: "rejected", error: err };
    }
    if (result.status === "unchanged") return { kind: "unchanged" };
    const h = result.snapshot.header;
    await saveCheckpoint(this.identity.dir, bytes);
    const trust = advanceTrust(this.trust, h, this.now());
    await saveTrustState(this.identity.dir, trust);
    this.trust = trust;
    const held: HeldSnapshot = { serial: h.serial, term: h.authorityTerm, hash: sha256(bytes), issuedAt: h.issuedAt, expiresAt: h.expiresAt, appliedAt: this.now().toISOString(), source: "control-plane", stale: false };
    this.current = { snapshot: result.snapshot, held };
    this.status.snapshot = held;
    this.status.accepted++;
    this.log("snapshot verified and applied", { cluster: h.cluster, node: h.node, serial: h.serial, term: h.authorityTerm });
    for (const l of this.listeners) l(result.snapshot, held);
    await this.flushStatus();
    return { kind: "accepted", snapshot: result.snapshot };
  }

  /** Records a body that was refused before verification (larger than the limit). */
  async rejectOversized(length: number): Promise<OfferOutcome> {
    const err = new ErrMalformed(`body of ${length}+ bytes exceeds the limit of ${this.o.maxBytes ?? DEFAULT_MAX_SNAPSHOT_BYTES}`);
    this.reject(err);
    await this.flushStatus();
    return { kind: "rejected", error: err };
  }

  private reject(err: SnapshotError): void {
    this.status.rejections[err.code] = (this.status.rejections[err.code] ?? 0) + 1;
    this.status.lastRejection = { code: err.code, message: err.message, at: this.now().toISOString() };
    this.log("snapshot rejected", { code: err.code, error: err.message, cluster: this.identity.info.cluster, node: this.identity.info.node });
  }

  /** Marks the held snapshot stale if it expired meanwhile (periodic). */
  refreshStaleness(): void {
    const s = this.status.snapshot;
    if (s !== undefined && !s.stale && Date.parse(s.expiresAt) <= this.now().getTime()) {
      s.stale = true;
      this.log("snapshot in force expired; running stale", { serial: s.serial, expiresAt: s.expiresAt });
    }
  }

  /** Records a successful exchange with the agent API. */
  contact(): void {
    this.status.lastContact = this.now().toISOString();
    delete this.status.lastError;
  }

  /** Records a failed exchange. */
  contactFailed(message: string): void {
    this.status.lastError = { message, at: this.now().toISOString() };
  }

  /** Writes the status file (serialised; failures are logged, never thrown). */
  flushStatus(): Promise<void> {
    this.status.updatedAt = this.now().toISOString();
    const snapshot = JSON.parse(JSON.stringify(this.status)) as AgentStatus;
    this.writing = this.writing.then(() => writeStatus(this.identity.dir, snapshot)).catch((err: unknown) => this.log("writing status failed", { error: (err as Error).message }));
    return this.writing;
  }
}
