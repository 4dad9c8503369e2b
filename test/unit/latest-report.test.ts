/**
 * The agent's level-triggered report sender (agent/sync/latest-report.ts),
 * under the workload, update and VPN reporters: one send per changed body
 * (or changeKey), versions that only grow, a failed send retried with the
 * newest state, and nothing after close.
 */
import assert from "node:assert/strict";
import type { StatusReport } from "../../lib/agent-protocol.js";
import { logger } from "../../lib/log.js";
import { LatestReportSender } from "../../agent/sync/latest-report.js";

const log = logger("latest-report-test");

describe("LatestReportSender", () => {
  it("sends only changed bodies, each with a growing version, even when the clock stands still", async () => {
    const sent: StatusReport[] = [];
    const r = new LatestReportSender<number>({ send: async (x) => void sent.push(x), log, what: "test report", body: (n) => ({ n }), now: () => 1000 });
    r.update(1);
    await r.flush();
    r.update(1);
    await r.flush();
    r.update(2);
    await r.flush();
    assert.deepEqual(sent.map((x) => x.body), [{ n: 1 }, { n: 2 }]);
    assert.deepEqual(sent.map((x) => x.version), [1000, 1001]);
  });

  it("with a changeKey, a field left out of it rides along with the next real change but makes no report of its own", async () => {
    const sent: StatusReport[] = [];
    type State = { up: boolean; countdown: number };
    const r = new LatestReportSender<State>({ send: async (x) => void sent.push(x), log, what: "test report", body: (s) => ({ ...s }), changeKey: (s) => JSON.stringify(s.up) });
    r.update({ up: false, countdown: 9 });
    await r.flush();
    r.update({ up: false, countdown: 8 });
    await r.flush();
    r.update({ up: true, countdown: 7 });
    await r.flush();
    assert.deepEqual(sent.map((x) => x.body), [{ up: false, countdown: 9 }, { up: true, countdown: 7 }]);
  });

  it("retries a failed send with the newest state, and stops after close", async () => {
    const sent: StatusReport[] = [];
    let fail = true;
    const r = new LatestReportSender<number>({
      send: async (x) => {
        if (fail) throw new Error("control plane away");
        sent.push(x);
      },
      log,
      what: "test report",
      body: (n) => ({ n }),
      retryMs: 20,
    });
    r.update(1);
    await r.flush();
    assert.equal(sent.length, 0);
    r.update(2);
    fail = false;
    for (let i = 0; i < 100 && sent.length === 0; i++) await new Promise((res) => setTimeout(res, 10));
    assert.deepEqual(sent.map((x) => x.body), [{ n: 2 }], "the retry carries the newest state, the failed one is never queued");
    r.close();
    r.update(3);
    await r.flush();
    assert.equal(sent.length, 1, "nothing is sent after close");
  });
});
