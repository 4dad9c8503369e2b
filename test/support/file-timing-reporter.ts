/**
 * Mocha reporter: the spec reporter's output, then (when FABRIC_SLOWEST_FILES
 * is a positive number) the slowest test files by wall time, hooks and
 * before-all set-up included. hack/test.sh sets it so every CI log shows
 * where the suite's time goes.
 *
 * A file's time is the sum of its top-level suites, from their begin to
 * their end event; root hooks in test/support/hooks.ts are not charged to
 * any file.
 */
import Mocha from "mocha";

const { EVENT_SUITE_BEGIN, EVENT_SUITE_END, EVENT_RUN_END } = Mocha.Runner.constants;

export function slowestFiles(totals: ReadonlyMap<string, number>, count: number): [string, number][] {
  return [...totals].sort((a, b) => b[1] - a[1]).slice(0, count);
}

export function formatSlowest(rows: [string, number][], cwd: string): string {
  const lines = rows.map(([file, ms]) => {
    const name = file.startsWith(cwd + "/") ? file.slice(cwd.length + 1) : file;
    return `  ${(ms / 1000).toFixed(1).padStart(7)} s  ${name}`;
  });
  return [`Slowest ${rows.length} test files (wall time, hooks included):`, ...lines].join("\n");
}

export default class FileTimingReporter extends Mocha.reporters.Spec {
  constructor(runner: Mocha.Runner, options?: Mocha.MochaOptions) {
    super(runner, options);
    const count = Number(process.env.FABRIC_SLOWEST_FILES ?? "0");
    const totals = new Map<string, number>();
    const started = new Map<Mocha.Suite, number>();
    const topLevel = (suite: Mocha.Suite) => suite.parent?.root === true && suite.file !== undefined;
    runner.on(EVENT_SUITE_BEGIN, (suite: Mocha.Suite) => {
      if (topLevel(suite)) started.set(suite, performance.now());
    });
    runner.on(EVENT_SUITE_END, (suite: Mocha.Suite) => {
      const begin = started.get(suite);
      if (begin === undefined || suite.file === undefined) return;
      started.delete(suite);
      totals.set(suite.file, (totals.get(suite.file) ?? 0) + performance.now() - begin);
    });
    // Registered after the spec reporter's epilogue, so it prints below the summary.
    runner.once(EVENT_RUN_END, () => {
      if (!(count > 0) || totals.size === 0) return;
      Mocha.reporters.Base.consoleLog(formatSlowest(slowestFiles(totals, count), process.cwd()) + "\n");
    });
  }
}
