/**
 * Test support: real `bin/fabric-agent` processes for end-to-end tests.
 *
 * Each e2e file used to carry its own spawn, output capture and kill-in-after
 * code; `AgentProcesses` is that code once. A test starts agents through one
 * `AgentProcesses`, waits on what they print (`waitFor`), stops them with a
 * signal and awaits their exit, and its `after` hook ends every agent it
 * started with one `stopAll()`.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import type { AgentStatus } from "../../agent/sync/status.js";
import { agentEnv, repoRoot } from "./controlplane.js";

/** The agent executable the e2e tests run. */
export const agentBin = join(repoRoot, "bin", "fabric-agent");

/** The status of the first membership in an agent state directory (`fabric-agent status --json`), undefined before there is one. */
export function agentStatusOf(stateDir: string): AgentStatus | undefined {
  const out = execFileSync(agentBin, ["status", "--json", "--state-dir", stateDir], { encoding: "utf8" });
  return (JSON.parse(out) as Array<{ status: AgentStatus | null }>)[0]?.status ?? undefined;
}

/** What an agent process must print for `waitFor` to return. */
export type OutputMatch = string | RegExp | ((output: string) => boolean);

/** How to start one agent. */
export interface AgentStartOptions {
  /** Appended to the arguments as `--state-dir DIR` when given. */
  stateDir?: string;
  /** Extra environment over `agentEnv()` (which sets FABRIC_LOG_LEVEL=info). */
  env?: NodeJS.ProcessEnv;
}

/** One running (or exited) agent process and what it printed so far. */
export interface AgentProcess {
  readonly child: ChildProcess;
  /** The process id (set once spawned). */
  readonly pid: number | undefined;
  /** Everything written to stdout and stderr, interleaved in arrival order. */
  output(): string;
  /** What was written to stdout alone. */
  stdout(): string;
  /** What was written to stderr alone. */
  stderr(): string;
  /** Resolves with the exit code (null when ended by a signal) once the process has exited and its output is read. */
  readonly exited: Promise<number | null>;
  /** True until the process has exited. */
  running(): boolean;
  /**
   * Resolves once the output contains `match` (a substring, a pattern, or a
   * predicate over the whole output). Rejects, with the output, when the
   * process ends without it or `timeoutMs` passes.
   */
  waitFor(match: OutputMatch, timeoutMs?: number): Promise<void>;
  /** Sends `signal` (SIGTERM by default) unless the process has exited, and awaits its exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

function matches(output: string, match: OutputMatch): boolean {
  if (typeof match === "string") return output.includes(match);
  if (match instanceof RegExp) return match.test(output);
  return match(output);
}

function describeMatch(match: OutputMatch): string {
  return typeof match === "function" ? "the awaited output" : JSON.stringify(String(match));
}

/** Starts agent processes and ends all of them in one call. */
export class AgentProcesses {
  private readonly started: AgentProcess[] = [];

  /** Spawns `bin/fabric-agent` with `args`, capturing its output. */
  start(args: string[], opts: AgentStartOptions = {}): AgentProcess {
    const argv = opts.stateDir === undefined ? args : [...args, "--state-dir", opts.stateDir];
    const child = spawn(agentBin, argv, { stdio: ["ignore", "pipe", "pipe"], env: agentEnv(opts.env) });
    let out = "";
    let stdout = "";
    let stderr = "";
    let closed = false;
    const listeners = new Set<() => void>();
    const notify = (): void => {
      for (const l of [...listeners]) l();
    };
    child.stdout?.on("data", (b: Buffer) => {
      stdout += b.toString();
      out += b.toString();
      notify();
    });
    child.stderr?.on("data", (b: Buffer) => {
      stderr += b.toString();
      out += b.toString();
      notify();
    });
    const outputClosed = new Promise<void>((resolve) =>
      child.once("close", () => {
        closed = true;
        notify();
        resolve();
      }),
    );
    // `exited` waits for the output to be complete too, but not for long: a
    // grandchild that inherited the pipes must not hold it up.
    const exited = new Promise<number | null>((resolve) =>
      child.once("exit", (code) => {
        const grace = setTimeout(() => resolve(code), 2_000);
        void outputClosed.then(() => {
          clearTimeout(grace);
          resolve(code);
        });
      }),
    );
    const proc: AgentProcess = {
      child,
      get pid() {
        return child.pid;
      },
      output: () => out,
      stdout: () => stdout,
      stderr: () => stderr,
      exited,
      running: () => child.exitCode === null && child.signalCode === null,
      waitFor(match, timeoutMs = 30_000) {
        return new Promise<void>((resolve, reject) => {
          const done = (err?: Error): void => {
            listeners.delete(check);
            clearTimeout(timer);
            if (err === undefined) resolve();
            else reject(err);
          };
          const check = (): void => {
            if (matches(out, match)) done();
            else if (closed) done(new Error(`fabric-agent ${args[0] ?? ""} exited (code ${String(child.exitCode)}, signal ${String(child.signalCode)}) without printing ${describeMatch(match)}; it printed:\n${out}`));
          };
          const timer = setTimeout(() => done(new Error(`fabric-agent ${args[0] ?? ""} did not print ${describeMatch(match)} within ${timeoutMs} ms; it printed:\n${out}`)), timeoutMs);
          listeners.add(check);
          check();
        });
      },
      async stop(signal = "SIGTERM") {
        if (proc.running()) child.kill(signal);
        await exited;
      },
    };
    this.started.push(proc);
    return proc;
  }

  /** Every process started so far, in start order. */
  all(): readonly AgentProcess[] {
    return this.started;
  }

  /** Ends every started process still running with `signal` (SIGKILL by default) and awaits all exits. */
  async stopAll(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    await Promise.all(this.started.map((p) => p.stop(signal)));
  }
}
