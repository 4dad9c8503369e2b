/**
 * Secondary watches and their predicates (controller-runtime's
 * `Watches(source, handler, builder.WithPredicates(...))`): a secondary
 * informer's events are mapped to the primary keys to reconcile, and
 * predicates decide which events count at all.
 *
 * Without predicates every add, update and delete is mapped (an update maps
 * both the old and the new object, so a key that stops matching is
 * reconciled too). With predicates an event is mapped only when every
 * predicate accepts it; a predicate that does not define a hook for an event
 * type accepts that type. Filtering matters: without GenerationChanged, every
 * status write of a NodeGroup requeued its whole subtree (the benchmark's
 * queue stayed about 5,000 deep).
 */
import type { KubernetesObject } from "@kubernetes/client-node";
import type { SecondaryWatch } from "./controller.js";
import type { Informer } from "./informer.js";
import type { ObjectKey } from "./object.js";

/** Decides which events of a watched informer are mapped to keys. Undefined hooks accept. */
export interface Predicate<S> {
  create?(obj: S): boolean;
  /** Also called for resyncs, where oldObj and newObj are the same object. */
  update?(oldObj: S, newObj: S): boolean;
  delete?(obj: S): boolean;
}

/**
 * Accepts updates whose metadata.generation moved (spec changes; status
 * writes and resyncs do not bump it). Adds and deletes pass.
 */
export const GenerationChanged: Predicate<KubernetesObject> = {
  update: (oldObj, newObj) => oldObj !== newObj && oldObj.metadata?.generation !== newObj.metadata?.generation,
};

/** Rejects every update (only appearance and disappearance matter). */
export const IgnoreUpdates: Predicate<KubernetesObject> = { update: () => false };

/**
 * Accepts updates for which `changed(old, new)` is true; resyncs (the same
 * object delivered again) never pass. Adds and deletes pass.
 */
export function UpdateWhen<S>(changed: (oldObj: S, newObj: S) => boolean): Predicate<S> {
  return { update: (oldObj, newObj) => oldObj !== newObj && changed(oldObj, newObj) };
}

/**
 * Watches a secondary informer: the events every predicate accepts are
 * mapped to primary keys (e.g. a Secret to the VPNConnections that reference
 * it). See the module comment.
 */
export function watchSecondary<S extends KubernetesObject>(informer: Informer<S>, map: (obj: S) => ObjectKey[], ...predicates: Array<Predicate<NoInfer<S>>>): SecondaryWatch {
  return {
    informer: informer as unknown as Informer<KubernetesObject>,
    subscribe(enqueue) {
      const emit = (obj: S): void => {
        for (const k of map(obj)) enqueue(k);
      };
      return informer.addHandlers({
        onAdd: (obj) => {
          if (predicates.every((p) => p.create?.(obj) ?? true)) emit(obj);
        },
        onUpdate: (oldObj, newObj) => {
          if (!predicates.every((p) => p.update?.(oldObj, newObj) ?? true)) return;
          emit(oldObj);
          if (newObj !== oldObj) emit(newObj);
        },
        onDelete: (obj) => {
          if (predicates.every((p) => p.delete?.(obj) ?? true)) emit(obj);
        },
      });
    },
  };
}
