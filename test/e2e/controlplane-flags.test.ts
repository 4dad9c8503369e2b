/**
 * bin/fabric-controlplane's numeric flags take negative numbers in both
 * spellings `--help` documents (`--agent-port -1` and `--agent-port=-1`):
 * util.parseArgs alone refuses the first as "ambiguous". Spawns the real
 * binary; one run starts and stops a control plane with the agent API off.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { repoRoot, spawnControlPlane, tempStateDir } from "../support/controlplane.js";

const bin = join(repoRoot, "bin", "fabric-controlplane");

function run(args: string[]): { code: number | null; out: string } {
  const r = spawnSync(bin, args, { encoding: "utf8", env: { ...process.env, FABRIC_LOG_LEVEL: "info" }, timeout: 60_000 });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

describe("fabric-controlplane: negative numbers as flag values", function () {
  this.timeout(120_000);

  for (const args of [["--agent-port", "-1", "--help"], ["--agent-port=-1", "--help"], ["--help", "--agent-port", "-1"]]) {
    it(`accepts ${args.join(" ")}`, () => {
      const r = run(args);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /^usage: fabric-controlplane/);
      assert.doesNotMatch(r.out, /ambiguous/);
    });
  }

  it("reads the number that follows: out-of-range negatives are refused by value, not as ambiguous", () => {
    for (const [flag, value] of [["--agent-port", "-2"], ["--port", "-5"], ["--metrics-port", "-1"]] as const) {
      const r = run(["--state-dir", "/nonexistent-never-created", flag, value]);
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, new RegExp(`invalid ${flag}: ${value}`));
      assert.doesNotMatch(r.out, /ambiguous/);
    }
  });

  it("still refuses a flag followed by another flag instead of a value", () => {
    const r = run(["--agent-port", "--help"]);
    assert.notEqual(r.code, 0, r.out);
  });

  it("starts with --agent-port -1 (the agent API off) and stops cleanly", async () => {
    const dir = tempStateDir();
    try {
      const cp = await spawnControlPlane(dir, ["--agent-port", "-1", "--controllers", "false"]);
      const ready = cp.output().split("\n").find((l) => l.includes('"control plane ready"')) ?? "";
      assert.doesNotMatch(ready, /"agentApi"/, ready);
      assert.equal(await cp.stop(), 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
