/**
 * Errors as kube-apiserver returns them: a metav1.Status with code and reason.
 */

/** A field-level cause in a Status' details. */
export interface StatusCause {
  reason?: string;
  message?: string;
  field?: string;
}

/** metav1.Status details. */
export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  uid?: string;
  causes?: StatusCause[];
  retryAfterSeconds?: number;
}

/** An error the server turns into a metav1.Status response. Its message is shown to clients. */
export class StatusError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: StatusDetails,
  ) {
    super(message);
  }

  /** The metav1.Status body. */
  toStatus(): Record<string, unknown> {
    return status(this.code, this.reason, this.message, this.details);
  }
}

/** A metav1.Status object. */
export function status(code: number, reason: string, message: string, details?: StatusDetails): Record<string, unknown> {
  const s: Record<string, unknown> = {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: code >= 200 && code < 300 ? "Success" : "Failure",
    message,
    reason,
    code,
  };
  if (details) s.details = details;
  return s;
}

/** The resource name used in messages: plural.group ("fabricclusters.accessfabric.io") or plural for core. */
export function qualifiedResource(group: string, plural: string): string {
  return group === "" ? plural : `${plural}.${group}`;
}

export const notFound = (group: string, plural: string, name: string) =>
  new StatusError(404, "NotFound", `${qualifiedResource(group, plural)} "${name}" not found`, { name, group, kind: plural });

export const alreadyExists = (group: string, plural: string, name: string) =>
  new StatusError(409, "AlreadyExists", `${qualifiedResource(group, plural)} "${name}" already exists`, {
    name,
    group,
    kind: plural,
  });

export const conflict = (group: string, plural: string, name: string, why: string) =>
  new StatusError(409, "Conflict", `Operation cannot be fulfilled on ${qualifiedResource(group, plural)} "${name}": ${why}`, {
    name,
    group,
    kind: plural,
  });

export const badRequest = (message: string) => new StatusError(400, "BadRequest", message);

export const invalid = (group: string, kind: string, name: string, causes: StatusCause[]) =>
  new StatusError(
    422,
    "Invalid",
    `${group === "" ? kind : `${kind}.${group}`} "${name}" is invalid: ${causes
      .map((c) => (c.field ? `${c.field}: ${c.message ?? ""}` : c.message ?? ""))
      .join(", ")}`,
    { name, group, kind, causes },
  );

export const methodNotAllowed = (message = "the server does not allow this method on the requested resource") =>
  new StatusError(405, "MethodNotAllowed", message);

export const unsupportedMediaType = (type: string) =>
  new StatusError(415, "UnsupportedMediaType", `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got ${type})`);

export const gone = (message: string) => new StatusError(410, "Expired", message);

export const unauthorized = () => new StatusError(401, "Unauthorized", "Unauthorized");

export const tooLarge = (limit: number) =>
  new StatusError(413, "RequestEntityTooLarge", `request entity too large: limit is ${limit}`);
