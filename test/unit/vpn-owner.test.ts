/**
 * The VPN owner of one connection (agent/vpn/owner.ts) on a fake monotonic
 * clock, with the real lease client (agent/vpn/lease-client.ts) on that
 * clock over a scripted agent API, and a recording data plane: contention
 * order, the local deadline (torn down at send time + ttl - margin even
 * while a renew hangs), LeaseLost, refusals, crashes, and stop.
 */
import assert from "node:assert/strict";
import { AgentApiRequestError } from "../../agent/http/client.js";
import { VpnLeaseClient, type LeaseTransport } from "../../agent/vpn/lease-client.js";
import { ConnectionOwner, type DataPlane, type OwnerClock } from "../../agent/vpn/owner.js";
import type { VpnAssignment } from "../../agent/vpn/types.js";
import type { Availability, TunnelRef, TunnelSpec } from "../../agent/vpn/wireguard.js";
import { logger } from "../../lib/log.js";

const flush = async (): Promise<void> => {
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
};

class FakeClock implements OwnerClock {
  t = 0;
  private seq = 0;
  private timers: { at: number; fn: () => void; id: number }[] = [];
  now(): number {
    return this.t;
  }
  setTimer(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.timers.push({ at: this.t + ms, fn, id });
    return id;
  }
  clearTimer(h: unknown): void {
    this.timers = this.timers.filter((t) => t.id !== h);
  }
  random(): number {
    return 0.5;
  }
  /** Moves time forward, firing due timers in order and letting promises settle after each. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    await flush();
    for (;;) {
      const next = this.timers.filter((t) => t.at <= end).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (next === undefined) break;
      this.timers = this.timers.filter((t) => t !== next);
      this.t = next.at;
      next.fn();
      await flush();
    }
    this.t = end;
    await flush();
  }
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
}
function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((a, b) => ((resolve = a), (reject = b)));
  return { promise, resolve, reject };
}

const CRED = "[Interface]\nPrivateKey = OKXcyhb/PJjsT0C8aQSHPqnkCmLoSSKyyI5BPD6r8Xw=\nAddress = 10.99.0.2/32\n[Peer]\nPublicKey = QbHx3wCzI5TeceYzqDvx2ifCuBmKCT5TF3qfTiXUBmA=\nEndpoint = 10.88.0.2:51820\nAllowedIPs = 10.20.0.0/16\n";
const A: VpnAssignment = { connection: "org-a/exit", mode: "Exit", preference: 0, routes: [{ destination: "10.20.0.0/16", action: "Route", metric: 10 }], leaseTtlMs: 3000, hasCredentialRef: true, enabled: true };

/** A scripted agent API under the real lease client: each call is logged with its clock time; answers (wire bodies) come from the handlers. */
function fakeApi(clock: FakeClock, events: string[]) {
  const h = {
    acquire: (): Promise<unknown> => Promise.resolve({ granted: true, token: 5, ttlMs: 3000 }),
    renew: (_c: string, token: number): Promise<unknown> => Promise.resolve({ token, ttlMs: 3000 }),
    release: (): Promise<unknown> => Promise.resolve({ released: true }),
    credential: (_c: string, token: number): Promise<unknown> => Promise.resolve({ token, credential: CRED }),
  };
  const transport: LeaseTransport = {
    request: async <T>(_m: string, path: string, body?: unknown) => {
      const b = body as { connection: string; token: number };
      const call = path.split("/").pop();
      events.push(`${clock.t} ${call} ${call === "acquire" ? b.connection : b.token}`);
      const answer = call === "acquire" ? h.acquire() : call === "renew" ? h.renew(b.connection, b.token) : call === "release" ? h.release() : h.credential(b.connection, b.token);
      return { status: 200, body: (await answer) as T };
    },
  };
  return { leases: new VpnLeaseClient(transport, { now: () => clock.now() }), h };
}

class FakeDataPlane implements DataPlane {
  availability: Availability = { ok: true };
  crash: ((r: string) => void) | undefined;
  upError: Error | undefined;
  constructor(
    private readonly clock: FakeClock,
    private readonly events: string[],
  ) {}
  available(): Availability {
    return this.availability;
  }
  async up(spec: TunnelSpec, onCrash: (r: string) => void): Promise<void> {
    this.events.push(`${this.clock.t} up ${spec.connection} ${spec.token} ${spec.routes.map((r) => r.destination).join(",")}`);
    if (this.upError !== undefined) throw this.upError;
    this.crash = onCrash;
  }
  async down(ref: TunnelRef, reason: string): Promise<void> {
    this.events.push(`${this.clock.t} down ${ref.connection} ${ref.token} (${reason.split(";")[0]})`);
  }
  async clean(ifname: string): Promise<void> {
    this.events.push(`${this.clock.t} clean ${ifname}`);
  }
}

function setup(a: VpnAssignment = A) {
  const clock = new FakeClock();
  const events: string[] = [];
  const { leases, h } = fakeApi(clock, events);
  const dp = new FakeDataPlane(clock, events);
  const owner = new ConnectionOwner(a, "afwtest0", { leases, dataPlane: dp, clock, log: logger("vpn-owner-test"), onChange: () => undefined });
  return { clock, events, h, dp, owner };
}

describe("vpn owner: one connection on a fake clock", () => {
  it("cleans leftovers, contends, holds, fetches the credential with its token, brings the tunnel up and renews every ttl/3", async () => {
    const { clock, events, owner } = setup();
    owner.start();
    await clock.advance(0);
    assert.deepEqual(owner.status(), { connection: "org-a/exit", state: "lease_required", reason: "contending", tunnel: "down" });
    await clock.advance(1000);
    // Preference 0, step min(1 s, ttl/4) = 750, jitter 0.5 x 375 = 187.
    assert.deepEqual(events.slice(0, 4), ["0 clean afwtest0", "187 acquire org-a/exit", "187 credential 5", "187 up org-a/exit 5 10.20.0.0/16"]);
    assert.deepEqual(owner.status(), { connection: "org-a/exit", state: "assigned", token: 5, deadlineInMs: 187 + 2000 - 1000, tunnel: "up" });
    await clock.advance(3000);
    assert.deepEqual(events.filter((e) => e.includes("renew")), ["1187 renew 5", "2187 renew 5", "3187 renew 5"]);
    assert.equal(owner.status().tunnel, "up");
    assert.ok(!events.some((e) => e.includes("down")));
  });

  it("tears the tunnel down at the local deadline while a renew hangs (cut off), and ignores its late answer", async () => {
    const { clock, events, h, owner } = setup();
    const hanging = deferred<{ token: number; ttlMs: number }>();
    owner.start();
    await clock.advance(1000); // granted at 187: deadline 2187, renew at 1187
    h.renew = () => hanging.promise;
    await clock.advance(2186 - 1000);
    assert.equal(owner.status().tunnel, "up", "still up 1 ms before the deadline");
    assert.ok(!events.some((e) => e.includes("down")));
    await clock.advance(1);
    assert.ok(events.includes("2187 down org-a/exit 5 (deadline passed without a successful renewal)"), events.join("\n"));
    assert.equal(owner.status().tunnel, "down");
    assert.equal(owner.status().state, "lease_required");
    assert.equal(owner.status().token, undefined);
    // The renew's answer arrives late: it must not bring anything back.
    h.acquire = () => new Promise(() => undefined); // still cut off
    hanging.resolve({ token: 5, ttlMs: 3000 });
    await clock.advance(100);
    assert.equal(owner.status().tunnel, "down");
    assert.equal(events.filter((e) => e.includes(" up ")).length, 1);
  });

  it("keeps the deadline from the send time of the renew, not its answer", async () => {
    const { clock, h, owner } = setup();
    owner.start();
    await clock.advance(1000); // renew at 1187
    const slow = deferred<{ token: number; ttlMs: number }>();
    h.renew = () => slow.promise;
    await clock.advance(1800 - 1000);
    slow.resolve({ token: 5, ttlMs: 3000 });
    await clock.advance(0);
    // Sent at 1187: deadline 1187 + 3000 - 1000 = 3187, i.e. 1387 ms after 1800.
    assert.equal(owner.status().deadlineInMs, 1387);
  });

  it("tears down at once on 409 LeaseLost, then contends again", async () => {
    const { clock, events, h, owner } = setup();
    owner.start();
    await clock.advance(1000);
    h.renew = () => Promise.reject(new AgentApiRequestError(409, "LeaseLost", "lease expired"));
    h.acquire = () => Promise.resolve({ granted: false, retryAfterMs: 5000, reason: "held by n2" });
    await clock.advance(200);
    assert.ok(events.includes("1187 down org-a/exit 5 (lease lost: LeaseLost: lease expired)"), events.join("\n"));
    await clock.advance(1000);
    assert.equal(owner.status().state, "lease_required");
    assert.match(owner.status().reason ?? "", /held by another node: held by n2/);
    assert.equal(owner.status().tunnel, "down");
  });

  it("a higher preference waits longer before asking", async () => {
    const { clock, events, owner } = setup({ ...A, preference: 2 });
    owner.start();
    await clock.advance(1499);
    assert.ok(!events.some((e) => e.includes("acquire")), "preference 2 waits at least 2 steps (1500 ms)");
    await clock.advance(500);
    assert.ok(events.includes("1687 acquire org-a/exit"), events.join("\n"));
  });

  it("reports blocked and never contends without the tools, and not_started while disabled", async () => {
    const t = setup();
    t.dp.availability = { ok: false, reason: "VPN data plane unavailable: wireguard-go (Debian package wireguard-go) not found on PATH" };
    t.owner.start();
    await t.clock.advance(60_000);
    assert.deepEqual(t.owner.status(), { connection: "org-a/exit", state: "blocked", reason: t.dp.availability.reason, tunnel: "down" });
    assert.ok(!t.events.some((e) => e.includes("acquire")));
    const d = setup({ ...A, enabled: false });
    d.owner.start();
    await d.clock.advance(60_000);
    assert.equal(d.owner.status().state, "not_started");
    assert.ok(!d.events.some((e) => e.includes("acquire")));
  });

  it("reports 403 NotEligible as blocked and the control plane away as unknown", async () => {
    const { clock, h, owner } = setup();
    h.acquire = () => Promise.reject(new AgentApiRequestError(403, "NotEligible", "node lacks role vpn-exit"));
    owner.start();
    await clock.advance(1000);
    assert.deepEqual(owner.status(), { connection: "org-a/exit", state: "blocked", reason: "NotEligible: node lacks role vpn-exit", tunnel: "down" });
    h.acquire = () => Promise.reject(new Error("connect ECONNREFUSED"));
    await clock.advance(20_000);
    assert.equal(owner.status().state, "unknown");
  });

  it("gives the lease back (teardown, then release) when the credential is unusable", async () => {
    const { clock, events, h, owner } = setup();
    h.credential = (_c, token) => Promise.resolve({ token, credential: "[Interface]\nPostUp = rm -rf /\n" });
    owner.start();
    await clock.advance(1000);
    assert.ok(!events.some((e) => e.includes(" up ")), "no bring-up with a bad credential");
    const down = events.findIndex((e) => e.includes("down org-a/exit 5"));
    const release = events.findIndex((e) => e.includes("release 5"));
    assert.ok(down >= 0 && release > down, events.join("\n"));
    assert.equal(owner.status().state, "blocked");
    assert.match(owner.status().reason ?? "", /PostUp is not supported/);
  });

  it("gives the lease back when wireguard-go crashes, and contends again later", async () => {
    const { clock, events, dp, owner } = setup();
    owner.start();
    await clock.advance(1000);
    dp.crash?.("wireguard-go of afwtest0 exited (signal SIGKILL)");
    await clock.advance(0);
    assert.ok(events.includes("1000 release 5"), events.join("\n"));
    assert.equal(owner.status().state, "blocked");
    assert.match(owner.status().reason ?? "", /data plane crashed/);
    await clock.advance(15_000);
    assert.equal(events.filter((e) => e.includes(" up ")).length, 2, "brought up again after the retry delay");
  });

  it("rebuilds the tunnel with the same token when routes change, and stops it when disabled", async () => {
    const { clock, events, owner } = setup();
    owner.start();
    await clock.advance(1000);
    await owner.update({ ...A, routes: [{ destination: "10.30.0.0/16", action: "Route", metric: 1 }] });
    await clock.advance(0);
    assert.ok(events.some((e) => e.endsWith("up org-a/exit 5 10.30.0.0/16")), events.join("\n"));
    assert.equal(owner.status().tunnel, "up");
    await owner.update({ ...A, enabled: false });
    await clock.advance(0);
    assert.equal(owner.status().state, "not_started");
    assert.equal(owner.status().tunnel, "down");
    assert.ok(events.some((e) => e.includes("release 5")));
    // Enabled again: contends (the local reason is gone) and holds again.
    await owner.update(A);
    assert.deepEqual(owner.status(), { connection: "org-a/exit", state: "lease_required", reason: "contending", tunnel: "down" });
    await clock.advance(1000);
    assert.equal(owner.status().state, "assigned");
    assert.equal(owner.status().tunnel, "up");
  });

  it("stop tears down before it releases", async () => {
    const { clock, events, owner } = setup();
    owner.start();
    await clock.advance(1000);
    await owner.stop("assignment left the snapshot");
    const tail = events.slice(-2);
    assert.deepEqual(tail, ["1000 down org-a/exit 5 (assignment left the snapshot)", "1000 release 5"]);
    await clock.advance(10_000);
    assert.ok(!events.slice(-1)[0]?.includes("acquire"));
  });
});
