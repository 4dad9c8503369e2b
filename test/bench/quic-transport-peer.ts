/**
 * The far end of test/bench/quic-transport.bench.ts, in its own process: a
 * mesh PeerLinks endpoint on the stock library and one on the patched hot
 * path (QUIC), and a node:tls server with mutual TLS, both
 * speaking the same frames and answering `echo`, `bulkDone` and
 * `datagramsOut` (what its patched endpoint sent). Reads its
 * credentials as one JSON line on stdin and prints its ports as one JSON line.
 */
import { createServer } from "node:tls";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { encodeFrame, FrameDecoder } from "../../agent/mesh/transport/frames.js";
import { PeerLinks } from "../../agent/mesh/transport/peer-links.js";

interface Input {
  cluster: string;
  node: string;
  keyPem: string;
  certPem: string;
  caPem: string;
}

// readline, not `for await ... break`: breaking out would destroy stdin, and its end is the signal to stop.
const rl = createInterface({ input: process.stdin });
const [line] = (await once(rl, "line")) as [string];
const input = JSON.parse(line) as Input;

let bulkBytes = 0;
let fast: PeerLinks | undefined;
const answer = (method: string, payload: unknown): unknown => {
  if (method === "echo") return payload;
  if (method === "datagramsOut") return fast?.fastPath?.datagramsOut ?? 0;
  if (method === "bulkDone") {
    const n = bulkBytes;
    bulkBytes = 0;
    return n;
  }
  throw new Error(`unknown method ${method}`);
};
const onBulk = (payload: unknown): void => {
  if (typeof payload === "string") bulkBytes += payload.length;
};

const start = (fastPath: boolean): Promise<PeerLinks> =>
  PeerLinks.start({
    ...input,
    authorised: () => true,
    host: "127.0.0.1",
    fastPath,
    onRequest: (_from, method, payload) => answer(method, payload),
    onMessage: (_from, _method, payload) => onBulk(payload),
  });
const stock = await start(false);
fast = await start(true);

const tls = createServer({ key: input.keyPem, cert: input.certPem, ca: input.caPem, requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.3" }, (sock) => {
  sock.setNoDelay(true);
  const dec = new FrameDecoder();
  sock.on("data", (chunk: Buffer) => {
    for (const f of dec.push(chunk)) {
      if (f.t === "req") sock.write(encodeFrame({ t: "res", id: f.id, ok: true, p: answer(f.m, f.p) }));
      else if (f.t === "msg") onBulk(f.p);
    }
  });
  sock.on("error", () => undefined);
});
tls.listen(0, "127.0.0.1");
await once(tls, "listening");
const addr = tls.address();
if (addr === null || typeof addr === "string") throw new Error("tls server has no port");
process.stdout.write(JSON.stringify({ quicStock: stock.port, quicFast: fast.port, tls: addr.port }) + "\n");
rl.on("close", () => {
  // Bounded: a hung stop must not keep the process (or its --cpu-prof output) from ending.
  const hung = setTimeout(() => {
    process.stderr.write("quic-transport peer: links.stop did not finish within 3 s\n");
    process.exit(0);
  }, 3000);
  void Promise.all([stock.stop(), fast?.stop()]).finally(() => {
    clearTimeout(hung);
    process.exit(0);
  });
});
