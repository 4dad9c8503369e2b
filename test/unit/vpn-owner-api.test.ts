/**
 * The owner's agent API calls (agent/vpn/api.ts) against hostile or broken
 * answers: wrong types, negative or fractional tokens, a credential for
 * another token, absurd retry delays. Each is an error (or clamped), never
 * a value the owner would act on.
 */
import assert from "node:assert/strict";
import { leaseApiOver } from "../../agent/vpn/api.js";

function over(answer: unknown) {
  const calls: Array<{ path: string; body: unknown }> = [];
  const api = leaseApiOver(async () => ({
    postJson: async <T>(path: string, body: unknown): Promise<T> => {
      calls.push({ path, body });
      return answer as T;
    },
  }));
  return { api, calls };
}

describe("vpn owner api: answers are checked before use", () => {
  it("sends the contract's paths and bodies", async () => {
    const { api, calls } = over({ granted: true, token: 4, ttlMs: 3000, credential: "x", connection: "a/b" });
    await api.acquire("a/b");
    await api.renew("a/b", 4);
    await api.release("a/b", 4);
    assert.equal(await api.credential("a/b", 4), "x");
    assert.deepEqual(calls, [
      { path: "/v1/vpn/lease/acquire", body: { connection: "a/b" } },
      { path: "/v1/vpn/lease/renew", body: { connection: "a/b", token: 4 } },
      { path: "/v1/vpn/lease/release", body: { connection: "a/b", token: 4 } },
      { path: "/v1/vpn/credential", body: { connection: "a/b", token: 4 } },
    ]);
  });

  it("refuses malformed grants and renewals", async () => {
    for (const bad of [{ granted: true, token: "4", ttlMs: 3000 }, { granted: true, token: -1, ttlMs: 3000 }, { granted: true, token: 1.5, ttlMs: 3000 }, { granted: true, token: 4, ttlMs: null }, { granted: true, token: 2 ** 60, ttlMs: 3000 }]) {
      await assert.rejects(over(bad).api.acquire("a/b"), /not a non-negative integer/, JSON.stringify(bad));
    }
    for (const bad of [{}, { token: 4 }, { token: 4, ttlMs: "3s" }, []]) await assert.rejects(over(bad).api.renew("a/b", 4), /not a non-negative integer/, JSON.stringify(bad));
  });

  it("clamps a busy answer's delay and reason, and refuses a credential that is not text or for another token", async () => {
    const busy = await over({ granted: false, retryAfterMs: 1e12, reason: "x".repeat(10_000) }).api.acquire("a/b");
    assert.equal(busy.granted, false);
    assert.equal(!busy.granted && busy.retryAfterMs, 3_600_000);
    assert.equal(!busy.granted && busy.reason.length, 200);
    await assert.rejects(over({ granted: false, retryAfterMs: -5 }).api.acquire("a/b"), /retryAfterMs/);
    await assert.rejects(over({ token: 4, credential: { PrivateKey: "x" } }).api.credential("a/b", 4), /not a string/);
    await assert.rejects(over({ token: 5, credential: "[Interface]" }).api.credential("a/b", 4), /another token/);
    assert.equal(await over({ token: 4, credential: "[Interface]" }).api.credential("a/b", 4), "[Interface]");
  });
});
