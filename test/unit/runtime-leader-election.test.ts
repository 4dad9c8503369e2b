import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { FakeClock, flushMicrotasks } from "../../controllers/runtime/clock.js";
import { LeaderElector, type AuthorityTerm, type LeaseClient, type LeaseRecord } from "../../controllers/runtime/leader-election.js";

/** One Lease object with optimistic concurrency, shared by the candidates. */
class FakeLeaseStore {
  record: LeaseRecord | undefined;
  rv = 0;
  /** Candidates whose requests fail (partitioned from the API server). */
  partitioned = new Set<string>();
  writes: Array<{ by: string; record: LeaseRecord }> = [];

  client(identity: string): LeaseClient {
    const check = (): void => {
      if (this.partitioned.has(identity)) throw new Error("connection refused");
    };
    return {
      describe: () => "ns/lease",
      get: async () => {
        check();
        return this.record === undefined ? undefined : { record: { ...this.record }, resourceVersion: String(this.rv) };
      },
      create: async (record) => {
        check();
        if (this.record !== undefined) throw Object.assign(new Error("AlreadyExists"), { code: 409 });
        this.record = { ...record };
        this.rv++;
        this.writes.push({ by: identity, record: { ...record } });
      },
      update: async (record, resourceVersion) => {
        check();
        if (resourceVersion !== String(this.rv)) throw Object.assign(new Error("Conflict"), { code: 409 });
        this.record = { ...record };
        this.rv++;
        this.writes.push({ by: identity, record: { ...record } });
      },
    };
  }
}

class CountingAuthority implements AuthorityTerm {
  term = 0;
  held: number | undefined;
  log: string[] = [];
  fail = false;
  async acquire(identity: string): Promise<number> {
    if (this.fail) throw new Error("database down");
    this.term++;
    this.held = this.term;
    this.log.push(`acquire ${identity} ${this.term}`);
    return this.term;
  }
  relinquish(): void {
    this.held = undefined;
  }
}

interface Candidate {
  elector: LeaderElector;
  ac: AbortController;
  events: string[];
  signal?: AbortSignal;
  done: Promise<void>;
}

function candidate(clock: FakeClock, store: FakeLeaseStore, identity: string, authority?: AuthorityTerm, registry?: Registry): Candidate {
  const events: string[] = [];
  const ac = new AbortController();
  const c: Partial<Candidate> = { ac, events };
  const elector = new LeaderElector({
    lease: store.client(identity),
    identity,
    clock,
    random: () => 0,
    authority,
    registry,
    callbacks: {
      onStartedLeading: (signal, term) => {
        events.push(`started ${term ?? "-"}`);
        c.signal = signal;
      },
      onStoppedLeading: () => events.push("stopped"),
      onNewLeader: (id) => events.push(`leader ${id}`),
    },
  });
  c.elector = elector;
  c.done = elector.run(ac.signal);
  return c as Candidate;
}

async function advance(clock: FakeClock, ms: number, step = 100): Promise<void> {
  for (let t = 0; t < ms; t += step) await clock.advance(step);
}

describe("runtime LeaderElector", () => {
  it("creates the lease, draws an authority term, then starts leading", async () => {
    const clock = new FakeClock();
    const store = new FakeLeaseStore();
    const auth = new CountingAuthority();
    const registry = new Registry();
    const a = candidate(clock, store, "a", auth, registry);
    await flushMicrotasks();
    assert.equal(a.elector.isLeader(), true);
    assert.deepEqual(a.events, ["leader a", "started 1"]);
    assert.equal(a.elector.currentTerm(), 1);
    assert.equal(store.record?.holderIdentity, "a");
    assert.equal(store.record?.leaseDurationSeconds, 15);
    assert.equal(store.record?.leaseTransitions, 0);
    assert.match(await registry.metrics(), /leader_election_master_status\{name="ns\/lease"\} 1/);
    a.ac.abort();
    await a.done;
  });

  it("renews the lease every retry period, keeping acquireTime", async () => {
    const clock = new FakeClock();
    const store = new FakeLeaseStore();
    const a = candidate(clock, store, "a");
    await flushMicrotasks();
    const acquired = store.record?.acquireTime?.getTime();
    await advance(clock, 6_000);
    assert.equal(store.writes.length, 4, "create + 3 renewals");
    assert.equal(store.record?.acquireTime?.getTime(), acquired);
    assert.equal(store.record?.renewTime?.getTime(), clock.now());
    a.ac.abort();
    await a.done;
  });

  it("lets only one of two candidates lead", async () => {
    const clock = new FakeClock();
    const store = new FakeLeaseStore();
    const a = candidate(clock, store, "a");
    const b = candidate(clock, store, "b");
    await advance(clock, 20_000);
    assert.equal(a.elector.isLeader(), true);
    assert.equal(b.elector.isLeader(), false);
    assert.equal(b.elector.currentLeader(), "a");
    a.ac.abort();
    b.ac.abort();
    await Promise.all([a.done, b.done]);
  });

  it("releases the lease on graceful stop so a standby takes over within a retry period", async () => {
    const clock = new FakeClock();
    const store = new FakeLeaseStore();
    const auth = new CountingAuthority();
    const a = candidate(clock, store, "a", auth);
    const b = candidate(clock, store, "b", auth);
    await advance(clock, 3_000);
    a.ac.abort();
    await a.done;
    assert.deepEqual(a.events, ["leader a", "started 1", "stopped"]);
    assert.equal(store.record?.holderIdentity, "");
    assert.equal(a.elector.isLeader(), false);
    await advance(clock, 2_100);
    assert.equal(b.elector.isLeader(), true);
    assert.equal(store.record?.leaseTransitions, 1);
    assert.ok(b.events.includes("started 2"), "the successor draws a higher term");
    b.ac.abort();
    await b.done;
  });

  it("steps down after the renew deadline when it cannot reach the API, and the standby waits out the lease", async () => {
    const clock = new FakeClock();
    const store = new FakeLeaseStore();
    const auth = new CountingAuthority();
    const a = candidate(clock, store, "a", auth);
    await flushMicrotasks();
    const b = candidate(clock, store, "b", auth);
    const start = clock.now();
    await advance(clock, 2_100); // renewed at 2 s
    store.partitioned.add("a");
    await advance(clock, 8_900);
    assert.equal(a.elector.isLeader(), true, "still within the renew deadline (renewed 9 s ago)");
    await advance(clock, 1_100);
    assert.equal(a.elector.isLeader(), false);
    assert.equal(a.signal?.aborted, true, "the leading work is told to stop");
    assert.ok(a.events.includes("stopped"));
    assert.equal(b.elector.isLeader(), false, "the standby honours the lease duration");
    await advance(clock, start + 22_000 - clock.now());
    assert.equal(b.elector.isLeader(), true);
    assert.equal(b.elector.currentTerm(), 2);
    a.ac.abort();
    b.ac.abort();
    await Promise.all([a.done, b.done]);
  });

  it("steps down at once when it finds another holder on renewal", async () => {
    const clock = new FakeClock();
    const store = new FakeLeaseStore();
    const a = candidate(clock, store, "a");
    await flushMicrotasks();
    store.record = { ...store.record, holderIdentity: "intruder", renewTime: new Date(clock.now()) };
    store.rv++;
    await advance(clock, 2_100);
    assert.equal(a.elector.isLeader(), false);
    assert.ok(a.events.includes("leader intruder"));
    a.ac.abort();
    await a.done;
  });

  it("does not lead, and gives the lease back, when the authority term cannot be drawn", async () => {
    const clock = new FakeClock();
    const store = new FakeLeaseStore();
    const auth = new CountingAuthority();
    auth.fail = true;
    const a = candidate(clock, store, "a", auth);
    await flushMicrotasks();
    assert.equal(a.elector.isLeader(), false);
    assert.ok(!a.events.some((e) => e.startsWith("started")));
    assert.equal(store.record?.holderIdentity, "");
    auth.fail = false;
    await advance(clock, 5_000);
    assert.equal(a.elector.isLeader(), true);
    a.ac.abort();
    await a.done;
  });

  it("rejects timings that cannot work", () => {
    const store = new FakeLeaseStore();
    assert.throws(
      () =>
        new LeaderElector({
          lease: store.client("a"),
          identity: "a",
          callbacks: { onStartedLeading: () => undefined },
          leaseDurationMs: 5_000,
          renewDeadlineMs: 10_000,
        }),
      /leaseDuration > renewDeadline/,
    );
  });
});
