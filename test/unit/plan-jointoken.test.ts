/**
 * The JoinToken controller's pure decisions (controllers/jointoken/plan.ts):
 * a token's state at a time, its expiry, and the status to publish. The
 * reconciler deletes the token Secret whenever the state is not Active and
 * passes a secretRef only while it is.
 */
import assert from "node:assert/strict";
import type { JoinTokenStatus } from "../../lib/api/types.generated.js";
import type { TokenRow } from "../../lib/state/index.js";
import { TokenReasons, desiredTokenStatus, tokenExpiry, tokenState, type TokenState } from "../../controllers/jointoken/plan.js";
import { PlanClock, T0, at, conditionOf, deterministic, frozen, publishedCondition, tokenRow } from "../support/plan-fixtures.js";

const HOUR = 3_600_000;
const secretRef = frozen({ name: "jointoken-tok-1", namespace: "fabric-system" });

describe("JoinToken plan", () => {
  describe("tokenState", () => {
    // The row expires at T0 + 1 h with 3 uses unless stated.
    const cases: Array<{ name: string; row: Partial<TokenRow>; specRevoked: boolean; nowMs: number; want: TokenState }> = [
      { name: "an unused token before its expiry is Active", row: {}, specRevoked: false, nowMs: 0, want: "Active" },
      { name: "a token with one use left is Active", row: { used: 2 }, specRevoked: false, nowMs: 0, want: "Active" },
      { name: "a token one millisecond before its expiry is Active", row: {}, specRevoked: false, nowMs: HOUR - 1, want: "Active" },
      { name: "a token at exactly its expiry is Expired", row: {}, specRevoked: false, nowMs: HOUR, want: "Expired" },
      { name: "a token past its expiry is Expired", row: {}, specRevoked: false, nowMs: 2 * HOUR, want: "Expired" },
      { name: "a token used as often as allowed is Exhausted", row: { used: 3 }, specRevoked: false, nowMs: 0, want: "Exhausted" },
      { name: "a token used more often than allowed (concurrent joins) is Exhausted", row: { used: 4 }, specRevoked: false, nowMs: 0, want: "Exhausted" },
      { name: "a token of zero uses is Exhausted from the start", row: { maxUses: 0 }, specRevoked: false, nowMs: 0, want: "Exhausted" },
      { name: "spec.revoked makes a token Revoked before the row records it", row: {}, specRevoked: true, nowMs: 0, want: "Revoked" },
      { name: "a recorded revocation keeps a token Revoked after spec.revoked is unset", row: { revokedAt: at(-1000) }, specRevoked: false, nowMs: 0, want: "Revoked" },
      { name: "revocation wins over expiry", row: { revokedAt: at(-1000) }, specRevoked: false, nowMs: 2 * HOUR, want: "Revoked" },
      { name: "revocation wins over exhaustion", row: { used: 3 }, specRevoked: true, nowMs: 0, want: "Revoked" },
      { name: "expiry wins over exhaustion (an exhausted token later reads Expired)", row: { used: 3 }, specRevoked: false, nowMs: HOUR, want: "Expired" },
    ];
    for (const c of cases) {
      it(c.name, () => {
        assert.equal(deterministic(tokenState, frozen(tokenRow(c.row)), c.specRevoked, at(c.nowMs)), c.want);
      });
    }
  });

  describe("tokenExpiry", () => {
    const cases: Array<{ name: string; ttlMs: number; maxTtlMs: number; want: Date }> = [
      { name: "a ttl under the cluster's maximum expires creation plus ttl", ttlMs: 30 * 60_000, maxTtlMs: 24 * HOUR, want: at(30 * 60_000) },
      { name: "a ttl equal to the maximum expires creation plus ttl", ttlMs: 24 * HOUR, maxTtlMs: 24 * HOUR, want: at(24 * HOUR) },
      { name: "a ttl above the maximum is bounded by maxTokenTTL", ttlMs: 48 * HOUR, maxTtlMs: 24 * HOUR, want: at(24 * HOUR) },
      { name: "a zero ttl expires at creation", ttlMs: 0, maxTtlMs: HOUR, want: T0 },
    ];
    for (const c of cases) {
      it(c.name, () => {
        assert.deepEqual(deterministic(tokenExpiry, T0, c.ttlMs, c.maxTtlMs), c.want);
      });
    }

    it("does not alias or move the creation time", () => {
      const created = new Date(T0);
      const e = tokenExpiry(created, 1000, HOUR);
      assert.notEqual(e, created);
      assert.deepEqual(created, T0);
    });
  });

  describe("desiredTokenStatus", () => {
    const row = (over: Partial<TokenRow> = {}) => frozen(tokenRow(over));
    const cases: Array<{ name: string; row: TokenRow; state: TokenState; secretRef?: { name: string; namespace: string }; want: JoinTokenStatus }> = [
      {
        name: "an Active token is Ready True with the uses left and its expiry, and points at its Secret",
        row: row({ used: 1 }),
        state: "Active",
        secretRef,
        want: {
          observedGeneration: 2,
          uses: 1,
          expiresAt: "2030-01-01T01:00:00Z",
          secretRef: { name: "jointoken-tok-1", namespace: "fabric-system" },
          conditions: [publishedCondition({ type: "Ready", status: "True", reason: TokenReasons.Active, message: "token accepts 2 more join request(s) until 2030-01-01T01:00:00.000Z", observedGeneration: 2 }, T0)],
        },
      },
      {
        name: "an Expired token is Ready False (Expired) without a Secret",
        row: row(),
        state: "Expired",
        want: {
          observedGeneration: 2,
          uses: 0,
          expiresAt: "2030-01-01T01:00:00Z",
          conditions: [publishedCondition({ type: "Ready", status: "False", reason: TokenReasons.Expired, message: "token expired at 2030-01-01T01:00:00.000Z; its Secret was deleted", observedGeneration: 2 }, T0)],
        },
      },
      {
        name: "an Exhausted token is Ready False (Exhausted) with its uses",
        row: row({ used: 3, lastUsedAt: at(-5000) }),
        state: "Exhausted",
        want: {
          observedGeneration: 2,
          uses: 3,
          expiresAt: "2030-01-01T01:00:00Z",
          lastUsedTime: "2029-12-31T23:59:55Z",
          conditions: [publishedCondition({ type: "Ready", status: "False", reason: TokenReasons.Exhausted, message: "token was used 3 of 3 times; its Secret was deleted", observedGeneration: 2 }, T0)],
        },
      },
      {
        name: "a Revoked token is Ready False (Revoked)",
        row: row({ revokedAt: at(-1000) }),
        state: "Revoked",
        want: {
          observedGeneration: 2,
          uses: 0,
          expiresAt: "2030-01-01T01:00:00Z",
          conditions: [publishedCondition({ type: "Ready", status: "False", reason: TokenReasons.Revoked, message: "token was revoked; its Secret was deleted", observedGeneration: 2 }, T0)],
        },
      },
      {
        name: "lastUsedTime is published at second precision",
        row: row({ used: 1, lastUsedAt: new Date("2029-12-31T23:00:00.987Z") }),
        state: "Active",
        secretRef,
        want: {
          observedGeneration: 2,
          uses: 1,
          expiresAt: "2030-01-01T01:00:00Z",
          lastUsedTime: "2029-12-31T23:00:00Z",
          secretRef: { name: "jointoken-tok-1", namespace: "fabric-system" },
          conditions: [publishedCondition({ type: "Ready", status: "True", reason: "Active", message: "token accepts 2 more join request(s) until 2030-01-01T01:00:00.000Z", observedGeneration: 2 }, T0)],
        },
      },
    ];
    for (const c of cases) {
      it(c.name, () => {
        assert.deepEqual(deterministic(desiredTokenStatus, undefined, 2, c.row, c.state, c.secretRef, T0), c.want);
      });
    }

    it("a token that stops being Active drops its secretRef and flips Ready with lastTransitionTime now", async () => {
      const clock = new PlanClock();
      const active = desiredTokenStatus(undefined, 1, row(), "Active", secretRef, clock.date());
      await clock.advance(HOUR);
      const expired = deterministic(desiredTokenStatus, frozen(active), 1, row(), "Expired", undefined, clock.date());
      assert.equal(expired.secretRef, undefined);
      assert.deepEqual(conditionOf(expired, "Ready"), publishedCondition({ type: "Ready", status: "False", reason: "Expired", message: "token expired at 2030-01-01T01:00:00.000Z; its Secret was deleted", observedGeneration: 1 }, at(HOUR)));
    });

    it("an exhausted token that then expires keeps lastTransitionTime (still False), with the new reason", () => {
      const exhausted = desiredTokenStatus(undefined, 1, row({ used: 3 }), "Exhausted", undefined, T0);
      const expired = desiredTokenStatus(exhausted, 1, row({ used: 3 }), "Expired", undefined, at(HOUR));
      assert.equal(conditionOf(expired, "Ready").lastTransitionTime, "2030-01-01T00:00:00Z");
      assert.equal(conditionOf(expired, "Ready").reason, "Expired");
    });

    it("a ClusterNotFound condition written by the reconciler before the row existed is replaced once the row exists", () => {
      const waiting: JoinTokenStatus = {
        observedGeneration: 1,
        conditions: [{ type: "Ready", status: "False", reason: TokenReasons.ClusterNotFound, message: "cluster east does not exist (yet)", observedGeneration: 1, lastTransitionTime: "2029-12-31T23:00:00Z" }],
      };
      const s = desiredTokenStatus(frozen(waiting), 1, row(), "Active", secretRef, T0);
      assert.equal(s.conditions?.length, 1);
      assert.equal(conditionOf(s, "Ready").reason, "Active");
      assert.equal(conditionOf(s, "Ready").lastTransitionTime, "2030-01-01T00:00:00Z");
    });

    it("the same row and state again give the published status back (no status write)", () => {
      const first = desiredTokenStatus(undefined, 1, row({ used: 1 }), "Active", secretRef, T0);
      assert.deepEqual(desiredTokenStatus(first, 1, row({ used: 1 }), "Active", secretRef, at(60_000)), first);
    });
  });

  it("every TokenState has its own Ready reason, and ClusterNotFound is the reconciler's (no row yet)", () => {
    const states: TokenState[] = ["Active", "Expired", "Exhausted", "Revoked"];
    for (const s of states) assert.equal(TokenReasons[s], s);
    assert.deepEqual(Object.values(TokenReasons).sort(), ["Active", "ClusterNotFound", "Exhausted", "Expired", "Revoked"]);
  });
});
