/**
 * The set-up the release e2e tests share (test/e2e/rollout.test.ts,
 * test/e2e/update-cache.test.ts): a real control plane process with its
 * agent API, clusters that approve tokens by themselves, one of them
 * trusting a release signing key generated here, state directories for the
 * agents, and signed releases of a component written to files and pushed
 * with the real fabricctl. stop() ends the agents, the workload processes
 * (found by the fixture's marker) and the control plane, and removes every
 * directory.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { generateSigningKey, signRelease, spkiBase64, type ReleaseManifest } from "../../lib/release/index.js";
import { AgentProcesses, agentStatusOf } from "./agent-process.js";
import { eventually, fabricctl, kubectl, spawnControlPlane, tempStateDir, type ChildControlPlane, type KubectlResult } from "./controlplane.js";
import { applyCluster, createToken } from "./enrollment.js";
import { killAllWith } from "./processes.js";
import { freePort } from "./tcp-proxy.js";

const ARCH: Record<string, string> = { x64: "amd64", arm64: "arm64" };

/** A signed release written to files: the Release object (`file`) and its artifact. */
export interface SignedRelease {
  /** The Release object's name (`<component>-<version with dashes>`). */
  name: string;
  file: string;
  artifact: string;
  sha256: string;
  length: number;
  bytes: Buffer;
}

/** What a release may carry besides its executable. */
export interface ReleaseOptions {
  component?: string;
  /** Default: a day from now. */
  expires?: string;
  healthCheck?: ReleaseManifest["healthCheck"];
}

/** How the fixture starts. */
export interface ReleaseFixtureOptions {
  /** The cluster that trusts the fixture's signing key. */
  cluster: string;
  /** Further clusters (token auto-approval, no release trust). */
  otherClusters?: readonly string[];
  /** The agents' names: each gets a state directory. */
  nodes: readonly string[];
  /** Prefix of the temporary directories and of the marker. */
  prefix: string;
}

/** See the module comment. */
export interface ReleaseFixture {
  cp: ChildControlPlane;
  kubeconfig: string;
  /** The agent API's URL and the hash of its CA, for `fabric-agent join`. */
  server: string;
  caHash: string;
  /** A scratch directory for release files and downloads. */
  work: string;
  /** Each node's agent state directory. */
  dirs: Record<string, string>;
  procs: AgentProcesses;
  /** A word to put in the workloads' arguments: stop() kills every process that has it. */
  marker: string;
  /** The Go-style architecture of this host (amd64, arm64). */
  arch: string;
  /** A node's membership directory in the trusting cluster. */
  membership(node: string): string;
  agentStatus(node: string): ReturnType<typeof agentStatusOf>;
  /** The update state of a node's `svc` workload, when it has one. */
  updateState(node: string): { state: string; target?: { version: string }; current?: { version: string } } | undefined;
  /** kubectl apply of an accessfabric.io/v1alpha1 object (apiVersion added). */
  apply(obj: Record<string, unknown>): Promise<void>;
  /** A join token of the trusting cluster that auto-approves, usable `maxUses` times. */
  token(name: string, maxUses: number): Promise<string>;
  /** `fabric-agent join` arguments for a node of the trusting cluster (300 ms polls, 1 s backoff cap). */
  joinArgs(token: string, node: string, capabilities: string): string[];
  /** Signs a release of `version` whose artifact is `executable`, for this host, and writes its files. */
  release(version: string, executable: string | Buffer, o?: ReleaseOptions): SignedRelease;
  /** `fabricctl release push` of a release (exit code 0 asserted). */
  push(r: SignedRelease): Promise<KubectlResult>;
  /** Waits until the control plane has verified the release. */
  verified(r: SignedRelease, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** Starts the control plane and prepares the clusters; see the module comment. */
export async function startReleaseFixture(o: ReleaseFixtureOptions): Promise<ReleaseFixture> {
  const cpDir = tempStateDir();
  const work = tempStateDir(`${o.prefix}-`);
  const dirs = Object.fromEntries(o.nodes.map((n) => [n, tempStateDir(`${o.prefix}-agent-${n}-`)]));
  const procs = new AgentProcesses();
  const marker = `${o.prefix}-${randomBytes(6).toString("hex")}`;
  const key = generateSigningKey();
  const arch = ARCH[process.arch] ?? process.arch;
  const agentPort = await freePort();
  const removeDirs = (): void => {
    for (const d of [cpDir, work, ...Object.values(dirs)]) rmSync(d, { recursive: true, force: true });
  };
  const cp = await spawnControlPlane(cpDir, ["--agent-port", String(agentPort), "--leader-elect", "false"]).catch((err: unknown) => {
    removeDirs();
    throw err;
  });
  const kubeconfig = cp.kubeconfig;
  const ready = /"agentApi":"([^"]+)","agentApiCaHash":"([^"]+)"/.exec(cp.output());
  assert.ok(ready, cp.output());
  const [, server = "", caHash = ""] = ready;

  const membership = (n: string): string => join(dirs[n] ?? "", "clusters", o.cluster);
  const fixture: ReleaseFixture = {
    cp,
    kubeconfig,
    server,
    caHash,
    work,
    dirs,
    procs,
    marker,
    arch,
    membership,
    agentStatus: (n) => agentStatusOf(dirs[n] ?? ""),
    updateState(n) {
      try {
        return JSON.parse(readFileSync(join(membership(n), "updates", "svc", "state.json"), "utf8")) as { state: string };
      } catch {
        return undefined;
      }
    },
    async apply(obj) {
      const r = await kubectl(kubeconfig, ["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "accessfabric.io/v1alpha1", ...obj }) });
      assert.equal(r.code, 0, r.stderr);
    },
    token: (name, maxUses) => createToken(kubeconfig, name, { cluster: o.cluster, autoApprove: true, maxUses }),
    joinArgs: (token, node, capabilities) => ["join", "--server", server, "--token", token, "--ca-hash", caHash, "--node-name", node, "--cluster", o.cluster, "--poll-interval", "300ms", "--backoff-cap", "1s", "--capabilities", capabilities],
    release(version, executable, r = {}) {
      const component = r.component ?? "svc";
      const bytes = Buffer.from(executable);
      const artifact = join(work, `${component}-${version}`);
      writeFileSync(artifact, bytes, { mode: 0o755 });
      const sha256 = createHash("sha256").update(bytes).digest("hex");
      const m: ReleaseManifest = {
        _type: "release",
        specVersion: 1,
        component,
        version,
        expires: r.expires ?? new Date(Date.now() + 86_400_000).toISOString().replace(/\.\d+Z$/, "Z"),
        artifacts: [{ os: "linux", arch: arch as "amd64", length: bytes.length, sha256 }],
        ...(r.healthCheck !== undefined ? { healthCheck: r.healthCheck } : {}),
      };
      const name = `${component}-${version.replace(/\./g, "-")}`;
      const file = join(work, `${component}-${version}.json`);
      writeFileSync(file, JSON.stringify({ apiVersion: "accessfabric.io/v1alpha1", kind: "Release", metadata: { name }, spec: { cluster: o.cluster, component, version, envelope: signRelease(m, [key]) } }));
      return { name, file, artifact, sha256, length: bytes.length, bytes };
    },
    async push(r) {
      const out = await fabricctl(["release", "push", r.file, r.artifact, "--kubeconfig", kubeconfig], { timeoutMs: 120_000 });
      assert.equal(out.code, 0, out.stderr);
      return out;
    },
    async verified(r, timeoutMs = 60_000) {
      await eventually(async () => (await kubectl(kubeconfig, ["get", "release", r.name, "-o", "jsonpath={.status.verified}"])).stdout === "true", timeoutMs, 500);
    },
    async stop() {
      await procs.stopAll();
      killAllWith(marker);
      await cp.stop();
      removeDirs();
    },
  };
  try {
    for (const c of [o.cluster, ...(o.otherClusters ?? [])]) await applyCluster(kubeconfig, c, "TokenAutoApprove");
    const trust = { keys: [{ keyId: key.keyId, publicKey: spkiBase64(key.publicKey) }], threshold: 1 };
    const p = await kubectl(kubeconfig, ["patch", "fabriccluster", o.cluster, "--type", "merge", "-p", JSON.stringify({ spec: { releaseTrust: trust } })]);
    assert.equal(p.code, 0, p.stderr);
  } catch (err) {
    await fixture.stop();
    throw err;
  }
  return fixture;
}
