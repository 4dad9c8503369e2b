/**
 * Errors of server-side apply, shaped as kube-apiserver returns them.
 */

import { StatusError } from "../errors.js";

/** One field another manager owns with a different value. */
export interface Conflict {
  /** The other manager's name. */
  manager: string;
  /** Kube's path form: `.spec.replicas`, `.metadata.labels.app`, `.status.conditions[type="Ready"].status`. */
  field: string;
  /** Kube's cause message: `conflict with "m"` (appliers) or `conflict with "m" using <apiVersion>` (updaters). */
  message: string;
}

/** Kube's printManager: updaters are named with the API version they wrote. */
export function describeManager(m: { manager: string; operation: "Apply" | "Update"; apiVersion: string }): string {
  const name = JSON.stringify(m.manager);
  return m.operation === "Update" ? `${name} using ${m.apiVersion}` : name;
}

function conflictMessage(conflicts: readonly Conflict[]): string {
  const [only] = conflicts;
  if (conflicts.length === 1 && only !== undefined) {
    return `Apply failed with 1 conflict: ${only.message}: ${only.field}`;
  }
  const byManager = new Map<string, string[]>();
  for (const c of conflicts) {
    const who = c.message.replace(/^conflict with /, "");
    byManager.set(who, [...(byManager.get(who) ?? []), c.field]);
  }
  const lines: string[] = [];
  for (const who of [...byManager.keys()].sort()) {
    lines.push(`conflicts with ${who}:`);
    for (const field of byManager.get(who) ?? []) lines.push(`- ${field}`);
  }
  return `Apply failed with ${conflicts.length} conflicts: ${lines.join("\n")}`;
}

/**
 * An apply that would change fields other managers own. The server answers
 * 409 Conflict with one FieldManagerConflict cause per field, as kube does.
 */
export class ApplyConflictError extends StatusError {
  constructor(readonly conflicts: Conflict[]) {
    super(409, "Conflict", conflictMessage(conflicts), {
      causes: conflicts.map((c) => ({ reason: "FieldManagerConflict", message: c.message, field: c.field })),
    });
    this.name = "ApplyConflictError";
  }
}

/** An applied configuration the server refuses (400 BadRequest), e.g. one carrying managedFields. */
export class ApplyInvalidError extends StatusError {
  constructor(message: string) {
    super(400, "BadRequest", message);
    this.name = "ApplyInvalidError";
  }
}
