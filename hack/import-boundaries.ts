/**
 * The import-boundary check: which top-level folders may import which.
 *
 * Every part of the system has a side it lives on: the API server
 * (apiserver/), the controllers (controllers/, which also run against a real
 * Kubernetes cluster where apiserver/ does not exist), the agent API
 * (agentapi/), the host agent (agent/), the operator's CLI (cli/), the code every side shares (lib/) and
 * the composition root that starts them in one process (controlplane/). The
 * rules below keep the sides apart; `test/unit/import-boundaries.test.ts`
 * runs {@link checkImportBoundaries} on the tree under `make test`, and
 * `npx tsx hack/import-boundaries.ts` prints the violations.
 *
 * Imports are read with TypeScript's own pre-processor (static imports,
 * `import type`, `export ... from`, dynamic `import("...")`, `require`), so
 * specifiers inside comments or strings are not mistaken for imports. Only
 * relative specifiers can cross a boundary; packages and `node:` modules are
 * not checked.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, posix, relative, resolve, sep } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import ts from "typescript";

/**
 * One boundary: an import from a file matching `from` (and none of
 * `fromExcept`) of a file matching `to` (and none of `toExcept`) is a
 * violation. Patterns are repository-relative paths where `*` matches within
 * one path segment, `**` matches anything (slashes included) and `{kind}`
 * matches one segment and stands for the same text in the `to` patterns.
 */
export interface BoundaryRule {
  /** Short name printed with each violation. */
  name: string;
  from: readonly string[];
  fromExcept?: readonly string[];
  to: readonly string[];
  toExcept?: readonly string[];
  /** Why the boundary exists, printed with each violation. */
  reason: string;
}

/** The boundaries of this repository (docs/architecture.md, "Import boundaries"). */
export const BOUNDARY_RULES: readonly BoundaryRule[] = [
  {
    name: "controllers-no-apiserver",
    from: ["controllers/**"],
    to: ["apiserver/**"],
    reason: "controllers also run against a real Kubernetes cluster, where apiserver/ does not exist; they speak only the Kubernetes API",
  },
  {
    name: "controllers-no-agentapi",
    from: ["controllers/**"],
    to: ["agentapi/**"],
    reason: "controllers meet the agent API only through the state layer (lib/state) and the Kubernetes API; the two are composed in controlplane/",
  },
  {
    name: "apiserver-no-reconcile-logic",
    from: ["apiserver/**"],
    to: ["controllers/**", "agentapi/**"],
    reason: "the API server stores and serves objects and knows no reconcile logic nor the agent API; they are composed in controlplane/",
  },
  {
    name: "agent-only-wire-protocol",
    from: ["agent/**"],
    to: ["controllers/**", "apiserver/**", "agentapi/**", "controlplane/**"],
    reason: "the host agent meets the control plane only over the agent API wire protocol, whose types live in lib/",
  },
  {
    name: "cli-is-a-client",
    from: ["cli/**"],
    to: ["controllers/**", "apiserver/**", "agentapi/**", "agent/**", "controlplane/**"],
    reason: "fabricctl is a client: it meets the control plane only through the kube API and the database, with the shared code in lib/",
  },
  {
    name: "lib-depends-on-no-side",
    from: ["lib/**"],
    to: ["apiserver/**", "controllers/**", "agentapi/**", "agent/**", "controlplane/**", "bin/**", "cli/**"],
    reason: "lib/ is what every side shares, so it depends on none of them; code two sides need moves into lib/",
  },
  {
    name: "runtime-knows-no-kind",
    from: ["controllers/runtime/**"],
    to: ["controllers/**"],
    toExcept: ["controllers/runtime/**"],
    reason: "the controller runtime (workqueue, informers, leader election) is generic and knows no kind",
  },
  {
    name: "kinds-independent",
    from: ["controllers/{kind}/**"],
    fromExcept: ["controllers/runtime/**"],
    to: ["controllers/*/**"],
    toExcept: ["controllers/runtime/**", "controllers/{kind}/**"],
    reason: "kind folders do not import each other; a kind reads another kind's facts through the API or the state layer, and shared helpers live in controllers/*.ts, controllers/runtime/ or lib/",
  },
  {
    name: "shared-controller-code-no-kind",
    from: ["controllers/*.ts"],
    fromExcept: ["controllers/main.ts"],
    to: ["controllers/*/**"],
    toExcept: ["controllers/runtime/**"],
    reason: "files directly in controllers/ are helpers shared by the kinds and import none of them; only the wiring entry controllers/main.ts lists the kind folders",
  },
  {
    name: "agentapi-no-controllers-apiserver",
    from: ["agentapi/**"],
    to: ["controllers/**", "apiserver/**"],
    reason: "the agent API talks to the Kubernetes API and the state layer; it is composed with the controllers and the API server only in controlplane/",
  },
  {
    name: "composition-root-only-from-bin",
    from: ["**"],
    fromExcept: ["bin/**", "test/**", "controlplane/**"],
    to: ["controlplane/**"],
    reason: "controlplane/ is the process's composition root: only the executables in bin/ (and tests) start it; no part starts its siblings",
  },
];

/** Top-level folders whose .ts files are checked. */
export const SOURCE_FOLDERS: readonly string[] = ["agent", "agentapi", "apiserver", "bin", "cli", "controllers", "controlplane", "hack", "lib", "test"];

/** One import that crosses a boundary. */
export interface BoundaryViolation {
  /** Importing file, repository-relative with forward slashes. */
  file: string;
  /** 1-based line of the import. */
  line: number;
  /** The specifier as written. */
  specifier: string;
  /** The imported file, repository-relative. */
  target: string;
  rule: string;
  reason: string;
}

/** One relative import of a file. */
export interface ImportEdge {
  line: number;
  specifier: string;
  /** Repository-relative target; the `.js` of a specifier naming a `.ts` source is mapped back to `.ts`. */
  target: string;
}

/** Relative imports of one TypeScript source (static, type-only, re-exports and dynamic). */
export function importsOf(file: string, text: string): ImportEdge[] {
  const info = ts.preProcessFile(text, true, true);
  const edges: ImportEdge[] = [];
  for (const imported of info.importedFiles) {
    const specifier = imported.fileName;
    if (!specifier.startsWith("./") && !specifier.startsWith("../")) continue;
    const line = text.slice(0, imported.pos).split("\n").length;
    edges.push({ line, specifier, target: posix.normalize(posix.join(posix.dirname(file), specifier)) });
  }
  return edges;
}

/** Compiles a pattern; `{kind}` becomes a named group unless `captures` gives its text. */
function patternToRegExp(pattern: string, captures?: Record<string, string>): RegExp {
  let source = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (pattern.startsWith("**", i)) {
      source += ".*";
      i++;
    } else if (c === "*") {
      source += "[^/]*";
    } else if (c === "{") {
      const end = pattern.indexOf("}", i);
      if (end < 0) throw new Error(`unclosed { in boundary pattern ${pattern}`);
      const name = pattern.slice(i + 1, end);
      const known = captures?.[name];
      source += known !== undefined ? escapeRegExp(known) : `(?<${name}>[^/]+)`;
      i = end;
    } else {
      source += escapeRegExp(c);
    }
  }
  return new RegExp(`^${source}$`);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Captures of the first pattern that matches `path`, or undefined when none does. */
function matchAny(patterns: readonly string[], path: string, captures?: Record<string, string>): Record<string, string> | undefined {
  for (const p of patterns) {
    const m = patternToRegExp(p, captures).exec(path);
    if (m) return { ...captures, ...m.groups };
  }
  return undefined;
}

/** The rules `file` importing `target` breaks (none for an allowed import). */
export function brokenRules(file: string, target: string, rules: readonly BoundaryRule[] = BOUNDARY_RULES): BoundaryRule[] {
  const broken: BoundaryRule[] = [];
  for (const rule of rules) {
    const captures = matchAny(rule.from, file);
    if (captures === undefined) continue;
    if (rule.fromExcept !== undefined && matchAny(rule.fromExcept, file) !== undefined) continue;
    if (matchAny(rule.to, target, captures) === undefined) continue;
    if (rule.toExcept !== undefined && matchAny(rule.toExcept, target, captures) !== undefined) continue;
    broken.push(rule);
  }
  return broken;
}

/** Every .ts file under the source folders of `root`, repository-relative with forward slashes, sorted. */
export function sourceFiles(root: string, folders: readonly string[] = SOURCE_FOLDERS): string[] {
  const files: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.name === "node_modules" || entry.name.startsWith(".")) continue;
      const full = join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile() && entry.name.endsWith(".ts")) files.push(relative(root, full).split(sep).join("/"));
    }
  };
  for (const folder of folders) {
    const dir = join(root, folder);
    if (existsSync(dir)) walk(dir);
  }
  return files.sort();
}

/** Checks every source file under `root` against `rules`; returns the violations in file order. */
export function checkImportBoundaries(root: string, rules: readonly BoundaryRule[] = BOUNDARY_RULES): BoundaryViolation[] {
  const violations: BoundaryViolation[] = [];
  for (const file of sourceFiles(root)) {
    const text = readFileSync(join(root, file), "utf8");
    for (const edge of importsOf(file, text)) {
      const target = edge.target.endsWith(".js") && existsSync(join(root, edge.target.replace(/\.js$/, ".ts"))) ? edge.target.replace(/\.js$/, ".ts") : edge.target;
      for (const rule of brokenRules(file, target, rules)) {
        violations.push({ file, line: edge.line, specifier: edge.specifier, target, rule: rule.name, reason: rule.reason });
      }
    }
  }
  return violations;
}

/** One line per violation: `file:line imports "specifier" (target) [rule]: reason`. */
export function formatViolations(violations: readonly BoundaryViolation[]): string {
  return violations.map((v) => `${v.file}:${v.line} imports "${v.specifier}" (${v.target}) [${v.rule}]: ${v.reason}`).join("\n");
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const root = resolve(fileURLToPath(new URL("..", import.meta.url)));
  const violations = checkImportBoundaries(root);
  if (violations.length > 0) {
    console.error(`${violations.length} import-boundary violation(s):\n${formatViolations(violations)}`);
    process.exit(1);
  }
  console.log("import boundaries: no violations");
}
