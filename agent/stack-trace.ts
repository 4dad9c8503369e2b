/**
 * Stack traces of the precompiled agent (dist/fabric-agent.mjs) name the
 * TypeScript sources, without Node's --enable-source-maps: that flag parses
 * the map at start-up and keeps it for the life of the process (about 3 MB
 * of resident memory measured at idle, see docs/decisions.md). Here the map
 * file beside the bundle is read only when a stack is first formatted (a
 * crash, an error printed with its stack), then frames of the bundle are
 * rewritten to their source positions.
 *
 * Imported for its side effect, first, by bin/fabric-agent.ts. It does
 * nothing when the agent runs from source (tsx maps those stacks) or when
 * Node's own source-map support is on.
 */
import { readFileSync } from "node:fs";
import { SourceMap, type SourceMapPayload } from "node:module";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** Rewrites every `<bundleUrl>:LINE:COL` position in a formatted stack to its source position. */
export function mapStack(stack: string, bundleUrl: string, map: SourceMap, mapDir: string): string {
  const escaped = bundleUrl.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return stack.replace(new RegExp(`${escaped}:(\\d+):(\\d+)`, "g"), (whole, line: string, col: string) => {
    const e = map.findEntry(Number(line) - 1, Number(col) - 1) as Partial<{ originalSource: string; originalLine: number; originalColumn: number }>;
    if (e.originalSource === undefined || e.originalLine === undefined || e.originalColumn === undefined) return whole;
    const source = e.originalSource.startsWith("file://") ? fileURLToPath(e.originalSource) : resolve(mapDir, e.originalSource);
    return `${source}:${e.originalLine + 1}:${e.originalColumn + 1}`;
  });
}

function install(bundleUrl: string): void {
  const bundle = fileURLToPath(bundleUrl);
  const mapDir = dirname(bundle);
  let map: SourceMap | null | undefined; // undefined: not read yet; null: unusable
  const loadMap = (): SourceMap | null => {
    if (map === undefined) {
      try {
        map = new SourceMap(JSON.parse(readFileSync(`${bundle}.map`, "utf8")) as SourceMapPayload);
      } catch {
        map = null;
      }
    }
    return map;
  };
  // Node 20.20 and later define a default Error.prepareStackTrace; older ones leave it undefined.
  const previous = Error.prepareStackTrace;
  Error.prepareStackTrace = (err: Error, frames: NodeJS.CallSite[]): string => {
    let text: string;
    if (previous !== undefined) text = String(previous(err, frames));
    else {
      let head: string;
      try {
        head = String(err);
      } catch {
        head = "<error>";
      }
      text = head + frames.map((f) => `\n    at ${String(f)}`).join("");
    }
    if (!frames.some((f) => f.getFileName() === bundleUrl)) return text;
    const sm = loadMap();
    return sm === null ? text : mapStack(text, bundleUrl, sm, mapDir);
  };
}

const self = import.meta.url;
const nodeMaps = (process as { sourceMapsEnabled?: boolean }).sourceMapsEnabled === true;
if (self.endsWith(".mjs") && !nodeMaps) install(self);
