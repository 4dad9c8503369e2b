// Mocha configuration. FABRIC_TEST_SPEC (comma-separated globs) narrows the
// run, e.g. `make test-e2e`; by default every unit, integration and e2e test runs.
const all = ["test/unit/**/*.test.ts", "test/integration/**/*.test.ts", "test/e2e/**/*.test.ts"];
module.exports = {
  "node-option": ["import=tsx"],
  spec: process.env.FABRIC_TEST_SPEC ? process.env.FABRIC_TEST_SPEC.split(",") : all,
  extension: ["ts"],
  timeout: 60000,
  exit: true,
  require: ["test/support/hooks.ts"],
};
