/**
 * Server-side apply and managedFields tracking, compatible with what kubectl
 * and client-node see from kube-apiserver. Pure: no I/O, inputs never
 * modified, time injected by the caller.
 *
 * Lists are atomic except metadata.finalizers (a set, `v:` items),
 * metadata.ownerReferences (keyed by uid) and status.conditions (keyed by
 * type), see schema.ts.
 */

export type { Obj } from "../object.js";
export { apply, LAST_APPLIED_ANNOTATION } from "./apply.js";
export type { ApplyOptions } from "./apply.js";
export { trackUpdate } from "./update.js";
export type { UpdateOptions } from "./update.js";
export { ApplyConflictError, ApplyInvalidError } from "./errors.js";
export type { Conflict } from "./errors.js";
export { ANCIENT_CHANGES, MAX_UPDATE_MANAGERS } from "./managers.js";
export type { ManagedFieldsEntry } from "./managers.js";
