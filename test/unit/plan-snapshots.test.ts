/**
 * The snapshot builder's pure decisions (controllers/snapshots/plan.ts):
 * whether a node's snapshot is re-signed, under which serial, for how long.
 * The builder skips signing on "unchanged", signs the header with
 * nextSerial() and expires it lifetimeOf() after now.
 */
import assert from "node:assert/strict";
import { DEFAULT_SNAPSHOT_LIFETIME_MS, MAX_SNAPSHOT_LIFETIME_MS, MIN_SNAPSHOT_LIFETIME_MS, decide, lifetimeOf, nextSerial, type BuildDecision } from "../../controllers/snapshots/plan.js";
import { at, deterministic, frozen, storedSnapshot } from "../support/plan-fixtures.js";
import type { StoredSnapshotMeta } from "../../lib/state/snapshots.js";

const HOUR = 3_600_000;

describe("snapshot plan", () => {
  describe("decide", () => {
    // Stored snapshots are issued at T0 for 10 s unless stated: half-life at T0 + 5 s.
    const cases: Array<{ name: string; stored: StoredSnapshotMeta | undefined; hash: string; nowMs: number; want: BuildDecision }> = [
      { name: "a node without a stored snapshot gets a new one", stored: undefined, hash: "p1", nowMs: 0, want: "new" },
      { name: "a changed payload is re-signed at once, even a second after issue", stored: storedSnapshot(0, 10_000), hash: "p2", nowMs: 1_000, want: "changed" },
      { name: "a changed payload is re-signed even past its expiry (changed wins over refresh)", stored: storedSnapshot(0, 10_000), hash: "p2", nowMs: 20_000, want: "changed" },
      { name: "the same payload right after issue stands", stored: storedSnapshot(0, 10_000), hash: "p1", nowMs: 0, want: "unchanged" },
      { name: "the same payload one millisecond before half its lifetime stands", stored: storedSnapshot(0, 10_000), hash: "p1", nowMs: 4_999, want: "unchanged" },
      { name: "the same payload at exactly half its lifetime is refreshed", stored: storedSnapshot(0, 10_000), hash: "p1", nowMs: 5_000, want: "refresh" },
      { name: "the same payload past its expiry is refreshed", stored: storedSnapshot(0, 10_000), hash: "p1", nowMs: 30_000, want: "refresh" },
      { name: "half of an odd lifetime is not rounded down (500.5 ms: 500 stands)", stored: storedSnapshot(0, 1_001), hash: "p1", nowMs: 500, want: "unchanged" },
      { name: "half of an odd lifetime is not rounded up (500.5 ms: 501 refreshes)", stored: storedSnapshot(0, 1_001), hash: "p1", nowMs: 501, want: "refresh" },
      { name: "the half-life is measured from the stored issue time, not from T0", stored: storedSnapshot(-24 * HOUR, 24 * HOUR), hash: "p1", nowMs: 0, want: "refresh" },
      { name: "a day-long snapshot issued 11 h 59 min ago stands", stored: storedSnapshot(-(12 * HOUR - 60_000), 24 * HOUR), hash: "p1", nowMs: 0, want: "unchanged" },
      { name: "a snapshot stored under an older authority term stands while its payload is the same", stored: storedSnapshot(0, 10_000, { term: 0 }), hash: "p1", nowMs: 1_000, want: "unchanged" },
    ];
    for (const c of cases) {
      it(c.name, () => {
        assert.equal(deterministic(decide, frozen(c.stored), c.hash, at(c.nowMs)), c.want);
      });
    }
  });

  describe("nextSerial", () => {
    const cases: Array<{ name: string; stored: StoredSnapshotMeta | undefined; highest: number | undefined; want: number }> = [
      { name: "the first snapshot a node name ever gets has serial 1", stored: undefined, highest: undefined, want: 1 },
      { name: "the next serial follows the stored one", stored: storedSnapshot(0, 10_000, { serial: 7 }), highest: undefined, want: 8 },
      { name: "a node name seen before (deleted and re-enrolled) continues above its highest serial", stored: undefined, highest: 41, want: 42 },
      { name: "the highest ever wins over a lower stored serial", stored: storedSnapshot(0, 10_000, { serial: 7 }), highest: 12, want: 13 },
      { name: "the stored serial wins over a lower highest ever", stored: storedSnapshot(0, 10_000, { serial: 9 }), highest: 3, want: 10 },
      { name: "a highest ever of 0 counts as none", stored: undefined, highest: 0, want: 1 },
    ];
    for (const c of cases) {
      it(c.name, () => {
        assert.equal(deterministic(nextSerial, frozen(c.stored), c.highest), c.want);
      });
    }

    it("never goes back: each serial is above both inputs", () => {
      for (let s = 0; s < 5; s++) {
        for (let h = 0; h < 5; h++) {
          const n = nextSerial(storedSnapshot(0, 1, { serial: s }), h);
          assert.ok(n > s && n > h, `serial ${n} above stored ${s} and highest ${h}`);
        }
      }
    });
  });

  describe("lifetimeOf", () => {
    const cases: Array<{ name: string; spec: Record<string, unknown>; want: number }> = [
      { name: "an unset snapshotLifetime gives the 24 h default", spec: {}, want: 24 * HOUR },
      { name: "a non-string snapshotLifetime gives the default", spec: { snapshotLifetime: 3600 }, want: DEFAULT_SNAPSHOT_LIFETIME_MS },
      { name: "a null snapshotLifetime gives the default", spec: { snapshotLifetime: null }, want: DEFAULT_SNAPSHOT_LIFETIME_MS },
      { name: "an unparsable snapshotLifetime gives the default instead of failing the build", spec: { snapshotLifetime: "one hour" }, want: DEFAULT_SNAPSHOT_LIFETIME_MS },
      { name: "an empty snapshotLifetime gives the default", spec: { snapshotLifetime: "" }, want: DEFAULT_SNAPSHOT_LIFETIME_MS },
      { name: "a negative snapshotLifetime gives the default", spec: { snapshotLifetime: "-1h" }, want: DEFAULT_SNAPSHOT_LIFETIME_MS },
      { name: "a Go duration is honoured (1h)", spec: { snapshotLifetime: "1h" }, want: HOUR },
      { name: "a compound Go duration is honoured (1h30m)", spec: { snapshotLifetime: "1h30m" }, want: 90 * 60_000 },
      { name: "exactly the 10 s minimum is honoured", spec: { snapshotLifetime: "10s" }, want: MIN_SNAPSHOT_LIFETIME_MS },
      { name: "just under the minimum is raised to 10 s", spec: { snapshotLifetime: "9999ms" }, want: 10_000 },
      { name: "zero is raised to the minimum (a lifetime shorter than the loop would flap)", spec: { snapshotLifetime: "0s" }, want: MIN_SNAPSHOT_LIFETIME_MS },
      { name: "exactly the 30-day maximum is honoured", spec: { snapshotLifetime: "720h" }, want: MAX_SNAPSHOT_LIFETIME_MS },
      { name: "just over the maximum is lowered to 30 days", spec: { snapshotLifetime: "720h1ms" }, want: MAX_SNAPSHOT_LIFETIME_MS },
      { name: "a schema-valid lifetime past what a Date holds is lowered to the maximum", spec: { snapshotLifetime: "2400000000h" }, want: MAX_SNAPSHOT_LIFETIME_MS },
      { name: "a lifetime whose digits overflow to Infinity is lowered to the maximum", spec: { snapshotLifetime: `${"9".repeat(400)}h` }, want: MAX_SNAPSHOT_LIFETIME_MS },
      { name: "other spec fields are ignored", spec: { snapshotLifetime: "2m", enrollmentPolicy: { maxTokenTTL: "1h" } }, want: 120_000 },
    ];
    for (const c of cases) {
      it(c.name, () => {
        assert.equal(deterministic(lifetimeOf, frozen(c.spec)), c.want);
      });
    }

    it("the constants are 24 h and 10 s", () => {
      assert.equal(DEFAULT_SNAPSHOT_LIFETIME_MS, 86_400_000);
      assert.equal(MIN_SNAPSHOT_LIFETIME_MS, 10_000);
    });
  });
});
