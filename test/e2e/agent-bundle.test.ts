/**
 * bin/fabric-agent runs the precompiled bundle (hack/build-agent.mjs): on a
 * copy of the agent's sources with no dist/, the first run builds it; a
 * source newer than the bundle makes the next run rebuild it; stacks of the
 * bundle name the TypeScript sources (agent/stack-trace.ts); and when the
 * bundle cannot be built the agent still runs, from source through tsx.
 * Real processes, on a temporary copy so the repository's dist/ is untouched.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { repoRoot, tempStateDir } from "../support/controlplane.js";

const exec = promisify(execFile);

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function agent(root: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Result> {
  try {
    const r = await exec(join(root, "bin", "fabric-agent"), args, { encoding: "utf8", env: { ...process.env, FABRIC_LOG_LEVEL: "info", ...env } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

/** The fatal log line's stack of `fabric-agent run` on a state dir without identities. */
function fatalStack(r: Result): string {
  const line = r.stdout.split("\n").concat(r.stderr.split("\n")).find((l) => l.includes('"fabric-agent failed"'));
  assert.ok(line, `no fatal line in ${r.stdout}${r.stderr}`);
  const stack = (JSON.parse(line) as { stack?: string }).stack;
  assert.ok(stack !== undefined, line);
  return stack;
}

describe("e2e: precompiled agent (bin/fabric-agent, dist/fabric-agent.mjs)", function () {
  this.timeout(120_000);
  const root = tempStateDir("fabric-agent-tree-");
  const stateDir = tempStateDir("fabric-agent-state-");
  const bundle = join(root, "dist", "fabric-agent.mjs");

  before(() => {
    for (const p of ["bin", "agent", "lib", "package.json", "tsconfig.json"]) cpSync(join(repoRoot, p), join(root, p), { recursive: true });
    mkdirSync(join(root, "hack"));
    cpSync(join(repoRoot, "hack", "build-agent.mjs"), join(root, "hack", "build-agent.mjs"));
    cpSync(join(repoRoot, "hack", "lib", "bundle.mjs"), join(root, "hack", "lib", "bundle.mjs"));
    symlinkSync(join(repoRoot, "node_modules"), join(root, "node_modules"));
  });
  after(() => {
    rmSync(root, { recursive: true, force: true });
    rmSync(stateDir, { recursive: true, force: true });
  });

  it("builds the bundle on first use, runs it, and maps its stacks to the TypeScript sources", async () => {
    assert.equal(existsSync(bundle), false);
    const status = await agent(root, ["status", "--json", "--state-dir", stateDir]);
    assert.equal(status.code, 0, status.stderr);
    assert.deepEqual(JSON.parse(status.stdout), []);
    assert.ok(existsSync(bundle) && existsSync(`${bundle}.map`));
    const inputs = readFileSync(join(root, "dist", "fabric-agent.inputs"), "utf8").split("\n");
    assert.ok(inputs.includes("bin/fabric-agent.ts") && inputs.includes("agent/sync/runner.ts"), inputs.join(","));

    const run = await agent(root, ["run", "--state-dir", stateDir]);
    assert.equal(run.code, 1);
    const stack = fatalStack(run);
    assert.match(stack, /no identities/);
    assert.match(stack, new RegExp(`at run \\(${join(root, "bin", "fabric-agent.ts").replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:\\d+:\\d+\\)`), stack);
    assert.doesNotMatch(stack, /fabric-agent\.mjs/, stack);
  });

  it("rebuilds the bundle when a source is newer, and not otherwise", async () => {
    const before = statSync(bundle).mtimeMs;
    assert.equal((await agent(root, ["status", "--state-dir", stateDir])).code, 0);
    assert.equal(statSync(bundle).mtimeMs, before, "rebuilt although nothing changed");
    const later = new Date(Date.now() + 5_000);
    utimesSync(join(root, "agent", "sync", "backoff.ts"), later, later);
    assert.equal((await agent(root, ["status", "--state-dir", stateDir])).code, 0);
    assert.ok(statSync(bundle).mtimeMs > before, "not rebuilt after a source changed");
  });

  it("runs from source through tsx when the bundle cannot be built", async () => {
    rmSync(join(root, "dist"), { recursive: true, force: true });
    rmSync(join(root, "hack", "build-agent.mjs"));
    const run = await agent(root, ["run", "--state-dir", stateDir]);
    assert.match(run.stderr, /could not build .*running from source through tsx/);
    assert.equal(run.code, 1);
    assert.match(fatalStack(run), /at run \(.*bin\/fabric-agent\.ts:\d+:\d+\)/);
    assert.equal(existsSync(bundle), false);
    const forced = await agent(root, ["status", "--json", "--state-dir", stateDir], { FABRIC_AGENT_FROM_SOURCE: "1" });
    assert.equal(forced.code, 0, forced.stderr);
    assert.deepEqual(JSON.parse(forced.stdout), []);
  });
});
