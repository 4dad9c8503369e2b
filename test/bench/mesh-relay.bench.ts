/**
 * Mesh forwarding figures on loopback, in one process: real QUIC links and
 * certificates, the agent's stream service. A TCP forward from A to a sink on
 * B (counts bytes, answers the count when the sender half-closes), direct
 * (A and B linked) and through one relay R (A and B linked only to R: two
 * QUIC hops and the end-to-end TLS); then ping RTT both ways. CPU (this
 * process runs every node, so it is the sum over the path) per MiB, per ping
 * and per stream open sits beside each wall-clock figure. Measures, never
 * asserts. Run: npx tsx test/bench/mesh-relay.bench.ts [MiB]
 */
import net from "node:net";
import { performance } from "node:perf_hooks";
import { observationsOf, type PeerRecord } from "../../agent/mesh/adapter.js";
import type { StreamView } from "../../agent/mesh/forward-policy.js";
import { MeshStreams } from "../../agent/mesh/forward.js";
import { RelayTable } from "../../agent/mesh/relay-table.js";
import { PeerLinks } from "../../agent/mesh/transport/peer-links.js";
import { logger } from "../../lib/log.js";
import { clusterCa, nodeCreds } from "../support/mesh-certs.js";

const CLUSTER = "bench";
const MIB = Number(process.argv[2] ?? 8);
const ca = clusterCa(CLUSTER);

interface BenchNode {
  links: PeerLinks;
  streams: MeshStreams;
  timer?: NodeJS.Timeout;
}

async function node(name: string, peers: Record<string, boolean>, relay: boolean, ports: number[]): Promise<BenchNode> {
  const creds = nodeCreds(ca, CLUSTER, name);
  const view: StreamView = { self: name, cluster: CLUSTER, peers: new Map(Object.entries(peers).map(([n, r]) => [n, { relayCapable: r }])), relay, ports: new Set(ports) };
  const records = new Map<string, PeerRecord>();
  let links: PeerLinks | undefined;
  const streams = new MeshStreams({
    self: name,
    cluster: CLUSTER,
    log: logger("bench", { node: name }),
    links: () => links,
    creds: () => ({ cluster: CLUSTER, keyPem: creds.keyPem, certPem: creds.certPem, caPem: ca.certPem }),
    view: () => view,
    routingLinks: () => observationsOf(links?.links() ?? [], records).map((l) => ({ ...l, cluster: CLUSTER, relayCapable: view.peers.get(l.node)?.relayCapable === true })),
    relays: new RelayTable(CLUSTER),
    now: Date.now,
  });
  links = await PeerLinks.start({
    cluster: CLUSTER,
    node: name,
    keyPem: creds.keyPem,
    certPem: creds.certPem,
    caPem: ca.certPem,
    authorised: (n) => view.peers.has(n),
    host: "127.0.0.1",
    onRequest: () => ({}),
    onMessage: (from, m, p) => streams.onMessage(from, m, p),
    onStream: (from, s) => streams.accept(from, s),
  });
  const heard = (n: string): void => void records.set(n, { failures: 0, sinceMs: Date.now(), lastHeardMs: Date.now() });
  links.on("up", (i) => heard(i.node));
  links.on("rtt", (e) => heard(e.node));
  const out: BenchNode = { links, streams };
  if (relay) out.timer = setInterval(() => streams.advertise(), 1000);
  return out;
}

async function sink(): Promise<{ port: number; close: () => void }> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    let n = 0;
    s.on("data", (c: Buffer) => (n += c.length));
    s.on("end", () => s.end(String(n)));
    s.on("error", () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close() };
}

async function upload(port: number, bytes: number): Promise<number> {
  const chunk = Buffer.alloc(64 * 1024, 7);
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port, allowHalfOpen: true });
    let answer = "";
    s.on("data", (c: Buffer) => (answer += c.toString()));
    s.on("error", reject);
    s.on("close", () => (Number(answer) === bytes ? resolve() : reject(new Error(`sink counted ${answer}, sent ${bytes}`))));
    s.on("connect", () => {
      let sent = 0;
      const pump = (): void => {
        while (sent < bytes) {
          sent += chunk.length;
          if (!s.write(chunk)) return void s.once("drain", pump);
        }
        s.end();
      };
      pump();
    });
  });
  return performance.now() - t0;
}

/** CPU milliseconds (user + system) of this process, which runs all three nodes, the source and the sink, since `from`. */
const cpuMs = (from: NodeJS.CpuUsage): number => {
  const d = process.cpuUsage(from);
  return (d.user + d.system) / 1000;
};

const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? NaN;

async function main(): Promise<void> {
  const sk = await sink();
  const bytes = MIB * 1024 * 1024;
  for (const mode of ["direct", "relayed"] as const) {
    const a = await node("a", { b: false, r: true }, false, []);
    const b = await node("b", { a: false, r: true }, false, [sk.port]);
    const r = await node("r", { a: false, b: false }, true, []);
    const ep = (n: BenchNode, name: string) => ({ node: name, endpoints: [{ host: "127.0.0.1", port: n.links.port }] });
    if (mode === "direct") await a.links.connect(ep(b, "b"));
    else {
      await a.links.connect(ep(r, "r"));
      await b.links.connect(ep(r, "r"));
      r.streams.advertise();
      for (let i = 0; i < 100; i++) {
        try {
          a.streams.route("b");
          break;
        } catch {
          await new Promise((res) => setTimeout(res, 50));
        }
      }
    }
    const fwd = await a.streams.forward({ host: "127.0.0.1", port: 0 }, "b", sk.port);
    await upload(fwd.listen.port, 1024 * 1024); // warm-up
    let c = process.cpuUsage();
    const ms = await upload(fwd.listen.port, bytes);
    const uploadCpuMs = cpuMs(c);
    const rtts: number[] = [];
    c = process.cpuUsage();
    for (let i = 0; i < 50; i++) rtts.push((await a.streams.ping("b")).rttMs);
    const pingCpuMs = cpuMs(c);
    const opens: number[] = [];
    c = process.cpuUsage();
    for (let i = 0; i < 50; i++) {
      const t = performance.now();
      const o = await a.streams.open("b", { kind: "ping" });
      opens.push(performance.now() - t);
      o.stream.destroy();
    }
    const openCpuMs = cpuMs(c);
    console.log(`${mode.padEnd(8)} stream open + ping header answered: p50 ${pct(opens, 50).toFixed(2)} ms p99 ${pct(opens, 99).toFixed(2)} ms; CPU ${(openCpuMs / 50).toFixed(2)} ms per open`);
    console.log(
      `${mode.padEnd(8)} ${MIB} MiB upload: ${(MIB / (ms / 1000)).toFixed(2)} MiB/s (${ms.toFixed(0)} ms), CPU ${(uploadCpuMs / MIB).toFixed(1)} ms/MiB; ping p50 ${pct(rtts, 50).toFixed(2)} ms p99 ${pct(rtts, 99).toFixed(2)} ms, CPU ${(pingCpuMs / 50).toFixed(2)} ms per ping`,
    );
    await fwd.close();
    for (const n of [a, b, r]) {
      clearInterval(n.timer);
      await n.links.stop();
    }
  }
  sk.close();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
