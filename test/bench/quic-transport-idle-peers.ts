/**
 * The far end of test/bench/quic-transport-idle.bench.ts, in its own
 * process: `count` mesh PeerLinks endpoints (patched hot path, agent
 * defaults), each dialling the hub once. Reads one JSON line on stdin (the
 * hub's port, the CA and each peer's credentials), prints "up" once every
 * link is up, and stops when stdin ends.
 */
import { once } from "node:events";
import { createInterface } from "node:readline";
import { PeerLinks } from "../../agent/mesh/transport/peer-links.js";

interface Input {
  cluster: string;
  hubPort: number;
  caPem: string;
  probeIntervalMs?: number;
  peers: { node: string; keyPem: string; certPem: string }[];
}

const rl = createInterface({ input: process.stdin });
const [line] = (await once(rl, "line")) as [string];
const input = JSON.parse(line) as Input;
const peers = await Promise.all(
  input.peers.map((p) =>
    PeerLinks.start({ cluster: input.cluster, ...p, caPem: input.caPem, authorised: () => true, host: "127.0.0.1", ...(input.probeIntervalMs !== undefined ? { probeIntervalMs: input.probeIntervalMs } : {}) }),
  ),
);
for (const p of peers) await p.connect({ node: "hub", endpoints: [{ host: "127.0.0.1", port: input.hubPort }] });
process.stdout.write("up\n");
rl.on("close", () => {
  const hung = setTimeout(() => process.exit(0), 3000);
  void Promise.all(peers.map((p) => p.stop())).finally(() => {
    clearTimeout(hung);
    process.exit(0);
  });
});
