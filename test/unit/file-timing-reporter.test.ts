/** The slowest-files table of test/support/file-timing-reporter.ts. */
import assert from "node:assert/strict";
import { formatSlowest, slowestFiles } from "../support/file-timing-reporter.js";

describe("test support: slowest test files", () => {
  it("keeps the N slowest, slowest first", () => {
    const totals = new Map([
      ["/r/test/a.test.ts", 1200],
      ["/r/test/b.test.ts", 90_500],
      ["/r/test/c.test.ts", 15_040],
    ]);
    assert.deepEqual(slowestFiles(totals, 2), [
      ["/r/test/b.test.ts", 90_500],
      ["/r/test/c.test.ts", 15_040],
    ]);
    assert.equal(slowestFiles(totals, 10).length, 3);
  });

  it("prints seconds and paths relative to the repository", () => {
    const text = formatSlowest([["/r/test/b.test.ts", 90_500], ["/elsewhere/x.test.ts", 40]], "/r");
    assert.equal(text, ["Slowest 2 test files (wall time, hooks included):", "     90.5 s  test/b.test.ts", "      0.0 s  /elsewhere/x.test.ts"].join("\n"));
  });
});
