import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { ExponentialRateLimiter } from "../../controllers/runtime/backoff.js";
import { FakeClock, flushMicrotasks } from "../../controllers/runtime/clock.js";
import { WorkQueue } from "../../controllers/runtime/workqueue.js";

function newQueue(clock = new FakeClock(), registry?: Registry): WorkQueue {
  return new WorkQueue({
    name: "test",
    clock,
    registry,
    rateLimiter: new ExponentialRateLimiter({ baseDelayMs: 5, maxDelayMs: 1000, jitter: 0 }),
  });
}

/** get() that must resolve right away (the queue has a ready key or is shut down). */
async function getNow(q: WorkQueue): Promise<string | undefined> {
  let result: string | undefined | "pending" = "pending";
  void q.get().then((k) => {
    result = k;
  });
  await flushMicrotasks();
  assert.notEqual(result, "pending", "get() should not block");
  return result === "pending" ? undefined : result;
}

describe("runtime WorkQueue", () => {
  it("collapses duplicate adds of a waiting key", async () => {
    const q = newQueue();
    q.add("Kind/ns/a");
    q.add("Kind/ns/a");
    q.add("Kind/ns/b");
    q.add("Kind/ns/a");
    assert.equal(q.len(), 2);
    assert.equal(await getNow(q), "Kind/ns/a");
    assert.equal(await getNow(q), "Kind/ns/b");
    assert.equal(q.len(), 0);
  });

  it("processes a key by at most one worker at a time", async () => {
    const q = newQueue();
    q.add("k");
    const first = await getNow(q);
    assert.equal(first, "k");
    q.add("k");
    assert.equal(q.len(), 0, "a key in flight is not handed to a second worker");
    let second: string | undefined;
    void q.get().then((k) => {
      second = k;
    });
    await flushMicrotasks();
    assert.equal(second, undefined);
    q.done("k");
    await flushMicrotasks();
    assert.equal(second, "k", "the key added while processing is queued again after done()");
  });

  it("does not re-queue a key after done() when nobody added it meanwhile", async () => {
    const q = newQueue();
    q.add("k");
    await getNow(q);
    q.done("k");
    assert.equal(q.len(), 0);
  });

  it("hands keys to waiting workers in FIFO order", async () => {
    const q = newQueue();
    const got: Array<string | undefined> = [];
    void q.get().then((k) => got.push(k));
    void q.get().then((k) => got.push(k));
    q.add("a");
    q.add("b");
    await flushMicrotasks();
    assert.deepEqual(got, ["a", "b"]);
  });

  it("delays addAfter keys and keeps the earliest of two delayed adds", async () => {
    const clock = new FakeClock();
    const q = newQueue(clock);
    q.addAfter("late", 300);
    q.addAfter("early", 100);
    q.addAfter("late", 500); // later than the pending add: ignored
    q.addAfter("early", 50); // earlier: replaces
    await clock.advance(49);
    assert.equal(q.len(), 0);
    await clock.advance(1);
    assert.equal(q.len(), 1);
    assert.equal(await getNow(q), "early");
    await clock.advance(249);
    assert.equal(q.len(), 0);
    await clock.advance(1);
    assert.equal(await getNow(q), "late");
    assert.equal(q.delayedCount(), 0);
  });

  it("adds immediately when addAfter is given no delay", async () => {
    const q = newQueue();
    q.addAfter("k", 0);
    assert.equal(await getNow(q), "k");
  });

  it("grows the retry backoff exponentially and resets it on forget", async () => {
    const clock = new FakeClock();
    const q = newQueue(clock);
    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      const start = clock.now();
      q.addRateLimited("k");
      while (q.len() === 0) await clock.advance(1);
      delays.push(clock.now() - start);
      assert.equal(await getNow(q), "k");
      q.done("k");
    }
    assert.deepEqual(delays, [5, 10, 20, 40, 80]);
    assert.equal(q.numRequeues("k"), 5);
    q.forget("k");
    assert.equal(q.numRequeues("k"), 0);
    const start = clock.now();
    q.addRateLimited("k");
    while (q.len() === 0) await clock.advance(1);
    assert.equal(clock.now() - start, 5);
  });

  it("caps the backoff at the maximum delay", () => {
    const rl = new ExponentialRateLimiter({ baseDelayMs: 5, maxDelayMs: 1000, jitter: 0.5, random: () => 0.999 });
    let last = 0;
    for (let i = 0; i < 30; i++) {
      const d = rl.when("k");
      assert.ok(d >= last, "backoff never shrinks");
      assert.ok(d <= 1000);
      last = d;
    }
    assert.equal(last, 1000);
  });

  it("adds jitter on top of the exponential delay", () => {
    const rl = new ExponentialRateLimiter({ baseDelayMs: 100, maxDelayMs: 100_000, jitter: 0.1, random: () => 0.5 });
    assert.equal(rl.when("k"), 105);
    assert.equal(rl.when("k"), 210);
  });

  it("lets an immediate add pre-empt a pending delayed add", async () => {
    const clock = new FakeClock();
    const q = newQueue(clock);
    q.addAfter("k", 1000);
    q.add("k");
    assert.equal(await getNow(q), "k");
    q.done("k");
    await clock.advance(2000);
    assert.equal(q.len(), 0, "the cancelled delayed add does not fire");
  });

  it("drains queued keys after shutdown with drain, then ends workers", async () => {
    const q = newQueue();
    q.add("a");
    q.add("b");
    q.shutdown({ drain: true });
    q.add("c"); // ignored after shutdown
    assert.equal(await getNow(q), "a");
    assert.equal(await getNow(q), "b");
    assert.equal(await getNow(q), undefined);
    let idle = false;
    void q.awaitIdle().then(() => {
      idle = true;
    });
    await flushMicrotasks();
    assert.equal(idle, false, "a and b are still in flight");
    q.done("a");
    q.done("b");
    await flushMicrotasks();
    assert.equal(idle, true);
  });

  it("drops queued and delayed keys on shutdown without drain but lets in-flight work finish", async () => {
    const clock = new FakeClock();
    const q = newQueue(clock);
    q.add("a");
    q.add("b");
    q.addAfter("c", 10);
    assert.equal(await getNow(q), "a");
    q.add("a"); // dirty while in flight
    q.shutdown();
    assert.equal(q.len(), 0);
    assert.equal(await getNow(q), undefined);
    await clock.advance(100);
    assert.equal(q.len(), 0);
    let idle = false;
    void q.awaitIdle().then(() => {
      idle = true;
    });
    await flushMicrotasks();
    assert.equal(idle, false);
    q.done("a");
    await flushMicrotasks();
    assert.equal(idle, true);
    assert.equal(q.len(), 0, "the dirty key is not re-queued after a non-draining shutdown");
  });

  it("wakes idle workers on shutdown", async () => {
    const q = newQueue();
    const p = q.get();
    q.shutdown();
    assert.equal(await p, undefined);
  });

  it("exports depth, adds, retries, latency and longest-running metrics", async () => {
    const clock = new FakeClock();
    const registry = new Registry();
    const q = newQueue(clock, registry);
    q.add("a");
    q.add("a");
    q.add("b");
    await clock.advance(2000);
    await getNow(q);
    await clock.advance(3000);
    q.addRateLimited("c");
    const text = await registry.metrics();
    assert.match(text, /workqueue_depth\{name="test"\} 1/);
    assert.match(text, /workqueue_adds_total\{name="test"\} 3/);
    assert.match(text, /workqueue_retries_total\{name="test"\} 1/);
    assert.match(text, /workqueue_longest_running_processor_seconds\{name="test"\} 3/);
    assert.match(text, /workqueue_oldest_item_age_seconds\{name="test"\} 5/);
    assert.match(text, /workqueue_queue_duration_seconds_count\{name="test"\} 1/);
    q.done("a");
    const after = await registry.metrics();
    assert.match(after, /workqueue_work_duration_seconds_count\{name="test"\} 1/);
  });
});
