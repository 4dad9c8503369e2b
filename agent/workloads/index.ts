/** The agent's workload supervisor and its status writer (see supervisor.ts for the contract). */
export { WorkloadSupervisor, workloadSpecHash, type BackoffSettings, type WorkloadSupervisorOptions } from "./supervisor.js";
export { WorkloadReporter, type WorkloadReporterOptions } from "./reporter.js";
export { EngineChecker, probeEngine, type ContainerEngine, type EngineAvailability } from "./container.js";
export type { DesiredWorkload, Spawner, WorkloadClock, WorkloadState, WorkloadStatus } from "./types.js";
export { superviseWorkloads, type SupervisedWorkloads, type SuperviseWorkloadsOptions } from "./wire.js";
