/**
 * fabricctl: the operator's command line (cli/main.ts has the command tree,
 * docs/fabricctl.md every command). bin/fabricctl runs it from the esbuild
 * bundle dist/fabricctl/fabricctl.mjs (hack/build-fabricctl.mjs).
 */
import { main } from "../cli/main.js";

main(process.argv.slice(2)).then(
  // Exit once stdout has drained: a large `-o json` into a pipe is never cut short.
  (code) => process.stdout.write("", () => process.exit(code)),
  (err: unknown) => {
    process.stderr.write(`fabricctl: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
