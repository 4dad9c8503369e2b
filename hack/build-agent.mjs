#!/usr/bin/env node
/**
 * Builds the precompiled agent: bin/fabric-agent.ts and everything it imports
 * (agent/**, the lib/ modules it uses) bundled by
 * esbuild (hack/lib/bundle.mjs) into one ES module, dist/fabric-agent.mjs,
 * with its source map beside it (dist/fabric-agent.mjs.map) and the list of
 * its inputs (dist/fabric-agent.inputs) that bin/fabric-agent compares with
 * the bundle to decide it is stale.
 *
 *   node hack/build-agent.mjs          (also run by hack/install.sh, `make build`)
 *
 * Plain JavaScript on purpose: bin/fabric-agent runs it to rebuild a stale
 * bundle, so it must start fast and need nothing but esbuild.
 * Each file is written to a temporary name and renamed: agents starting while
 * another one rebuilds see either the old or the new bundle, never half of one.
 */
import { mkdirSync, readFileSync, renameSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { bundle, root } from "./lib/bundle.mjs";

const dist = join(root, "dist");
const out = join(dist, "fabric-agent.mjs");
mkdirSync(dist, { recursive: true });
const tmp = join(dist, `.fabric-agent.${process.pid}.mjs`);
const { started, inputs } = await bundle("hack/build-agent.mjs", "bin/fabric-agent.ts", { entryPoints: [join(root, "bin", "fabric-agent.ts")], outfile: tmp });
writeFileSync(`${tmp}.inputs`, inputs);
// The map names the temporary file: point it at the final one.
const map = JSON.parse(readFileSync(`${tmp}.map`, "utf8"));
map.file = "fabric-agent.mjs";
writeFileSync(`${tmp}.map`, JSON.stringify(map));
const code = readFileSync(tmp, "utf8").replace(/\/\/# sourceMappingURL=\S+\s*$/, "//# sourceMappingURL=fabric-agent.mjs.map\n");
writeFileSync(tmp, code);
utimesSync(tmp, started, started);
// Map first and bundle last: the bundle's mtime is what bin/fabric-agent compares.
renameSync(`${tmp}.map`, `${out}.map`);
renameSync(`${tmp}.inputs`, join(dist, "fabric-agent.inputs"));
renameSync(tmp, out);
