/**
 * Why a release, a trust set or an artifact was refused. The code is
 * PascalCase so that it is the condition reason on a Release
 * (`Verified=False, reason=UnknownKey`) and the reason an agent reports;
 * callers switch on `code`, never on the message. Messages carry the facts
 * that decided the refusal and never quote payload content.
 */
export type ReleaseErrorCode =
  | "MalformedEnvelope"
  | "WrongPayloadType"
  | "UnknownKey"
  | "BadSignature"
  | "ThresholdNotMet"
  | "MalformedManifest"
  | "MismatchedComponent"
  | "MismatchedVersion"
  | "Expired"
  | "RollbackRefused"
  | "NoArtifact"
  | "BadTrust"
  | "RotationRefused"
  | "TooLong"
  | "LengthMismatch"
  | "HashMismatch";

/** Every refusal of lib/release. Nothing refused may be served, assigned or run. */
export class ReleaseError extends Error {
  override readonly name = "ReleaseError";
  constructor(
    readonly code: ReleaseErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isReleaseError(err: unknown): err is ReleaseError {
  return err instanceof ReleaseError;
}
