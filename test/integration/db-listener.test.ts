import { strict as assert } from "node:assert";
import { rmSync } from "node:fs";
import net from "node:net";
import * as path from "node:path";
import type pg from "pg";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "../../lib/db/embedded-postgres.js";
import { PgListener } from "../../lib/db/listener.js";
import { createPool } from "../../lib/db/pool.js";
import { logger } from "../../lib/log.js";
import { tempStateDir } from "../support/controlplane.js";
import { seedPostgres } from "../support/pg-template.js";

async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not reached in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Backend pids of sessions whose last statement was exactly `sql`. */
async function sessionsLastRunning(pool: pg.Pool, sql: string): Promise<number[]> {
  const r = await pool.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE query = $1 AND pid <> pg_backend_pid()", [sql]);
  return r.rows.map((x) => x.pid);
}

/**
 * A loopback proxy whose open connections can be silenced in both
 * directions without closing them: a connection that died without a FIN or
 * RST (dropped NAT entry, frozen peer). Later connections pass normally.
 */
async function startSilencingProxy(targetPort: number): Promise<{ port: number; silence(): number; close(): void }> {
  const pairs = new Set<{ client: net.Socket; upstream: net.Socket; silent: boolean }>();
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, "127.0.0.1");
    const p = { client, upstream, silent: false };
    pairs.add(p);
    client.on("data", (b) => {
      if (!p.silent) upstream.write(b);
    });
    upstream.on("data", (b) => {
      if (!p.silent) client.write(b);
    });
    const end = (): void => {
      pairs.delete(p);
      client.destroy();
      upstream.destroy();
    };
    client.on("close", end).on("error", end);
    upstream.on("close", end).on("error", end);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const addr = server.address();
  if (typeof addr !== "object" || addr === null) throw new Error("proxy has no address");
  return {
    port: addr.port,
    silence() {
      for (const p of pairs) p.silent = true;
      return pairs.size;
    },
    close() {
      for (const p of pairs) {
        p.client.destroy();
        p.upstream.destroy();
      }
      server.close();
    },
  };
}

describe("PgListener", function () {
  this.timeout(60_000);
  let server: EmbeddedDatabase | undefined;
  let stateDir = "";
  let pool: pg.Pool;
  const log = logger("test-listener");

  before(async () => {
    stateDir = tempStateDir("fabric-listener-test-");
    await seedPostgres(path.join(stateDir, "postgres"));
    server = await startEmbeddedPostgres({ dataDir: path.join(stateDir, "postgres"), fsync: false });
    pool = createPool(server.url, { max: 4 });
  });
  after(async () => {
    await pool?.end();
    await server?.stop();
    rmSync(stateDir, { recursive: true, force: true });
  });

  for (const source of ["pool", "connection string"] as const) {
    it(`delivers notifications, reconnects after its backend is killed and resyncs, and stops cleanly (${source})`, async () => {
      const channel = source === "pool" ? "listener_test_pool" : "listener_test_url";
      const payloads: string[] = [];
      let connects = 0;
      let disconnects = 0;
      // The listener's own pool: the session it gives back is not reused by the test's queries.
      const listenPool = createPool(server?.url ?? "", { max: 1 });
      const listener = new PgListener({
        connection: source === "pool" ? listenPool : (server?.url ?? ""),
        channels: [channel],
        onNotification: (n) => payloads.push(n.payload ?? ""),
        onConnect: () => connects++,
        onDisconnect: () => disconnects++,
        log,
        retryMs: 50,
      });
      assert.equal(listener.connected, false);
      const stop = new AbortController();
      const running = listener.run(stop.signal);
      assert.equal(await listener.firstAttempt, undefined);
      assert.equal(listener.connected, true);
      assert.equal(connects, 1);

      await pool.query("SELECT pg_notify($1, 'one')", [channel]);
      await eventually(() => payloads.includes("one"));

      // Kill the listening backend: the loss is noticed, the LISTEN comes back on a new one, and the owner resyncs.
      const listenSql = `LISTEN "${channel}"`;
      const [pid, ...others] = await sessionsLastRunning(pool, listenSql);
      assert.ok(pid !== undefined && others.length === 0, "one listening session");
      await pool.query("SELECT pg_terminate_backend($1)", [pid]);
      await eventually(() => disconnects === 1 && connects === 2 && listener.connected);
      const [newPid] = await sessionsLastRunning(pool, listenSql);
      assert.ok(newPid !== undefined && newPid !== pid, "listening again on another backend");
      await pool.query("SELECT pg_notify($1, 'two')", [channel]);
      await eventually(() => payloads.includes("two"));

      stop.abort();
      await running;
      assert.equal(listener.connected, false);
      assert.equal(disconnects, 1, "a stop is not a loss");
      await eventually(async () => (await sessionsLastRunning(pool, listenSql)).length === 0);
      if (source === "pool") {
        // The pooled client went back to the pool, its LISTEN undone, and stays open for others.
        assert.deepEqual(await sessionsLastRunning(pool, `UNLISTEN "${channel}"`), [newPid]);
      }
      await pool.query("SELECT pg_notify($1, 'after stop')", [channel]);
      await new Promise((r) => setTimeout(r, 200));
      assert.ok(!payloads.includes("after stop"));
      assert.equal(listenPool.totalCount - listenPool.idleCount, 0, "no pooled client is held");
      await listenPool.end();
    });
  }

  it("replaces a connection that went silent (liveness probe) and resyncs", async () => {
    assert.ok(server !== undefined);
    const proxy = await startSilencingProxy(server.port);
    const url = new URL(server.url);
    url.port = String(proxy.port);
    url.searchParams.delete("host"); // TCP through the proxy, not the unix socket
    let connects = 0;
    let lostWith: Error | undefined;
    const payloads: string[] = [];
    const channel = "listener_test_probe";
    const listener = new PgListener({
      connection: url.toString(),
      channels: [channel],
      onNotification: (n) => payloads.push(n.payload ?? ""),
      onConnect: () => connects++,
      onDisconnect: (err) => {
        lostWith = err;
      },
      log,
      retryMs: 50,
      probeMs: 100,
      probeTimeoutMs: 300,
    });
    const stop = new AbortController();
    const running = listener.run(stop.signal);
    try {
      assert.equal(await listener.firstAttempt, undefined);
      assert.equal(proxy.silence(), 1);
      await eventually(() => connects === 2 && listener.connected);
      assert.match(lostWith?.message ?? "", /probe timed out/);
      await pool.query("SELECT pg_notify($1, 'after the silence')", [channel]);
      await eventually(() => payloads.includes("after the silence"));
    } finally {
      stop.abort();
      await running;
      proxy.close();
    }
  });

  it("keeps trying while PostgreSQL refuses connections, and a stop ends the attempts", async () => {
    const listener = new PgListener({ connection: "postgres://nobody@127.0.0.1:1/none", channels: ["x"], onNotification: () => undefined, log, retryMs: 20 });
    const stop = new AbortController();
    const running = listener.run(stop.signal);
    assert.ok((await listener.firstAttempt) instanceof Error);
    assert.equal(listener.connected, false);
    stop.abort();
    await running;
  });
});
