/**
 * The alert rules pass `promtool check rules`. promtool comes from Debian's
 * prometheus package, fetched by hack/promtool.sh (or PROMTOOL); when it
 * cannot be obtained the test fails with the script's reason: never
 * skipped.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "../support/controlplane.js";

describe("alert rules", function () {
  this.timeout(300_000);
  let promtool: string;
  before(() => {
    const r = spawnSync("bash", [join(repoRoot, "hack", "promtool.sh")], { encoding: "utf8" });
    assert.equal(r.status, 0, `could not obtain promtool (hack/promtool.sh failed; set PROMTOOL to a promtool binary):\n${r.stderr}`);
    promtool = r.stdout.trim();
  });

  it("pass promtool check rules", () => {
    const dir = join(repoRoot, "manifests", "alerts");
    const files = readdirSync(dir).filter((f) => f.endsWith(".yaml")).map((f) => join(dir, f));
    assert.ok(files.length > 0, "no rule files in manifests/alerts");
    const r = spawnSync(promtool, ["check", "rules", ...files], { encoding: "utf8" });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /SUCCESS: \d+ rules found/);
  });

  it("fire as intended on synthetic series (promtool test rules)", () => {
    const out = execFileSync(promtool, ["test", "rules", join(repoRoot, "manifests", "alerts", "tests", "fabric-alerts.test.yml")], { encoding: "utf8" });
    assert.match(out, /SUCCESS/);
  });
});
