/**
 * Regenerates everything derived from `schemas/` (run by `npm run generate`):
 *
 * - crds/<plural>.accessfabric.io.yaml                    CustomResourceDefinitions
 * - apiserver/generated/openapi-v3/*.json + index.json    OpenAPI 3.0 per group-version
 * - apiserver/generated/openapi-v2.json                   Swagger 2.0 for everything
 * - lib/api/types.generated.ts                            TypeScript types
 * - docs/api-reference.md                                 API reference
 *
 * Output is deterministic: the same sources give the same bytes. Generated
 * files that are no longer produced (a removed kind) are deleted.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { loadCatalog, repositoryRoot, type SchemaCatalog } from "../lib/api/schemas.js";
import { generateCrds } from "./generate/crds.js";
import { generateDocs } from "./generate/docs.js";
import { generateOpenapi } from "./generate/openapi.js";
import { generateTypes } from "./generate/typescript.js";

/** Directories whose every file is generated (stale files there are removed). */
export const GENERATED_DIRS = ["crds", "apiserver/generated/openapi-v3"];

/** Every generated file, keyed by path relative to the repository root, in a stable order. */
export function generateAll(catalog: SchemaCatalog = loadCatalog()): Map<string, string> {
  const parts = [generateCrds(catalog.resources), generateOpenapi(catalog), generateTypes(catalog), generateDocs(catalog)];
  const out = new Map<string, string>();
  for (const part of parts) for (const [path, content] of part) out.set(path, content);
  return new Map([...out.entries()].sort(([a], [b]) => a.localeCompare(b)));
}

/** Writes the generated files under `root`, skipping unchanged ones; returns the paths written or removed. */
export function writeAll(root: string, files: Map<string, string>): string[] {
  const changed: string[] = [];
  for (const [path, content] of files) {
    const full = join(root, path);
    let current: string | undefined;
    try {
      current = readFileSync(full, "utf8");
    } catch {
      current = undefined;
    }
    if (current === content) continue;
    mkdirSync(dirname(full), { recursive: true });
    writeFileSync(full, content);
    changed.push(path);
  }
  for (const dir of GENERATED_DIRS) {
    let entries: string[];
    try {
      entries = readdirSync(join(root, dir));
    } catch {
      continue;
    }
    for (const name of entries) {
      const path = `${dir}/${name}`;
      if (!files.has(path) && !name.startsWith(".")) {
        rmSync(join(root, path), { force: true });
        changed.push(`${path} (removed)`);
      }
    }
  }
  return changed;
}

function main(): void {
  const root = repositoryRoot();
  const files = generateAll(loadCatalog(root));
  const changed = writeAll(root, files);
  process.stdout.write(`generated ${files.size} files, ${changed.length} changed${changed.length > 0 ? `:\n  ${changed.join("\n  ")}` : ""}\n`);
}

const invoked = process.argv[1];
if (invoked !== undefined && import.meta.url === pathToFileURL(resolve(invoked)).href) {
  try {
    main();
  } catch (err) {
    process.stderr.write(`generate: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    if (err instanceof Error && err.cause !== undefined) process.stderr.write(`cause: ${String(err.cause)}\n`);
    process.exitCode = 1;
  }
}
