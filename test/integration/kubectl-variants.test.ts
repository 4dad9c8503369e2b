/**
 * Which kubectl binaries the kubectl tests run against, decided by asking the
 * real binaries for their versions. A machine with one kubectl version runs
 * the kubectl tests once with it; two versions give two passes.
 */
import assert from "node:assert/strict";
import { kubectlBin, kubectlLegacyBin, kubectlVariant, kubectlVariants } from "../support/controlplane.js";

describe("kubectl variants of the kubectl tests", function () {
  this.timeout(60_000);

  it("runs once when KUBECTL_LEGACY reports the same minor version as kubectl (a machine with only one kubectl)", () => {
    const variants = kubectlVariants([kubectlBin, kubectlBin]);
    assert.equal(variants.length, 1);
    assert.equal(variants[0]?.bin, kubectlBin);
  });

  it("runs once per minor version when KUBECTL_LEGACY is another version", function () {
    if (kubectlLegacyBin === undefined) this.skip();
    const legacy = kubectlVariant(kubectlLegacyBin);
    const current = kubectlVariant(kubectlBin);
    if (legacy.minor === current.minor) this.skip();
    const variants = kubectlVariants([kubectlBin, kubectlLegacyBin]);
    assert.deepEqual(variants.map((v) => v.minor), [current.minor, legacy.minor]);
  });

  it("fails when a named binary cannot run, instead of dropping a pass", () => {
    assert.throws(() => kubectlVariants([kubectlBin, "/nonexistent/kubectl"]), /running \/nonexistent\/kubectl version --client/);
  });
});
