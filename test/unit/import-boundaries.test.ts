import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { BOUNDARY_RULES, checkImportBoundaries, formatViolations, importsOf, type BoundaryViolation } from "../../hack/import-boundaries.js";

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** A tree of small .ts files in a fresh temporary directory; removed by {@link removeTree}. */
function fixtureTree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), "import-boundaries-"));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

function removeTree(root: string): void {
  rmSync(root, { recursive: true, force: true });
}

/** The violations of a fixture tree as `file -> target [rule]` lines. */
function violationsOf(files: Record<string, string>): string[] {
  const root = fixtureTree(files);
  try {
    return checkImportBoundaries(root).map((v) => `${v.file} -> ${v.target} [${v.rule}]`);
  } finally {
    removeTree(root);
  }
}

describe("import boundaries", () => {
  it("the repository has no import that crosses a boundary", () => {
    const violations = checkImportBoundaries(repoRoot);
    assert.equal(violations.length, 0, `${violations.length} import-boundary violation(s) (rules: hack/import-boundaries.ts, docs/architecture.md "Import boundaries"):\n${formatViolations(violations)}`);
  });

  const cases: Array<{ name: string; files: Record<string, string>; violations: string[] }> = [
    {
      name: "a controller importing the API server is refused",
      files: { "controllers/fabriccluster/reconciler.ts": `import { x } from "../../apiserver/selectors.js";\n`, "apiserver/selectors.ts": "" },
      violations: ["controllers/fabriccluster/reconciler.ts -> apiserver/selectors.ts [controllers-no-apiserver]"],
    },
    {
      name: "a controller importing the agent API is refused, type-only imports included",
      files: { "controllers/flags.ts": `import type { RateLimit } from "../agentapi/rate-limit.js";\n`, "agentapi/rate-limit.ts": "" },
      violations: ["controllers/flags.ts -> agentapi/rate-limit.ts [controllers-no-agentapi]"],
    },
    {
      name: "the API server importing the controllers or the agent API is refused",
      files: {
        "apiserver/start.ts": `import { startControllers } from "../controllers/main.js";\nexport { startAgentApi } from "../agentapi/server.js";\n`,
        "controllers/main.ts": "",
        "agentapi/server.ts": "",
      },
      violations: ["apiserver/start.ts -> controllers/main.ts [apiserver-no-reconcile-logic]", "apiserver/start.ts -> agentapi/server.ts [apiserver-no-reconcile-logic]"],
    },
    {
      name: "the agent reaching the control plane other than over the wire is refused, dynamic imports included",
      files: {
        "agent/sync/loop.ts": `const m = await import("../../agentapi/snapshot-feed.js");\nimport { FABRIC_NAMESPACE } from "../../lib/kube/namespace.js";\n`,
        "agentapi/snapshot-feed.ts": "",
        "lib/kube/namespace.ts": "",
      },
      violations: ["agent/sync/loop.ts -> agentapi/snapshot-feed.ts [agent-only-wire-protocol]"],
    },
    {
      name: "fabricctl's code importing a side is refused, and importing lib/ is not",
      files: {
        "cli/status/collect.ts": `import { x } from "../../controllers/fabricnode/plan.js";\nimport { y } from "../../lib/kube/namespace.js";\nconst z = await import("../../agentapi/discovery.js");\n`,
        "controllers/fabricnode/plan.ts": "",
        "agentapi/discovery.ts": "",
        "lib/kube/namespace.ts": "",
      },
      violations: ["cli/status/collect.ts -> controllers/fabricnode/plan.ts [cli-is-a-client]", "cli/status/collect.ts -> agentapi/discovery.ts [cli-is-a-client]"],
    },
    {
      name: "lib re-exporting from a side is refused",
      files: { "lib/snapshot/contributors.ts": `export * from "../../controllers/roleassignment/snapshot.js";\n`, "controllers/roleassignment/snapshot.ts": "" },
      violations: ["lib/snapshot/contributors.ts -> controllers/roleassignment/snapshot.ts [lib-depends-on-no-side]"],
    },
    {
      name: "the controller runtime importing a kind is refused, and importing itself is not",
      files: {
        "controllers/runtime/controller.ts": `import "./workqueue.js";\nimport { JoinTokenReconciler } from "../jointoken/reconciler.js";\nimport { objects } from "../objects.js";\n`,
        "controllers/runtime/workqueue.ts": "",
        "controllers/jointoken/reconciler.ts": "",
        "controllers/objects.ts": "",
      },
      violations: ["controllers/runtime/controller.ts -> controllers/jointoken/reconciler.ts [runtime-knows-no-kind]", "controllers/runtime/controller.ts -> controllers/objects.ts [runtime-knows-no-kind]"],
    },
    {
      name: "a kind folder importing another kind is refused; its own folder, the runtime, shared files and lib are allowed",
      files: {
        "controllers/serviceworkload/reconciler.ts": [
          `import { plan } from "./plan.js";`,
          `import { ownedField } from "../roleassignment/owned-field.js";`,
          `import { Controller } from "../runtime/index.js";`,
          `import type { Objects } from "../objects.js";`,
          `import { matchesLabels } from "../../lib/kube/selectors.js";`,
          "",
        ].join("\n"),
        "controllers/serviceworkload/plan.ts": "",
        "controllers/roleassignment/owned-field.ts": "",
        "controllers/runtime/index.ts": "",
        "controllers/objects.ts": "",
        "lib/kube/selectors.ts": "",
      },
      violations: ["controllers/serviceworkload/reconciler.ts -> controllers/roleassignment/owned-field.ts [kinds-independent]"],
    },
    {
      name: "shared controller files importing a kind are refused, except the wiring entry controllers/main.ts",
      files: {
        "controllers/orphans.ts": `import { tokenSecretName } from "./jointoken/reconciler.js";\nimport { realClock } from "./runtime/index.js";\n`,
        "controllers/main.ts": `import { setupJoinToken } from "./jointoken/wire.js";\n`,
        "controllers/jointoken/reconciler.ts": "",
        "controllers/jointoken/wire.ts": "",
        "controllers/runtime/index.ts": "",
      },
      violations: ["controllers/orphans.ts -> controllers/jointoken/reconciler.ts [shared-controller-code-no-kind]"],
    },
    {
      name: "the agent API importing the controllers or the API server is refused",
      files: {
        "agentapi/discovery.ts": `import { FABRIC_NAMESPACE } from "../controllers/jointoken/reconciler.js";\nimport { prune } from "../apiserver/prune.js";\n`,
        "controllers/jointoken/reconciler.ts": "",
        "apiserver/prune.ts": "",
      },
      violations: ["agentapi/discovery.ts -> controllers/jointoken/reconciler.ts [agentapi-no-controllers-apiserver]", "agentapi/discovery.ts -> apiserver/prune.ts [agentapi-no-controllers-apiserver]"],
    },
    {
      name: "only bin/ and test/ start the composition root",
      files: {
        "bin/fabric-controlplane.ts": `import { runControlPlane } from "../controlplane/controlplane.js";\n`,
        "test/support/controlplane.ts": `import { runControlPlane } from "../../controlplane/controlplane.js";\n`,
        "controlplane/controlplane.ts": `import { startMetricsServer } from "./metrics-server.js";\n`,
        "controlplane/metrics-server.ts": "",
        "hack/bench.ts": `import { runControlPlane } from "../controlplane/controlplane.js";\n`,
      },
      violations: ["hack/bench.ts -> controlplane/controlplane.ts [composition-root-only-from-bin]"],
    },
    {
      name: "specifiers in comments and strings are not imports, nor are packages",
      files: {
        "lib/log.ts": `// import { x } from "../apiserver/server.js";\n/* export * from "../controllers/main.js"; */\nconst hint = 'import("../agent/main.js")';\nimport pg from "pg";\nimport { join } from "node:path";\n`,
      },
      violations: [],
    },
  ];

  for (const c of cases) {
    it(c.name, () => {
      assert.deepEqual(violationsOf(c.files), c.violations);
    });
  }

  it("the fixtures break every rule of the table at least once", () => {
    const broken = new Set(cases.flatMap((c) => c.violations.map((v) => /\[([^\]]+)\]$/.exec(v)?.[1])));
    assert.deepEqual(BOUNDARY_RULES.map((r) => r.name).filter((name) => !broken.has(name)), []);
  });

  it("every rule carries a reason", () => {
    for (const rule of BOUNDARY_RULES) assert.ok(rule.reason.length > 20, `rule ${rule.name} has no reason`);
  });

  it("a violation names the file, line, import, rule and reason", () => {
    const root = fixtureTree({ "controllers/nodegroup/plan.ts": `\n\nimport { validate } from "../../apiserver/validation.js";\n`, "apiserver/validation.ts": "" });
    let violations: BoundaryViolation[];
    try {
      violations = checkImportBoundaries(root);
    } finally {
      removeTree(root);
    }
    assert.equal(violations.length, 1);
    const rule = BOUNDARY_RULES.find((r) => r.name === "controllers-no-apiserver");
    assert.ok(rule !== undefined);
    assert.equal(
      formatViolations(violations),
      `controllers/nodegroup/plan.ts:3 imports "../../apiserver/validation.js" (apiserver/validation.ts) [controllers-no-apiserver]: ${rule.reason}`,
    );
  });

  it("reads static, type-only, re-exported and dynamic imports with their lines", () => {
    const text = [
      `import a from "./a.js";`,
      `import type { B } from "../b.js";`,
      `export { c } from "./c/index.js";`,
      `const d = await import("../../d.js");`,
      `type E = typeof import("./e.js");`,
      `import "koa";`,
      "",
    ].join("\n");
    assert.deepEqual(
      importsOf("lib/x/y.ts", text).map((e) => `${e.line} ${e.target}`),
      ["1 lib/x/a.js", "2 lib/b.js", "3 lib/x/c/index.js", "4 d.js", "5 lib/x/e.js"],
    );
  });
});
