/**
 * The controller runtime: informers, work queues, controllers, the manager,
 * Lease leader election with a PostgreSQL authority term, condition
 * helpers and the event recorder. Controllers talk to the API only through
 * @kubernetes/client-node.
 */
export { PgAuthority, type PgAuthorityOptions } from "./authority.js";
export { ExponentialRateLimiter, fullJitter, type ExponentialRateLimiterOptions, type RandomSource, type RateLimiter } from "./backoff.js";
export { cacheGauge, countBy, type CacheGaugeOptions, type CacheSample } from "./cache-metrics.js";
export { FakeClock, realClock, sleep, type Clock, type TimerHandle } from "./clock.js";
export * from "./conditions.js";
export {
  Controller,
  intentChanged,
  type ControllerOptions,
  type ReconcileContext,
  type ReconcileResult,
  type Reconciler,
  type SecondaryWatch,
} from "./controller.js";
export {
  EventRecorder,
  coreV1EventSink,
  noEvents,
  recordAll,
  referenceOf,
  type EventRecorderLike,
  type EventRecorderOptions,
  type EventSink,
  type EventType,
  type ObjectRef,
  type PlannedEvent,
} from "./events.js";
export { FencedError, TerminalError, isTerminal } from "./errors.js";
export { Informer, type DeleteInfo, type InformerHandlers, type InformerOptions, type WatchEndReason } from "./informer.js";
export {
  LeaderElector,
  kubeLeaseClient,
  type AuthorityTerm,
  type LeaderCallbacks,
  type LeaderElectorOptions,
  type LeaseClient,
  type LeaseRecord,
} from "./leader-election.js";
export { type KindModule } from "./kind-module.js";
export { Manager, type ManagerOptions, type Runnable } from "./manager.js";
export { RuntimeMetrics, runtimeMetrics } from "./metrics.js";
export { cacheKey, deepFreeze, keyOf, mutableCopy, parseCacheKey, parseQueueKey, queueKey, type ObjectKey } from "./object.js";
export { runOrphanSweeps, type OrphanSweepOptions } from "./orphans.js";
export {
  clientNodeSource,
  customResourceSource,
  httpStatusOf,
  type ClientNodeSourceOptions,
  type CustomResourceRef,
  type ListFn,
  type ListPage,
  type ListParams,
  type ListResult,
  type ListWatchSource,
  type WatchEvent,
  type WatchRequest,
} from "./source.js";
export { GenerationChanged, IgnoreUpdates, UpdateWhen, watchSecondary, type Predicate } from "./watch.js";
export { WorkQueue, type ShutdownOptions, type WorkQueueOptions } from "./workqueue.js";
