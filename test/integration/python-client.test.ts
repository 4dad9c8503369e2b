/**
 * A real third-party client: the official Kubernetes Python client (Debian's
 * python3-kubernetes) lists, creates, merge-patches, gets and deletes a
 * NodeGroup through CustomObjectsApi while kubernetes.watch.Watch().stream
 * follows it. The stream sends `watch=True`, as that client always does, and
 * must see ADDED, MODIFIED and DELETED.
 *
 * hack/test.sh installs the client (hack/python-kubernetes.sh) and exports
 * FABRIC_PYTHON; without it the test fails saying how to install it: a
 * missing client never skips the test.
 */
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { repoRoot, sharedControlPlane } from "../support/controlplane.js";

/** The python3 that can import the client: $FABRIC_PYTHON (set by hack/test.sh), else Debian's. */
const python = process.env.FABRIC_PYTHON || "/usr/bin/python3";
const script = join(repoRoot, "test", "support", "python", "custom_object_watch.py");

interface Line {
  step: string;
  [key: string]: unknown;
}

function requireClient(): void {
  try {
    execFileSync(python, ["-c", "import kubernetes, kubernetes.watch"], { stdio: ["ignore", "ignore", "pipe"], timeout: 30_000 });
  } catch (cause) {
    throw new Error(
      `${python} cannot import the Kubernetes Python client: run 'bash hack/python-kubernetes.sh' (installs Debian's python3-kubernetes, as hack/test.sh does) or set FABRIC_PYTHON to a python3 that has it`,
      { cause },
    );
  }
}

function runScript(kubeconfig: string, run: string): Promise<{ code: number; lines: Line[]; stderr: string }> {
  return new Promise((resolve) => {
    execFile(python, [script, kubeconfig, run], { timeout: 90_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === "number" ? (err as { code: number }).code : 1) : 0;
      const lines = stdout
        .split("\n")
        .filter((l) => l.trim() !== "")
        .map((l): Line => {
          try {
            return JSON.parse(l) as Line;
          } catch {
            return { step: "unparsed", text: l };
          }
        });
      resolve({ code, lines, stderr });
    });
  });
}

describe("API server: the official Kubernetes Python client", function () {
  this.timeout(120_000);

  it("lists, creates, merge-patches and deletes a NodeGroup while its watch (watch=True) sees ADDED, MODIFIED and DELETED", async () => {
    requireClient();
    const { kubeconfig } = await sharedControlPlane();
    const run = randomUUID().slice(0, 8);
    const { code, lines, stderr } = await runScript(kubeconfig, run);
    const out = `python output:\n${lines.map((l) => JSON.stringify(l)).join("\n")}\nstderr:\n${stderr.slice(-3000)}`;
    const step = (name: string) => lines.find((l) => l.step === name);

    assert.equal(step("error"), undefined, out);
    assert.equal(step("watch-error"), undefined, out);
    assert.equal(step("list")?.count, 0, out);
    assert.equal(step("create")?.name, `py-${run}`, out);
    assert.equal(step("patch")?.description, "patched by python", out);
    assert.equal(step("get")?.description, "patched by python", out);
    assert.equal(step("watch-timeout"), undefined, out);
    assert.equal(step("watch-ended"), undefined, `the watch ended before DELETED (was watch=True read as a watch?)\n${out}`);
    const events = lines.filter((l) => l.step === "event").map((l) => ({ type: l.type, name: l.name, description: l.description }));
    assert.deepEqual(
      events,
      [
        { type: "ADDED", name: `py-${run}`, description: null },
        { type: "MODIFIED", name: `py-${run}`, description: "patched by python" },
        { type: "DELETED", name: `py-${run}`, description: "patched by python" },
      ],
      out,
    );
    assert.equal(code, 0, out);
  });
});
