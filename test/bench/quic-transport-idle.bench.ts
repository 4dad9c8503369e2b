/**
 * Idle cost of mesh links: this process is a hub holding `peers` links
 * (agent/mesh/transport PeerLinks on the patched hot path, agent defaults:
 * probes every 2.5 s, 10 s idle timeout), each dialled by one endpoint of a
 * child process (test/bench/quic-transport-idle-peers.ts) over loopback with
 * real cluster-issued certificates. After the links are up and a settling
 * pause, it measures the hub's CPU (process.cpuUsage) and datagrams (the
 * fast path's counters) over `seconds`. No control plane, heartbeats or
 * status files: the QUIC and probe cost alone, which
 * test/bench/mesh-failover.bench.ts measures inside a whole agent.
 *
 *   npx tsx test/bench/quic-transport-idle.bench.ts [peers=20] [seconds=30] [profile.cpuprofile]
 *
 * With a third argument the window (only) is CPU-profiled (node:inspector,
 * 100 µs sampling) into that file, for Chrome DevTools or a script.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { writeFileSync, readFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { PeerLinks } from "../../agent/mesh/transport/peer-links.js";
import { repoRoot } from "../support/controlplane.js";
import { clusterCa, nodeCreds } from "../support/mesh-certs.js";

const PEERS = Number(process.argv[2] ?? 20);
const SECONDS = Number(process.argv[3] ?? 30);
const PROFILE = process.argv[4];
const CLUSTER = "idle";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const loadAverage = (): string => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
/** CPU seconds (user + system) of this process's main thread, from /proc (10 ms ticks). */
const mainThreadCpu = (): number => {
  const f = readFileSync(`/proc/${process.pid}/task/${process.pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
};
/** Times this process's main thread went to sleep (each a wakeup later): voluntary context switches. */
const sleeps = (): number => Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/${process.pid}/task/${process.pid}/status`, "utf8"))?.[1]);

const ca = clusterCa(CLUSTER);
const hub = await PeerLinks.start({ cluster: CLUSTER, ...nodeCreds(ca, CLUSTER, "hub"), caPem: ca.certPem, authorised: () => true, host: "127.0.0.1" });
let up = 0;
hub.on("up", () => (up += 1));
const child = spawn(process.execPath, ["--import", "tsx", join(repoRoot, "test/bench/quic-transport-idle-peers.ts")], { stdio: ["pipe", "pipe", "inherit"], cwd: repoRoot });
const peers = Array.from({ length: PEERS }, (_, i) => nodeCreds(ca, CLUSTER, `p${i}`));
child.stdin.write(JSON.stringify({ cluster: CLUSTER, hubPort: hub.port, caPem: ca.certPem, peers }) + "\n");
const rl = createInterface({ input: child.stdout });
await once(rl, "line");
try {
  if (up !== PEERS) throw new Error(`hub holds ${up} links, expected ${PEERS}`);
  await sleep(5000);
  const session = PROFILE === undefined ? undefined : new Session();
  if (session !== undefined) {
    session.connect();
    await session.post("Profiler.enable");
    await session.post("Profiler.setSamplingInterval", { interval: 100 });
    await session.post("Profiler.start");
  }
  const fp = hub.fastPath!;
  const d0 = { in: fp.datagramsIn, out: fp.datagramsOut };
  const load0 = loadAverage();
  const s0 = sleeps();
  const m0 = mainThreadCpu();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await sleep(SECONDS * 1000);
  const c = process.cpuUsage(c0);
  const wakeups = sleeps() - s0;
  const main = mainThreadCpu() - m0;
  const wall = (performance.now() - t0) / 1000;
  const dIn = fp.datagramsIn - d0.in;
  const dOut = fp.datagramsOut - d0.out;
  if (session !== undefined) {
    const { profile } = await session.post("Profiler.stop");
    writeFileSync(PROFILE!, JSON.stringify(profile));
    session.disconnect();
  }
  const cpu = (c.user + c.system) / 1e6;
  console.log(`hub with ${hub.links().length} links over ${wall.toFixed(0)} s; load average ${load0} -> ${loadAverage()}${PROFILE !== undefined ? " (profiled: figures include the profiler)" : ""}:`);
  console.log(`  CPU ${cpu.toFixed(3)} s = ${((100 * cpu) / wall).toFixed(2)} % of one core; UDP ${(dIn / wall).toFixed(1)} datagrams/s in, ${(dOut / wall).toFixed(1)}/s out; ${((1e6 * cpu) / Math.max(1, dIn + dOut)).toFixed(0)} µs CPU per datagram`);
  console.log(`  user ${(c.user / 1e6).toFixed(3)} s, system ${(c.system / 1e6).toFixed(3)} s; main thread ${main.toFixed(3)} s, woke ${(wakeups / wall).toFixed(1)} times/s`);
} finally {
  child.stdin.end();
  await hub.stop();
  await once(child, "exit");
}
