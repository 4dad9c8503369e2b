/**
 * Test support: a userspace UDP proxy for fault injection (this kernel has no
 * netem). Datagrams arriving on the listening socket are forwarded to the
 * target from one upstream socket per client address, and the target's
 * answers go back to that client, so a QUIC peer dialling the proxy's address
 * talks to the target through it. Each direction has its own added latency
 * (a fixed part plus a uniform random part: noisy RTT; each flow keeps its
 * order, as behind a queue; a datagram never leaves before its due time) and
 * loss ratio, drawn from a seeded PRNG whose seed is printed at start; settings change while it
 * runs; `cut` drops everything. A client address may have its own
 * impairments (`clients`), so a proxy in front of a node can slow only the
 * flows of one other node, whichever side dialled.
 *
 * In process: startUdpProxy(). Inside a network namespace (servers stay in
 * namespaces the test made): spawnUdpProxy(host, ...) runs this file as a
 * child process there, driven by JSON lines on its stdin; spawnUdpProxies(host,
 * [...]) runs several listeners in one such child.
 */
import { spawn, type ChildProcess } from "node:child_process";
import dgram from "node:dgram";
import { randomInt } from "node:crypto";
import { isIP, isIPv6 } from "node:net";
import { performance } from "node:perf_hooks";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { NetnsHost } from "./netns.js";
import { seeded } from "./random.js";

/** What happens to datagrams going one way. */
export interface Impairment {
  /** Added delay (ms). */
  latencyMs: number;
  /** Extra delay drawn uniformly from [0, jitterMs) per datagram (never overtaking the datagram ahead). */
  jitterMs: number;
  /** Fraction of datagrams dropped, 0..1. */
  loss: number;
}

/** The proxy's settings; `toTarget` applies to client-to-target datagrams, `toClient` to the answers. */
export interface UdpProxySettings {
  toTarget: Impairment;
  toClient: Impairment;
  /** Drop every datagram both ways. */
  cut: boolean;
  /** Per client IP address: impairments replacing `toTarget`/`toClient` for its flows. */
  clients: Record<string, { toTarget: Impairment; toClient: Impairment }>;
}

/** A change: any subset. */
export interface UdpProxyChange {
  toTarget?: Partial<Impairment>;
  toClient?: Partial<Impairment>;
  cut?: boolean;
  /** Per client IP address: a change of its impairments (from no impairment), or null to drop its own settings. */
  clients?: Record<string, { toTarget?: Partial<Impairment>; toClient?: Partial<Impairment> } | null>;
}

/** Counters per direction. */
export interface UdpProxyStats {
  forwarded: { toTarget: number; toClient: number };
  dropped: { toTarget: number; toClient: number };
  clients: number;
}

/** A running proxy (the same shape in process and in a namespace). */
export interface UdpProxy {
  address: string;
  port: number;
  seed: number;
  set(change: UdpProxyChange): Promise<UdpProxySettings>;
  stats(): Promise<UdpProxyStats>;
  close(): Promise<void>;
}

/** Where to listen and where to forward. */
export interface UdpProxyOptions {
  listenHost: string;
  /** 0 = ephemeral. */
  listenPort: number;
  targetHost: string;
  targetPort: number;
  /** PRNG seed (default random; printed either way). */
  seed?: number;
  /** Initial settings. */
  settings?: UdpProxyChange;
  /** Where the seed line goes (default stderr). */
  announce?: (line: string) => void;
}

/** One flow (client, direction): when its last datagram is due, and the datagrams waiting, in order, with their timer. */
interface Flow {
  next: number;
  queue: Array<{ at: number; send: () => void }>;
  timer: NodeJS.Timeout | undefined;
}

const newFlow = (): Flow => ({ next: 0, queue: [], timer: undefined });

const NONE: Impairment = { latencyMs: 0, jitterMs: 0, loss: 0 };

function checkImpairment(i: Impairment, which: string): void {
  if (!(Number.isFinite(i.latencyMs) && i.latencyMs >= 0 && i.latencyMs <= 60_000)) throw new Error(`${which}.latencyMs must be 0..60000`);
  if (!(Number.isFinite(i.jitterMs) && i.jitterMs >= 0 && i.jitterMs <= 60_000)) throw new Error(`${which}.jitterMs must be 0..60000`);
  if (!(Number.isFinite(i.loss) && i.loss >= 0 && i.loss <= 1)) throw new Error(`${which}.loss must be 0..1`);
}

/** Applies a change to settings (validated; throws on a bad value and leaves `s` untouched). */
export function applyChange(s: UdpProxySettings, change: UdpProxyChange): UdpProxySettings {
  const next: UdpProxySettings = {
    toTarget: { ...s.toTarget, ...change.toTarget },
    toClient: { ...s.toClient, ...change.toClient },
    cut: change.cut ?? s.cut,
    clients: { ...s.clients },
  };
  checkImpairment(next.toTarget, "toTarget");
  checkImpairment(next.toClient, "toClient");
  if (typeof next.cut !== "boolean") throw new Error("cut must be a boolean");
  for (const [ip, c] of Object.entries(change.clients ?? {})) {
    if (isIP(ip) === 0) throw new Error(`clients: ${ip} is not an IP address`);
    if (c === null) {
      delete next.clients[ip];
      continue;
    }
    const was = next.clients[ip] ?? { toTarget: NONE, toClient: NONE };
    const mine = { toTarget: { ...was.toTarget, ...c.toTarget }, toClient: { ...was.toClient, ...c.toClient } };
    checkImpairment(mine.toTarget, `clients[${ip}].toTarget`);
    checkImpairment(mine.toClient, `clients[${ip}].toClient`);
    next.clients[ip] = mine;
  }
  return next;
}

/** Starts a proxy in this process. */
export async function startUdpProxy(o: UdpProxyOptions): Promise<UdpProxy> {
  const seed = o.seed ?? randomInt(1, 2 ** 31);
  const rand = seeded(seed);
  let settings = applyChange({ toTarget: { ...NONE }, toClient: { ...NONE }, cut: false, clients: {} }, o.settings ?? {});
  const stats: UdpProxyStats = { forwarded: { toTarget: 0, toClient: 0 }, dropped: { toTarget: 0, toClient: 0 }, clients: 0 };
  const type = isIPv6(o.listenHost) ? "udp6" : "udp4";
  const listener = dgram.createSocket(type);
  const upstreams = new Map<string, { sock: dgram.Socket; out: Flow }>();
  const waiting = new Set<Flow>();
  let closed = false;

  // Sends the flow's datagrams that are due, in order, and re-arms for the
  // next one. A timer may fire up to a millisecond before its due time (Node
  // measures from the loop's cached clock): what is not due yet waits for a
  // new timer, so no datagram ever leaves before its time.
  const release = (flow: Flow): void => {
    flow.timer = undefined;
    waiting.delete(flow);
    if (closed) return;
    const now = performance.now();
    while (flow.queue.length > 0 && flow.queue[0]!.at <= now) flow.queue.shift()!.send();
    const head = flow.queue[0];
    if (head === undefined) return;
    flow.timer = setTimeout(release, head.at - now, flow);
    waiting.add(flow);
  };

  // Decides one datagram's fate with the settings in force when it arrives.
  // A flow (client, direction) keeps its order: a datagram never leaves
  // before the one ahead of it, so jitter varies the delay like a queue
  // does, without reordering (which QUIC would read as loss).
  const pass = (way: "toTarget" | "toClient", client: string, flow: Flow, send: () => void): void => {
    const imp = (settings.clients[client] ?? settings)[way];
    if (settings.cut || (imp.loss > 0 && rand() < imp.loss)) {
      stats.dropped[way]++;
      return;
    }
    const delay = imp.latencyMs + (imp.jitterMs > 0 ? rand() * imp.jitterMs : 0);
    stats.forwarded[way]++;
    const now = performance.now();
    const at = Math.max(now + delay, flow.next);
    flow.next = at;
    if (at <= now && flow.queue.length === 0) {
      send();
      return;
    }
    flow.queue.push({ at, send });
    if (flow.timer === undefined) release(flow);
  };

  listener.on("message", (msg, rinfo) => {
    const key = `${rinfo.address}|${rinfo.port}`;
    let up = upstreams.get(key);
    if (up === undefined) {
      const sock = dgram.createSocket(type);
      const back = newFlow();
      sock.on("message", (answer) => pass("toClient", rinfo.address, back, () => listener.send(answer, rinfo.port, rinfo.address)));
      sock.on("error", () => undefined);
      sock.bind(0, o.listenHost);
      up = { sock, out: newFlow() };
      upstreams.set(key, up);
      stats.clients = upstreams.size;
    }
    const target = up.sock;
    pass("toTarget", rinfo.address, up.out, () => target.send(msg, o.targetPort, o.targetHost));
  });
  listener.on("error", () => undefined);
  await new Promise<void>((resolve, reject) => {
    listener.once("error", reject);
    listener.bind(o.listenPort, o.listenHost, () => {
      listener.off("error", reject);
      resolve();
    });
  });
  const port = listener.address().port;
  (o.announce ?? ((l: string) => process.stderr.write(`${l}\n`)))(`udp-proxy ${o.listenHost}:${port} -> ${o.targetHost}:${o.targetPort} seed=${seed}`);
  return {
    address: o.listenHost,
    port,
    seed,
    set: async (change) => (settings = applyChange(settings, change)),
    stats: async () => structuredClone(stats),
    async close() {
      closed = true;
      for (const f of waiting) clearTimeout(f.timer);
      waiting.clear();
      for (const u of upstreams.values()) u.sock.close();
      upstreams.clear();
      await new Promise<void>((r) => listener.close(() => r()));
    },
  };
}

/**
 * Runs a proxy inside a namespace (a child process; its stderr, with the seed
 * line, goes to `onOutput`). Listens on the host's address.
 */
export async function spawnUdpProxy(host: NetnsHost, o: Omit<UdpProxyOptions, "listenHost" | "announce"> & { onOutput?: (text: string) => void }): Promise<UdpProxy & { child: ChildProcess }> {
  const [one] = await spawnUdpProxies(host, [o], o.onOutput);
  return one!;
}

/** Runs several proxies (listeners on the host's address) in one child process in a namespace. */
export async function spawnUdpProxies(host: NetnsHost, list: ReadonlyArray<Omit<UdpProxyOptions, "listenHost" | "announce">>, onOutput?: (text: string) => void): Promise<Array<UdpProxy & { child: ChildProcess }>> {
  const self = fileURLToPath(import.meta.url);
  const repoRoot = join(self, "..", "..", "..");
  const opts = list.map((o) => ({ listenHost: host.address, listenPort: o.listenPort, targetHost: o.targetHost, targetPort: o.targetPort, seed: o.seed, settings: o.settings }));
  const child = host.spawn(process.execPath, ["--import", "tsx", self, JSON.stringify(opts)], { cwd: repoRoot, stdio: ["pipe", "pipe", "pipe"] });
  child.stderr?.on("data", (b: Buffer) => onOutput?.(b.toString()));
  const lines = createInterface({ input: child.stdout! });
  const waiting: Array<(line: string) => void> = [];
  let exited = false;
  const failAll = (why: string): void => {
    for (const w of waiting.splice(0)) w(JSON.stringify({ error: why }));
  };
  const gone = new Promise((r) => child.once("exit", r));
  child.once("exit", (code, signal) => {
    exited = true;
    failAll(`udp proxy exited (${String(code ?? signal)})`);
  });
  lines.on("line", (line) => waiting.shift()?.(line));
  const next = (): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      if (exited) return reject(new Error("udp proxy has exited"));
      waiting.push((line) => {
        const v = JSON.parse(line) as Record<string, unknown>;
        if (typeof v.error === "string") reject(new Error(v.error));
        else resolve(v);
      });
    });
  const ask = async (cmd: Record<string, unknown>): Promise<Record<string, unknown>> => {
    const answer = next();
    child.stdin?.write(`${JSON.stringify(cmd)}\n`);
    return answer;
  };
  const ready = (await next()).ready as Array<{ port: number; seed: number }>;
  const close = async (): Promise<void> => {
    if (exited) return;
    child.kill("SIGTERM");
    await gone;
  };
  return ready.map((r, i) => ({
    child,
    address: host.address,
    port: r.port,
    seed: r.seed,
    set: async (change: UdpProxyChange) => (await ask({ i, set: change })).settings as UdpProxySettings,
    stats: async () => (await ask({ i, stats: true })).stats as UdpProxyStats,
    close,
  }));
}

/** Child mode: a JSON array of options as one argument; commands `{"i":N,"set":{...}}` / `{"i":N,"stats":true}` on stdin, one JSON answer per line on stdout. */
async function childMain(): Promise<void> {
  const parsed = JSON.parse(process.argv[2] ?? "[]") as UdpProxyOptions | UdpProxyOptions[];
  const proxies = await Promise.all((Array.isArray(parsed) ? parsed : [parsed]).map((o) => startUdpProxy(o)));
  process.stdout.write(`${JSON.stringify({ ready: proxies.map((p) => ({ port: p.port, seed: p.seed })) })}\n`);
  const rl = createInterface({ input: process.stdin });
  rl.on("line", (line) => {
    void (async () => {
      try {
        const cmd = JSON.parse(line) as { i?: number; set?: UdpProxyChange; stats?: boolean };
        const proxy = proxies[cmd.i ?? 0];
        if (proxy === undefined) process.stdout.write(`${JSON.stringify({ error: "no such proxy" })}\n`);
        else if (cmd.set !== undefined) process.stdout.write(`${JSON.stringify({ settings: await proxy.set(cmd.set) })}\n`);
        else if (cmd.stats === true) process.stdout.write(`${JSON.stringify({ stats: await proxy.stats() })}\n`);
        else process.stdout.write(`${JSON.stringify({ error: "unknown command" })}\n`);
      } catch (err) {
        process.stdout.write(`${JSON.stringify({ error: (err as Error).message })}\n`);
      }
    })();
  });
  const stop = (): void => void Promise.all(proxies.map((p) => p.close())).then(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  rl.on("close", stop);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  childMain().catch((err: unknown) => {
    process.stderr.write(`udp-proxy: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
