// Mocha configuration. By default every unit, integration and e2e test runs.
// Narrow a run by naming files (`npx mocha test/unit/x.test.ts`) or with
// FABRIC_TEST_SPEC (comma-separated globs, e.g. `make test-e2e`). Mocha adds
// a config `spec` to the files named on the command line, so the default
// list applies only when none are named.
const all = ["test/unit/**/*.test.ts", "test/integration/**/*.test.ts", "test/e2e/**/*.test.ts"];
const named = process.argv.slice(2).some((a) => /\.test\.ts$/.test(a));
const spec = process.env.FABRIC_TEST_SPEC ? process.env.FABRIC_TEST_SPEC.split(",") : named ? undefined : all;
module.exports = {
  "node-option": ["import=tsx"],
  ...(spec === undefined ? {} : { spec }),
  extension: ["ts"],
  timeout: 60000,
  exit: true,
  require: ["test/support/hooks.ts"],
  // The spec reporter plus, with FABRIC_SLOWEST_FILES=N, the N slowest files.
  reporter: "test/support/file-timing-reporter.ts",
};
