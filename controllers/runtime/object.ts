/**
 * Object keys and immutability helpers shared by the informer, the workqueue
 * and the controller.
 */
import type { KubernetesObject } from "@kubernetes/client-node";

/** Identifies one object: namespace is absent for cluster-scoped kinds. */
export interface ObjectKey {
  namespace?: string;
  name: string;
}

/** The cache key of an object: "namespace/name", or "name" when cluster-scoped. */
export function cacheKey(key: ObjectKey): string {
  return key.namespace ? `${key.namespace}/${key.name}` : key.name;
}

/** The ObjectKey a cache key ("namespace/name" or "name") stands for. */
export function parseCacheKey(key: string): ObjectKey {
  const i = key.indexOf("/");
  return i < 0 ? { name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}

/** The ObjectKey of an object, or undefined when it has no metadata.name. */
export function keyOf(obj: KubernetesObject): ObjectKey | undefined {
  const name = obj.metadata?.name;
  if (typeof name !== "string" || name === "") return undefined;
  const namespace = obj.metadata?.namespace;
  return typeof namespace === "string" && namespace !== "" ? { namespace, name } : { name };
}

/** The queue key of an object: "kind/namespace/name" (namespace empty when cluster-scoped). */
export function queueKey(kind: string, key: ObjectKey): string {
  return `${kind}/${key.namespace ?? ""}/${key.name}`;
}

/** Parses a queue key made by queueKey; throws on a malformed key. */
export function parseQueueKey(key: string): { kind: string; key: ObjectKey } {
  const parts = key.split("/");
  const [kind, namespace, name] = parts;
  if (parts.length !== 3 || kind === undefined || namespace === undefined || name === undefined || name === "") {
    throw new Error(`malformed queue key ${JSON.stringify(key)}`);
  }
  return { kind, key: namespace === "" ? { name } : { namespace, name } };
}

/**
 * Freezes value and everything reachable from it, so a cached object cannot be
 * mutated by a caller (assignments throw in strict-mode code). Returns value.
 * Date fields of typed client-node models stay mutable through their methods.
 */
export function deepFreeze<V>(value: V): V {
  if (value === null || typeof value !== "object" || Object.isFrozen(value)) return value;
  Object.freeze(value);
  for (const k of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[k]);
  return value;
}

/** A mutable deep copy of a (possibly frozen) cached object, for building updates. */
export function mutableCopy<V>(value: V): V {
  return structuredClone(value);
}
