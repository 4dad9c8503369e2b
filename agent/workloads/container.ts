/**
 * The container runtime: docker and podman are two variants of one runtime,
 * driven through their CLIs. A container workload is supervised as the
 * foreground `<engine> run --rm` CLI process (which proxies signals to the
 * container), so start, stop, restart, backoff, logs and adoption are the
 * same as for a native process.
 *
 * Availability is checked with `<engine> info` (the engine, not only the
 * CLI: `docker --version` answers without a running daemon). Without the CLI
 * or with an unreachable engine the workload is reported Unsupported with
 * the reason; nothing is pretended. Results are cached for a short while so a
 * sync loop does not fork `docker info` per workload per tick.
 */
import { execFile } from "node:child_process";
import type { DesiredWorkload } from "./types.js";

/** A container engine CLI. */
export type ContainerEngine = "docker" | "podman";

/** Whether the engine can run containers here, and why not. */
export type EngineAvailability = { available: true; version: string } | { available: false; reason: "ContainerRuntimeMissing" | "ContainerEngineUnreachable"; message: string };

/** Checks an engine: CLI on PATH and engine answering `info`. */
export function probeEngine(engine: ContainerEngine, timeoutMs = 5000): Promise<EngineAvailability> {
  return new Promise((resolve) => {
    execFile(engine, ["info", "--format", "{{.ServerVersion}}"], { timeout: timeoutMs, env: process.env }, (err, stdout, stderr) => {
      if (err === null) {
        resolve({ available: true, version: stdout.trim() });
        return;
      }
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") {
        resolve({ available: false, reason: "ContainerRuntimeMissing", message: `${engine} CLI not found on PATH: this host has no ${engine} runtime` });
        return;
      }
      const detail = (stderr || err.message).split("\n").find((l) => l.trim() !== "") ?? err.message;
      resolve({ available: false, reason: "ContainerEngineUnreachable", message: `${engine} engine not reachable (${engine} info failed): ${detail.trim().slice(0, 300)}` });
    });
  });
}

/** Caches probeEngine results per engine for ttlMs. */
export class EngineChecker {
  private readonly cache = new Map<ContainerEngine, { at: number; result: EngineAvailability }>();
  private readonly pending = new Map<ContainerEngine, Promise<EngineAvailability>>();
  constructor(
    private readonly ttlMs = 30_000,
    private readonly check: (e: ContainerEngine) => Promise<EngineAvailability> = (e) => probeEngine(e),
  ) {}

  /** The cached availability, checking again when it is older than the ttl. */
  async availability(engine: ContainerEngine, now: number): Promise<EngineAvailability> {
    const c = this.cache.get(engine);
    if (c !== undefined && now - c.at < this.ttlMs) return c.result;
    let p = this.pending.get(engine);
    if (p === undefined) {
      p = this.check(engine).finally(() => this.pending.delete(engine));
      this.pending.set(engine, p);
    }
    const result = await p;
    this.cache.set(engine, { at: now, result });
    return result;
  }
}

/** Container name of a workload (stable, so a leftover can be removed before a start). */
export function containerName(workload: string): string {
  return `accessfabric-${workload}`;
}

/** argv of `<engine> run` for the workload. */
export function containerRunArgs(w: DesiredWorkload): string[] {
  const args = ["run", "--rm", "--init", "--name", containerName(w.name), "--label", `io.accessfabric.workload=${w.name}`];
  for (const [k, v] of Object.entries(w.env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) args.push("-e", `${k}=${v}`);
  if (w.workingDir !== undefined && w.workingDir !== "") args.push("-w", w.workingDir);
  const [entry, ...rest] = w.command;
  if (entry !== undefined) args.push("--entrypoint", entry);
  args.push(w.image ?? "", ...rest, ...w.args);
  return args;
}

/** Removes a leftover container of the workload; errors are ignored (usually: none exists). */
export function removeContainer(engine: ContainerEngine, workload: string, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve) => {
    execFile(engine, ["rm", "-f", containerName(workload)], { timeout: timeoutMs }, () => resolve());
  });
}
