/**
 * The errors fabricctl turns into exit codes and messages. Exit codes:
 * 0 success; 1 the command ran and failed (a server error, a broken audit
 * chain, an unreachable server or database); 2 the command cannot run as
 * written (unknown command or flag, a missing argument, a value out of
 * range, or an object it names that does not exist).
 */

/** The command line cannot work as written; exit code 2. */
export class UsageError extends Error {
  /** Exit code of usage errors. */
  readonly exitCode = 2;
}

/** The body of a failed kube API call (metav1.Status), as far as fabricctl reads it. */
export interface ApiStatus {
  code?: number;
  reason?: string;
  message?: string;
}

/**
 * An API call answered with an error status. Printed as kubectl prints it:
 * `Error from server (NotFound): fabricnodes.accessfabric.io "x" not found`.
 * NotFound exits 2 (the command named something that is not there), every
 * other status 1.
 */
export class ApiError extends Error {
  readonly status: number;
  readonly reason: string;
  readonly exitCode: number;

  constructor(status: number, body: ApiStatus | undefined, what: string) {
    const reason = body?.reason ?? (status === 404 ? "NotFound" : `HTTP ${status}`);
    super(`Error from server (${reason}): ${body?.message ?? what}`);
    this.status = status;
    this.reason = reason;
    this.exitCode = status === 404 ? 2 : 1;
  }
}

/** The exit code for an error thrown by a command. */
export function exitCodeOf(err: unknown): number {
  if (err instanceof UsageError || err instanceof ApiError) return err.exitCode;
  return 1;
}

/** One line (or a few) for stderr: the message and its causes, without stack or HTTP headers. */
export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  let text = err.message;
  let cause: unknown = err.cause;
  for (let depth = 0; cause !== undefined && depth < 3; depth++) {
    const more = cause instanceof Error ? cause.message || (cause as NodeJS.ErrnoException).code || cause.name : String(cause);
    if (more !== "" && !text.includes(more)) text += `: ${more}`;
    cause = cause instanceof Error ? cause.cause : undefined;
  }
  return text;
}
