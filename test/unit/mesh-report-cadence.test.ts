import { strict as assert } from "node:assert";
import { FIGURES_REPORT_MS, reportDue, reportOf, type MeshReportBody, type SentReport } from "../../agent/mesh/report-cadence.js";

const since = "2026-12-05T10:00:00.000Z";
const body = (rttB = 0.42, extra: Partial<MeshReportBody> = {}): MeshReportBody => ({
  enabled: true,
  endpoints: ["10.0.0.1:4433"],
  active: ["c.b", "c.c"],
  peers: [
    { peer: "c.b", state: "up", direction: "outbound", rttMs: rttB, jitterMs: 0.05, loss: 0, path: "direct", since },
    { peer: "c.c", state: "up", direction: "inbound", rttMs: 0.31, jitterMs: 0.02, loss: 0, path: "direct", since },
  ],
  ...extra,
});
const sent = (b: MeshReportBody, atMs: number): SentReport => ({ ...reportOf(b), atMs });
const due = (b: MeshReportBody, last: SentReport | undefined, nowMs: number): boolean => reportDue(reportOf(b), last, nowMs);

describe("mesh report cadence: shape changes at once, figure-only changes at most once a minute", () => {
  const t0 = 1_000_000;

  it("sends the first report, and never the same report twice", () => {
    assert.equal(due(body(), undefined, t0), true);
    assert.equal(due(body(), sent(body(), t0), t0 + 10 * FIGURES_REPORT_MS), false);
  });

  it("holds a report whose RTT, jitter or loss moved until a minute after the last one", () => {
    const last = sent(body(), t0);
    assert.equal(due(body(0.5), last, t0 + 10_000), false);
    const lossy = body();
    lossy.peers[1] = { ...lossy.peers[1]!, loss: 0.1, jitterMs: 3 };
    assert.equal(due(lossy, last, t0 + FIGURES_REPORT_MS - 1), false);
    assert.equal(due(body(0.5), last, t0 + FIGURES_REPORT_MS), true);
  });

  it("sends at once when a link goes down, a peer is added, the active set, endpoints or reason change", () => {
    const last = sent(body(), t0);
    const down = body();
    down.peers[1] = { peer: "c.c", state: "failed", path: "none", failures: 1, since };
    const added = body();
    added.peers.push({ peer: "c.d", state: "connecting", path: "none", since });
    for (const [what, b] of [
      ["link down", down],
      ["peer added", added],
      ["active set", body(0.42, { active: ["c.b"] })],
      ["endpoints", body(0.42, { endpoints: ["10.0.0.2:4433"] })],
      ["reason", body(0.42, { reason: "bind failed" })],
      ["disabled", body(0.42, { enabled: false })],
    ] as const) {
      assert.equal(due(b, last, t0 + 1), true, what);
    }
  });
});
