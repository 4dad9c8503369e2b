/**
 * The far end of test/bench/quic-transport.bench.ts, in its own process: a
 * mesh PeerLinks endpoint (QUIC) and a node:tls server with mutual TLS, both
 * speaking the same frames and answering `echo` and `bulkDone`. Reads its
 * credentials as one JSON line on stdin and prints its ports as one JSON line.
 */
import { createServer } from "node:tls";
import { once } from "node:events";
import { encodeFrame, FrameDecoder } from "../../agent/mesh/transport/frames.js";
import { PeerLinks } from "../../agent/mesh/transport/peer-links.js";

interface Input {
  cluster: string;
  node: string;
  keyPem: string;
  certPem: string;
  caPem: string;
}

let line = "";
process.stdin.setEncoding("utf8");
for await (const chunk of process.stdin) {
  line += chunk as string;
  if (line.includes("\n")) break;
}
const input = JSON.parse(line) as Input;

let bulkBytes = 0;
const answer = (method: string, payload: unknown): unknown => {
  if (method === "echo") return payload;
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

const links = await PeerLinks.start({
  ...input,
  authorised: () => true,
  host: "127.0.0.1",
  onRequest: (_from, method, payload) => answer(method, payload),
  onMessage: (_from, _method, payload) => onBulk(payload),
});

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
process.stdout.write(JSON.stringify({ quic: links.port, tls: addr.port }) + "\n");
process.stdin.resume();
process.stdin.on("end", () => {
  void links.stop().finally(() => process.exit(0));
});
