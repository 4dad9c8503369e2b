/**
 * Mesh failover and footprint with real agents in network namespaces
 * (test/support/mesh-lab.ts; root and iproute2 needed): 21 `bin/fabric-agent`
 * processes, each in its own namespace, and the control plane in another.
 * One hub (Relay class, peerPolicy relay 20-20) holds 20 active peers; the 20
 * others are standard nodes (1-17, so every node lists every other and fills
 * to 9). Agent defaults: heartbeats every `HEARTBEAT` (default the agent's
 * 10 s), evaluation every `EVALUATE` (default the agent's 10 s), probes every
 * 3 s (PROBE_INTERVAL_MS; trust window TRUST_WINDOW_MS).
 *
 * 1. The hub's CPU (utime + stime and its reaped children's, from /proc),
 *    RSS (and its anonymous part) and UDP datagrams (its namespace's
 *    /proc/net/snmp) over a quiet window once it holds its 20 peers.
 * 2. Peer death to replacement, ROUNDS times: a standard node is SIGKILLed;
 *    for each node that held it, the time from the kill to its eviction
 *    (`mesh disconnecting` / `mesh link down` in the holder's log) and, when
 *    the same evaluation dials a replacement, to that link's `mesh link up`.
 *    The victim is restarted and the mesh left to settle before the next
 *    round.
 *
 *   npx tsx test/bench/mesh-failover.bench.ts [rounds=20] [evaluate=10s] [quiet-seconds=60] [heartbeat=10s]
 */
import { readFileSync } from "node:fs";
import { TRUST_WINDOW_MS } from "../../agent/mesh/peer-manager.js";
import { PROBE_INTERVAL_MS } from "../../agent/mesh/transport/probe-stats.js";
import { eventually } from "../support/controlplane.js";
import { startMeshLab, upPeers, type AgentSpec, type LabAgent } from "../support/mesh-lab.js";
import { cpuSeconds, percentile, rssBytes } from "./proc-stats.js";

const ROUNDS = Number(process.argv[2] ?? 20);
const EVALUATE = process.argv[3] ?? "10s";
const QUIET_S = Number(process.argv[4] ?? 60);
const HEARTBEAT = process.argv[5] ?? "10s";
process.env.FABRIC_LOG_LEVEL ??= "warn";
// Namespace and interface prefix (MESH_BENCH_PREFIX, 2-6 lowercase letters): two runs side by side need two.
const PREFIX = process.env.MESH_BENCH_PREFIX ?? "afnb";
const CLUSTER = `${PREFIX}-mesh`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface LogLine {
  ts: string;
  msg: string;
  peer?: string;
  reason?: string;
}
function lines(text: string): LogLine[] {
  const out: LogLine[] = [];
  for (const l of text.split("\n")) {
    if (!l.startsWith("{")) continue;
    try {
      out.push(JSON.parse(l) as LogLine);
    } catch {
      // partial line
    }
  }
  return out;
}

/** The 1, 5 and 15 minute load averages. */
const loadAverage = (): string => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
/** UDP datagrams received and sent in the network namespace of `pid`. */
function udpDatagrams(pid: number): { in: number; out: number } {
  const [head, values] = readFileSync(`/proc/${pid}/net/snmp`, "utf8").split("\n").filter((l) => l.startsWith("Udp:")).map((l) => l.split(/\s+/));
  const field = (name: string): number => Number(values?.[head?.indexOf(name) ?? -1] ?? Number.NaN);
  return { in: field("InDatagrams"), out: field("OutDatagrams") };
}

const m = await startMeshLab({ prefix: PREFIX, cluster: CLUSTER, peerPolicy: { relay: { min: 20, max: 20 }, standard: { min: 1, max: 17 } }, evaluateInterval: EVALUATE, heartbeatInterval: HEARTBEAT });
try {
  const specs: AgentSpec[] = [{ short: "hub", nodeClass: "Relay", roles: ["relay-node"] }, ...Array.from({ length: 20 }, (_, i): AgentSpec => ({ short: `n${String(i).padStart(2, "0")}`, nodeClass: "Standard" }))];
  const t0 = Date.now();
  const agents = await m.enrol(specs);
  console.log(`enrolled 21 nodes in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  for (const a of agents) m.start(a);
  const hub = m.byShort("hub");
  const others = agents.filter((a) => a !== hub);
  const status = (a: LabAgent) => m.status(a);
  await eventually(async () => upPeers(await status(hub)).length === 20, 300_000, 1000);
  console.log(`hub holds 20 active peers ${((Date.now() - t0) / 1000).toFixed(1)} s after enrolment began`);

  // 1. Footprint of the hub with 20 active peers.
  await sleep(10_000);
  const pid = hub.child?.pid ?? 0;
  const load0 = loadAverage();
  const udp0 = udpDatagrams(pid);
  const cpu0 = cpuSeconds(pid);
  const w0 = Date.now();
  const rss: number[] = [];
  const peersSeen: number[] = [];
  while (Date.now() - w0 < QUIET_S * 1000) {
    rss.push(rssBytes(pid));
    peersSeen.push(upPeers(await status(hub)).length);
    await sleep(1000);
  }
  const cpu = cpuSeconds(pid) - cpu0;
  const udp1 = udpDatagrams(pid);
  const wall = (Date.now() - w0) / 1000;
  const anon = /RssAnon:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
  const mb = (b: number) => `${(b / 1048576).toFixed(1)} MB`;
  const datagrams = udp1.in - udp0.in + udp1.out - udp0.out;
  console.log(`hub footprint over ${wall.toFixed(0)} s with ${Math.min(...peersSeen)}-${Math.max(...peersSeen)} active peers (heartbeats every ${HEARTBEAT}, evaluation every ${EVALUATE}, probes every ${PROBE_INTERVAL_MS / 1000} s); load average ${load0} -> ${loadAverage()}:`);
  console.log(`  CPU ${cpu.toFixed(2)} s = ${((100 * cpu) / wall).toFixed(2)} % of one core; RSS min ${mb(Math.min(...rss))}, max ${mb(Math.max(...rss))} (anonymous ${mb(Number(anon ?? 0) * 1024)} at the end)`);
  console.log(`  UDP ${((udp1.in - udp0.in) / wall).toFixed(1)} datagrams/s in, ${((udp1.out - udp0.out) / wall).toFixed(1)}/s out; ${((1e6 * cpu) / Math.max(1, datagrams)).toFixed(0)} µs CPU per datagram`);

  // 2. Peer death to replacement.
  const replaceMs: number[] = [];
  const evictMs: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const victim = others[round % others.length] as LabAgent;
    const before = new Map(await Promise.all(others.map(async (a) => [a, await status(a)] as const)));
    // Every live holder of the victim; those that fall below their fill target replace it.
    const watchers = [...before].filter(([a, s]) => a !== victim && upPeers(s).includes(victim.name)).map(([a]) => ({ a, logFrom: a.out().length }));
    const killedAt = Date.now();
    await m.stop(victim, "SIGKILL");
    // Per holder: the eviction (disconnect or link down), then, when the same
    // evaluation dials a replacement (a `mesh connecting` within 1 s of it),
    // that peer's `mesh link up`.
    const outcome = (w: { a: LabAgent; logFrom: number }): { gone?: number; up?: number; settled: boolean } => {
      const log = lines(w.a.out().slice(w.logFrom));
      const gone = log.find((l) => (l.msg === "mesh disconnecting" || l.msg === "mesh link down") && l.peer === victim.name);
      if (gone === undefined) return { settled: false };
      const goneAt = Date.parse(gone.ts);
      const dial = log.find((l) => l.msg === "mesh connecting" && l.peer !== victim.name && Date.parse(l.ts) >= goneAt && Date.parse(l.ts) - goneAt <= 1000);
      if (dial === undefined) return { gone: goneAt - killedAt, settled: Date.now() - goneAt > 1500 };
      const up = log.find((l) => l.msg === "mesh link up" && l.peer === dial.peer && Date.parse(l.ts) >= Date.parse(dial.ts));
      return up === undefined ? { gone: goneAt - killedAt, settled: false } : { gone: goneAt - killedAt, up: Date.parse(up.ts) - killedAt, settled: true };
    };
    const done = await eventually(async () => {
      const res = watchers.map(outcome);
      return res.every((r) => r.settled) ? res : undefined;
    }, 60_000, 200).catch(() => watchers.map(outcome));
    for (const r of done) {
      if (r.gone !== undefined) evictMs.push(r.gone);
      if (r.up !== undefined) replaceMs.push(r.up);
    }
    const unsettled = done.filter((r) => !r.settled).length;
    console.log(`round ${round + 1}: ${victim.spec.short} killed; ${watchers.length} holders evicted it after ${done.map((r) => r.gone ?? "-").join(", ")} ms; replacements up after ${done.filter((r) => r.up !== undefined).map((r) => r.up).join(", ") || "none needed"} ms${unsettled > 0 ? `; ${unsettled} not settled in 60 s` : ""}`);
    m.start(victim);
    await eventually(async () => {
      const s = await status(victim);
      return s?.enabled === true && upPeers(s).length >= 1;
    }, 120_000, 500).catch(() => undefined);
    await sleep(5_000);
  }
  const sorted = [...replaceMs].sort((a, b) => a - b);
  const ev = [...evictMs].sort((a, b) => a - b);
  console.log(`load average at the end ${loadAverage()}`);
  console.log(`peer death to replacement over ${ROUNDS} rounds (${sorted.length} replacements; evaluation every ${EVALUATE}, trust window ${TRUST_WINDOW_MS / 1000} s, probes every ${PROBE_INTERVAL_MS / 1000} s):`);
  console.log(`  replacement link up: p50 ${percentile(sorted, 50)} ms, p99 ${percentile(sorted, 99)} ms, max ${sorted.at(-1)} ms`);
  console.log(`  eviction of the dead peer: p50 ${percentile(ev, 50)} ms, p99 ${percentile(ev, 99)} ms`);
} finally {
  await m.destroy();
}
