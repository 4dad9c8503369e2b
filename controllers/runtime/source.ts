/**
 * Where an Informer gets its objects: a list call plus a watch stream.
 *
 * Why our own source over client-node's `Watch` instead of client-node's
 * `ListWatch`/`makeInformer` (checked against client-node 2.0.1, dist/cache.js):
 * - ListWatch stops for good after any watch error other than 410 or a
 *   client-side timeout: it calls the error callbacks and never reconnects,
 *   which is the "informer silently stops" failure reported by users.
 * - It does not request allowWatchBookmarks, so on a quiet resource it cannot
 *   advance its resourceVersion and must relist after compaction.
 * - Its cache hands out the stored objects themselves (callers can mutate
 *   them) and has no resync, no watchdog, no metrics, no injectable clock.
 * - Its list function is not paged and it has no way to inject a fake for
 *   unit tests of 410 / silent watches.
 * `Watch` itself is fine: it streams newline-delimited events, applies the
 * kubeconfig's auth and TLS, and ends with done(err). We wrap it in a promise
 * and keep all policy (backoff, 410, watchdog, resync) in the Informer.
 *
 * Note: client-node's Watch aborts a stream that received no bytes for 30 s
 * (a fixed, private requestTimeoutMs) and reports a TimeoutError. The
 * Informer treats that like its own watchdog firing: resume from the last
 * resourceVersion at once.
 */
import { KubeConfig, Watch, CoreV1Api, CustomObjectsApi, type KubernetesObject } from "@kubernetes/client-node";

/** Result of a complete (all pages) list. */
export interface ListResult<T> {
  items: T[];
  /** The list's resourceVersion: where the watch starts. */
  resourceVersion: string;
}

/** Watch event types sent by the API server. */
export type WatchEventType = "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";

/** One decoded watch event. object is unchecked JSON: the Informer validates it. */
export interface WatchEvent {
  type: string;
  object: unknown;
}

/** Parameters of one watch request. */
export interface WatchRequest {
  resourceVersion: string;
  allowWatchBookmarks: boolean;
  /** Server-side timeout; the server closes the stream normally after it. */
  timeoutSeconds: number;
  /** Aborting ends the stream; watch() then resolves. */
  signal: AbortSignal;
}

/**
 * A list+watch source. Implementations: clientNodeSource (real API server) and
 * fakes in tests.
 */
export interface ListWatchSource<T extends KubernetesObject> {
  /** Lists every object (following continue tokens). Errors carry statusCode/code when HTTP. */
  list(signal: AbortSignal): Promise<ListResult<T>>;
  /**
   * Streams events to onEvent until the stream ends: resolves when the server
   * closes it or the signal aborts, rejects with the error otherwise (an HTTP
   * error carries statusCode, e.g. 410).
   */
  watch(req: WatchRequest, onEvent: (event: WatchEvent) => void): Promise<void>;
}

/** Parameters passed to a list function; names match client-node's generated APIs. */
export interface ListParams {
  limit?: number;
  _continue?: string;
  labelSelector?: string;
  fieldSelector?: string;
}

/** One page of a list response: raw JSON (`continue`) or a typed model (`_continue`). */
export interface ListPage<T> {
  items?: T[];
  metadata?: { resourceVersion?: string; continue?: string; _continue?: string };
}

/** A typed list call, e.g. `(p) => coreApi.listNamespace(p)`. */
export type ListFn<T> = (params: ListParams) => Promise<ListPage<T>>;

/** Options of clientNodeSource. */
export interface ClientNodeSourceOptions<T> {
  kubeConfig: KubeConfig;
  /** Collection path for the watch, e.g. /apis/accessfabric.io/v1alpha1/fabricnodes. */
  path: string;
  list: ListFn<T>;
  labelSelector?: string;
  fieldSelector?: string;
  /** Page size for lists (default 500, like client-go's pager); 0 disables paging. */
  pageSize?: number;
}

/** The HTTP status of an error thrown by client-node (ApiException.code or Watch's statusCode). */
export function httpStatusOf(err: unknown): number | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const e = err as { statusCode?: unknown; code?: unknown };
  if (typeof e.statusCode === "number") return e.statusCode;
  if (typeof e.code === "number") return e.code;
  return undefined;
}

function continueOf(page: ListPage<unknown>): string | undefined {
  const c = page.metadata?.continue ?? page.metadata?._continue;
  return c === undefined || c === "" ? undefined : c;
}

/** A ListWatchSource over client-node: `list` through a typed API call, the watch through `Watch`. */
export function clientNodeSource<T extends KubernetesObject>(opts: ClientNodeSourceOptions<T>): ListWatchSource<T> {
  const watcher = new Watch(opts.kubeConfig);
  const pageSize = opts.pageSize ?? 500;
  const selectors = { labelSelector: opts.labelSelector, fieldSelector: opts.fieldSelector };

  async function listAll(signal: AbortSignal, paged: boolean): Promise<ListResult<T>> {
    const items: T[] = [];
    let cont: string | undefined;
    let resourceVersion = "";
    do {
      if (signal.aborted) throw new Error("list aborted", { cause: signal.reason });
      const params: ListParams = { ...selectors };
      if (paged && pageSize > 0) params.limit = pageSize;
      if (cont !== undefined) params._continue = cont;
      const page = await opts.list(params);
      items.push(...(page.items ?? []));
      resourceVersion = page.metadata?.resourceVersion ?? "";
      cont = paged ? continueOf(page) : undefined;
    } while (cont !== undefined);
    return { items, resourceVersion };
  }

  return {
    async list(signal) {
      try {
        return await listAll(signal, true);
      } catch (err) {
        // A continue token expired mid-list (410): like client-go's pager, fall back to one unpaged list.
        if (httpStatusOf(err) === 410 && pageSize > 0) return listAll(signal, false);
        throw err;
      }
    },

    watch(req, onEvent) {
      return new Promise<void>((resolve, reject) => {
        let request: AbortController | undefined;
        let finished = false;
        const finish = (err: unknown): void => {
          if (finished) return;
          finished = true;
          req.signal.removeEventListener("abort", onAbort);
          request?.abort();
          if (err !== null && err !== undefined && !req.signal.aborted) reject(err);
          else resolve();
        };
        const onAbort = (): void => finish(null);
        if (req.signal.aborted) {
          resolve();
          return;
        }
        req.signal.addEventListener("abort", onAbort, { once: true });
        const query: Record<string, string | number | boolean | undefined> = {
          resourceVersion: req.resourceVersion || undefined,
          allowWatchBookmarks: req.allowWatchBookmarks,
          timeoutSeconds: req.timeoutSeconds,
          ...selectors,
        };
        watcher
          .watch(
            opts.path,
            query,
            (type: string, object: unknown) => {
              if (!finished) onEvent({ type, object });
            },
            (err: unknown) => finish(err),
          )
          .then(
            (ac) => {
              request = ac;
              if (finished) ac.abort();
            },
            (err: unknown) => finish(err ?? new Error("watch failed")),
          );
      });
    },
  };
}

/** Identifies a custom resource collection. */
export interface CustomResourceRef {
  group: string;
  version: string;
  plural: string;
  /** Set to watch one namespace of a namespaced kind; omit for all namespaces or cluster-scoped kinds. */
  namespace?: string;
}

/** The core (group "") collections an informer may follow, watched across all namespaces. */
const CORE_LISTS: Record<string, (api: CoreV1Api, p: ListParams) => Promise<ListPage<unknown>>> = {
  secrets: (api, p) => api.listSecretForAllNamespaces(p),
};

/**
 * A clientNodeSource for a custom resource through CustomObjectsApi, or for
 * one of the core collections in CORE_LISTS (group "", all namespaces).
 */
export function customResourceSource<T extends KubernetesObject>(
  kubeConfig: KubeConfig,
  ref: CustomResourceRef,
  extra: Pick<ClientNodeSourceOptions<T>, "labelSelector" | "fieldSelector" | "pageSize"> = {},
): ListWatchSource<T> {
  const { group, version, plural, namespace } = ref;
  if (group === "") {
    const core = CORE_LISTS[plural];
    if (core === undefined || namespace !== undefined) throw new Error(`customResourceSource: no informer source for core ${version}/${plural}${namespace === undefined ? "" : ` in namespace ${namespace}`}`);
    const coreApi = kubeConfig.makeApiClient(CoreV1Api);
    return clientNodeSource<T>({ kubeConfig, path: `/api/${version}/${plural}`, list: (p) => core(coreApi, p) as Promise<ListPage<T>>, ...extra });
  }
  const api = kubeConfig.makeApiClient(CustomObjectsApi);
  const path =
    namespace === undefined
      ? `/apis/${group}/${version}/${plural}`
      : `/apis/${group}/${version}/namespaces/${encodeURIComponent(namespace)}/${plural}`;
  const list: ListFn<T> = (p) =>
    namespace === undefined
      ? api.listClusterCustomObject({ group, version, plural, ...p })
      : api.listNamespacedCustomObject({ group, version, plural, namespace, ...p });
  return clientNodeSource<T>({ kubeConfig, path, list, ...extra });
}
