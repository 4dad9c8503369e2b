/**
 * The owner's agent API calls (agent/vpn/lease-client.ts, the agent's one
 * lease client) against hostile or broken answers: wrong types, negative or
 * fractional tokens, a credential for another token, absurd retry delays.
 * Each is "unavailable" or an error (or clamped), never a value the owner
 * would act on.
 */
import assert from "node:assert/strict";
import { VpnLeaseClient, type HeldLease, type LeaseTransport } from "../../agent/vpn/lease-client.js";

function over(answer: unknown) {
  const calls: Array<{ path: string; body: unknown }> = [];
  const transport: LeaseTransport = {
    request: async <T>(_m: string, path: string, body?: unknown) => {
      calls.push({ path, body });
      return { status: 200, body: answer as T };
    },
  };
  let t = 1000;
  return { leases: new VpnLeaseClient(async () => transport, { now: () => t++ }), calls };
}

const held: HeldLease = { connection: "a/b", token: 4, ttlMs: 3000, sentAt: 1000, deadline: 3000 };

describe("vpn owner api: answers are checked before use", () => {
  it("sends the contract's paths and bodies, and counts the deadline from the send time on the given clock", async () => {
    const { leases, calls } = over({ granted: true, token: 4, ttlMs: 3000, credential: "x", connection: "a/b", released: true });
    const g = await leases.acquire("a/b");
    assert.deepEqual(g, { kind: "granted", lease: { connection: "a/b", token: 4, ttlMs: 3000, sentAt: 1000, deadline: 1000 + 3000 - 1000 } });
    const r = await leases.renew(held);
    assert.deepEqual(r, { kind: "renewed", lease: { ...held, sentAt: 1001, deadline: 1001 + 2000 } });
    assert.equal(await leases.release(held), true);
    assert.equal(await leases.credential(held), "x");
    assert.deepEqual(calls, [
      { path: "/v1/vpn/lease/acquire", body: { connection: "a/b" } },
      { path: "/v1/vpn/lease/renew", body: { connection: "a/b", token: 4 } },
      { path: "/v1/vpn/lease/release", body: { connection: "a/b", token: 4 } },
      { path: "/v1/vpn/credential", body: { connection: "a/b", token: 4 } },
    ]);
  });

  it("refuses malformed grants and renewals", async () => {
    for (const bad of [{ granted: true, token: "4", ttlMs: 3000 }, { granted: true, token: -1, ttlMs: 3000 }, { granted: true, token: 1.5, ttlMs: 3000 }, { granted: true, token: 4, ttlMs: null }, { granted: true, token: 2 ** 60, ttlMs: 3000 }, [], "granted", null]) {
      const r = await over(bad).leases.acquire("a/b");
      assert.equal(r.kind, "unavailable", JSON.stringify(bad));
      assert.match(r.kind === "unavailable" ? r.message : "", /not a non-negative integer|not a JSON object/, JSON.stringify(bad));
    }
    for (const bad of [{}, { token: 4 }, { token: 4, ttlMs: "3s" }, []]) {
      const r = await over(bad).leases.renew(held);
      assert.equal(r.kind, "unavailable", JSON.stringify(bad));
    }
    const other = await over({ token: 5, ttlMs: 3000 }).leases.renew(held);
    assert.equal(other.kind, "lost");
  });

  it("clamps a busy answer's delay and reason, and refuses a credential that is not text or for another token", async () => {
    const busy = await over({ granted: false, retryAfterMs: 1e12, reason: "x".repeat(10_000) }).leases.acquire("a/b");
    assert.equal(busy.kind, "busy");
    assert.equal(busy.kind === "busy" && busy.retryAfterMs, 3_600_000);
    assert.equal(busy.kind === "busy" && busy.reason.length, 200);
    assert.equal((await over({ granted: false, retryAfterMs: -5 }).leases.acquire("a/b")).kind, "unavailable");
    await assert.rejects(over({ token: 4, credential: { PrivateKey: "x" } }).leases.credential(held), /not a string/);
    await assert.rejects(over({ token: 5, credential: "[Interface]" }).leases.credential(held), /another token/);
    assert.equal(await over({ token: 4, credential: "[Interface]" }).leases.credential(held), "[Interface]");
  });
});
