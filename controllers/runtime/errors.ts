/** Error types with a meaning for the controller runtime. */

/**
 * A failure that retrying cannot fix (invalid spec, a decision refused). The
 * controller logs it, counts it as terminal_error and does not requeue the
 * key; the reconciler should have recorded it in a False condition.
 */
export class TerminalError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "TerminalError";
  }
}

/**
 * A fenced write was refused: the authority term moved on since this
 * instance acquired it (another leader took over), or this instance holds no
 * term. The decision must not be retried by this instance.
 */
export class FencedError extends Error {
  constructor(
    message: string,
    readonly heldTerm: number | undefined,
    readonly currentTerm: number | undefined,
  ) {
    super(message);
    this.name = "FencedError";
  }
}

/** True for errors whose retry is pointless (TerminalError, or tagged terminal by name). */
export function isTerminal(err: unknown): boolean {
  return err instanceof TerminalError;
}
