/**
 * Typed snapshot verification errors, in the spirit of nebula's ca_pool.go
 * (`ErrExpired`, `ErrRootExpired`, ...): the agent switches on the class or on
 * `code`, never on the message. Codes are PascalCase so they can be used as a
 * condition reason in a status report ("SnapshotRejected: Rollback").
 *
 * Messages are lowercase and carry the facts that decided the rejection;
 * none of them ever includes payload content.
 */

/** The code of every snapshot rejection, in verification order. */
export type SnapshotErrorCode =
  | "Malformed"
  | "UnknownKey"
  | "BadSignature"
  | "WrongCluster"
  | "WrongNode"
  | "OlderTerm"
  | "Rollback"
  | "Expired";

/** Base class of every snapshot rejection. A rejected snapshot must change nothing on the host. */
export abstract class SnapshotError extends Error {
  abstract readonly code: SnapshotErrorCode;
}

/** The bytes are not a snapshot: too large, not UTF-8, not JSON, or the wrong shape or formatVersion. */
export class ErrMalformed extends SnapshotError {
  override readonly name = "ErrMalformed";
  readonly code = "Malformed";
  constructor(reason: string, options?: { cause?: unknown }) {
    super(`malformed snapshot: ${reason}`, options);
  }
}

/** The header names a key id that is not in the node's trusted key set for this cluster. */
export class ErrUnknownKey extends SnapshotError {
  override readonly name = "ErrUnknownKey";
  readonly code = "UnknownKey";
  constructor(readonly keyId: string) {
    super(`snapshot signed by unknown key ${keyId}`);
  }
}

/** The signature does not verify under the trusted key named by the header. */
export class ErrBadSignature extends SnapshotError {
  override readonly name = "ErrBadSignature";
  readonly code = "BadSignature";
  constructor(readonly keyId: string) {
    super(`snapshot signature does not verify under key ${keyId}`);
  }
}

/** Validly signed, but for another cluster (mix-and-match). */
export class ErrWrongCluster extends SnapshotError {
  override readonly name = "ErrWrongCluster";
  readonly code = "WrongCluster";
  constructor(
    readonly got: string,
    readonly want: string,
  ) {
    super(`snapshot is for cluster ${JSON.stringify(got)}, this membership is ${JSON.stringify(want)}`);
  }
}

/** Validly signed, but for another node (mix-and-match). */
export class ErrWrongNode extends SnapshotError {
  override readonly name = "ErrWrongNode";
  readonly code = "WrongNode";
  constructor(
    readonly got: string,
    readonly want: string,
  ) {
    super(`snapshot is for node ${JSON.stringify(got)}, this node is ${JSON.stringify(want)}`);
  }
}

/** Signed under an authority term older than one this node has already seen (a fenced ex-leader). */
export class ErrOlderTerm extends SnapshotError {
  override readonly name = "ErrOlderTerm";
  readonly code = "OlderTerm";
  constructor(
    readonly term: number,
    readonly lastTerm: number,
  ) {
    super(`snapshot authority term ${term} is older than last seen term ${lastTerm}`);
  }
}

/** Serial lower than the last applied one: a replay of an older snapshot. */
export class ErrRollback extends SnapshotError {
  override readonly name = "ErrRollback";
  readonly code = "Rollback";
  constructor(
    readonly serial: number,
    readonly lastSerial: number,
  ) {
    super(`snapshot serial ${serial} is lower than last applied serial ${lastSerial}`);
  }
}

/** expiresAt is at or before the verifier's clock (a freeze attack, or a control plane gone quiet). */
export class ErrExpired extends SnapshotError {
  override readonly name = "ErrExpired";
  readonly code = "Expired";
  constructor(
    readonly expiresAt: string,
    readonly now: string,
  ) {
    super(`snapshot expired at ${expiresAt} (now ${now})`);
  }
}
