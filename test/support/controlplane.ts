/**
 * Test support: real control planes (in this process, or as a child process
 * that tests may SIGKILL), the real kubectl, and client-node configured for
 * them.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as k8s from "@kubernetes/client-node";
import { runControlPlane, type ControlPlane } from "../../controlplane/controlplane.js";
import { logger } from "../../lib/log.js";
import { seedStateDir } from "./pg-template.js";

/** The repository root. */
export const repoRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)));

/** A fresh state directory (traversable, so the embedded postgres user can reach its data dir). */
export function tempStateDir(prefix = "fabric-test-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  return dir;
}

/** A control plane running in this process. */
export interface TestControlPlane {
  cp: ControlPlane;
  stateDir: string;
  kubeconfig: string;
  kc: k8s.KubeConfig;
  stop(): Promise<void>;
}

/** Starts a control plane in this process on ephemeral ports with a throwaway embedded database. */
export async function startTestControlPlane(opts: { watchHistoryEvents?: number; compactIntervalMs?: number; bookmarkIntervalMs?: number } = {}): Promise<TestControlPlane> {
  const stateDir = tempStateDir();
  await seedStateDir(stateDir);
  const cp = await runControlPlane({
    stateDir,
    host: "127.0.0.1",
    port: 0,
    metricsPort: 0,
    fsync: false,
    log: logger("test-controlplane"),
    ...opts,
  });
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(cp.api.kubeconfigPath);
  return {
    cp,
    stateDir,
    kubeconfig: cp.api.kubeconfigPath,
    kc,
    async stop() {
      await cp.stop();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

let shared: Promise<TestControlPlane> | undefined;

/** One control plane shared by the integration tests of this mocha run (stopped by the root hook). */
export function sharedControlPlane(): Promise<TestControlPlane> {
  shared ??= startTestControlPlane();
  return shared;
}

/** Stops the shared control plane, if started. */
export async function stopSharedControlPlane(): Promise<void> {
  if (!shared) return;
  const s = await shared;
  shared = undefined;
  await s.stop();
}

/** The kubectl binary the tests drive: $KUBECTL or kubectl on PATH. */
export const kubectlBin = process.env.KUBECTL ?? "kubectl";

/** An older kubectl the compatibility pass also drives ($KUBECTL_LEGACY; hack/test.sh sets it to Debian's 1.20). */
export const kubectlLegacyBin: string | undefined = process.env.KUBECTL_LEGACY || undefined;

/** A kubectl binary and the client version it reports. */
export interface KubectlVariant {
  bin: string;
  /** Client minor version (1.32 → 32); decides which flags and output formats to expect. */
  minor: number;
  /** gitVersion as reported, e.g. "v1.20.2". */
  gitVersion: string;
  /** A short, name-safe tag (e.g. "k120"), for object names that must not collide between passes. */
  tag: string;
}

/** Asks a kubectl binary for its client version; throws when it cannot run. */
export function kubectlVariant(bin: string): KubectlVariant {
  let out: string;
  try {
    out = execFileSync(bin, ["version", "--client", "-o", "json"], { encoding: "utf8", timeout: 30_000, stdio: ["ignore", "pipe", "pipe"] });
  } catch (cause) {
    throw new Error(`running ${bin} version --client`, { cause });
  }
  const parsed: unknown = JSON.parse(out);
  const cv = typeof parsed === "object" && parsed !== null ? (parsed as { clientVersion?: { minor?: unknown; gitVersion?: unknown } }).clientVersion : undefined;
  const minor = typeof cv?.minor === "string" ? Number.parseInt(cv.minor, 10) : Number.NaN;
  if (!Number.isInteger(minor) || typeof cv?.gitVersion !== "string") {
    throw new Error(`unexpected ${bin} version --client output: ${out}`);
  }
  return { bin, minor, gitVersion: cv.gitVersion, tag: `k1${String(minor)}` };
}

/**
 * The kubectl binaries the kubectl tests run against: always {@link kubectlBin},
 * plus {@link kubectlLegacyBin} when set and of another minor version. A machine
 * with one kubectl version (e.g. a fresh Debian host whose only kubectl is the
 * 1.20 that hack/ensure-kubectl.sh installed, and that hack/test.sh also names
 * as KUBECTL_LEGACY) runs the suite once with it: a second pass with the same
 * version would test nothing new. Throws when a named binary cannot run, so a
 * broken legacy binary fails the run instead of silently dropping a pass.
 */
export function kubectlVariants(bins: readonly string[] = kubectlLegacyBin === undefined ? [kubectlBin] : [kubectlBin, kubectlLegacyBin]): KubectlVariant[] {
  const byTag = new Map<string, KubectlVariant>();
  for (const variant of bins.map(kubectlVariant)) {
    if (!byTag.has(variant.tag)) byTag.set(variant.tag, variant);
  }
  return [...byTag.values()];
}

/** Result of one kubectl run. */
export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options of {@link kubectl} and {@link kubectlWith}. */
export interface KubectlOptions {
  input?: string;
  timeoutMs?: number;
}

/** A discovery cache per binary: kubectl versions lay their caches out differently. */
function kubectlCacheDir(bin: string): string {
  const id = createHash("sha256").update(bin).digest("hex").slice(0, 12);
  return join(tmpdir(), `kubectl-cache-${process.pid}-${id}`);
}

/** Runs a command to its exit (60 s at most by default); never throws on a non-zero exit (code 1 when it could not run or was killed). */
export function runCommand(bin: string, args: string[], opts: KubectlOptions = {}): Promise<KubectlResult> {
  return new Promise((resolvePromise) => {
    const child = execFile(bin, args, { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === "number" ? (err as { code: number }).code : 1) : 0;
      resolvePromise({ code, stdout, stderr });
    });
    if (opts.input !== undefined) {
      child.stdin?.end(opts.input);
    }
  });
}

/** Runs the given kubectl binary against a kubeconfig; never throws on a non-zero exit. */
export function kubectlWith(bin: string, kubeconfig: string, args: string[], opts: KubectlOptions = {}): Promise<KubectlResult> {
  return runCommand(bin, ["--kubeconfig", kubeconfig, "--cache-dir", kubectlCacheDir(bin), ...args], opts);
}

/** Runs this tree's bin/fabricctl; never throws on a non-zero exit. */
export function fabricctl(args: string[], opts: KubectlOptions = {}): Promise<KubectlResult> {
  return runCommand(join(repoRoot, "bin", "fabricctl"), args, opts);
}

/** Runs the real kubectl ({@link kubectlBin}) against a kubeconfig; never throws on a non-zero exit. */
export function kubectl(kubeconfig: string, args: string[], opts: KubectlOptions = {}): Promise<KubectlResult> {
  return kubectlWith(kubectlBin, kubeconfig, args, opts);
}

/** A control plane running as a child process (so it can be SIGKILLed). */
export interface ChildControlPlane {
  child: ChildProcess;
  kubeconfig: string;
  output: () => string;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  /** Sends `signal` (SIGTERM by default) unless it has exited, and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Spawns bin/fabric-controlplane on ephemeral ports and waits for its ready
 * line. Its embedded database (when it has one) starts from the migrated
 * template of ./pg-template.ts on the first start in `stateDir`.
 */
export async function spawnControlPlane(stateDir: string, extraArgs: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<ChildControlPlane> {
  const external = (env.DATABASE_URL ?? process.env.DATABASE_URL) || extraArgs.some((a) => a.startsWith("--database-url"));
  if (!external) await seedStateDir(stateDir);
  const child = spawn(join(repoRoot, "bin", "fabric-controlplane"), ["--state-dir", stateDir, "--port", "0", "--metrics-port", "0", "--agent-port", "0", "--no-fsync", ...extraArgs], {
    // The ready line is an info line: never inherit a quieter log level.
    env: { ...process.env, FABRIC_LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  await new Promise<void>((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`control plane not ready in 60s:\n${out}`)), 60_000);
    const onData = (b: Buffer) => {
      out += b.toString();
      if (out.includes('"control plane ready"')) {
        clearTimeout(timer);
        resolvePromise();
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", (b: Buffer) => (out += b.toString()));
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`control plane exited with ${String(code)} before ready:\n${out}`));
    });
  });
  const stop = (signal: NodeJS.Signals = "SIGTERM"): Promise<number | null> => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    return exited;
  };
  return { child, kubeconfig: join(stateDir, "kubeconfig"), output: () => out, exited, stop };
}

/** Environment for spawned agents and CLIs: their info lines (which tests read) are never silenced by the test run's log level. */
export function agentEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { ...process.env, FABRIC_LOG_LEVEL: "info", ...extra };
}

/** Polls `fn` until it returns a truthy value or the timeout passes. */
export async function eventually<T>(fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 20_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`condition not met within ${timeoutMs} ms${lastErr ? `: ${String(lastErr)}` : ""}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
