/**
 * Byte plumbing of mesh data streams: a QUIC stream as a Node Duplex, the
 * one header frame and one answer frame that open every data stream
 * (4-byte big-endian length + JSON, at most MAX_HEADER_BYTES, read without
 * consuming a byte of what follows), splicing two duplexes with
 * backpressure and close propagation, and the end-to-end TLS that runs
 * inside a relayed stream (both sides present their node certificates and
 * verify the other against the cluster CA and the expected node name, so
 * the relay sees ciphertext and cannot pose as either end).
 */
import { X509Certificate } from "node:crypto";
import { Duplex } from "node:stream";
import type { ReadableStreamDefaultReader, WritableStreamDefaultWriter } from "node:stream/web";
import tls from "node:tls";
import type { QUICStream } from "@matrixai/quic";
import { parseJsonWithLimits } from "../../lib/json-limits.js";
import { MAX_HEADER_BYTES } from "./forward-policy.js";
import { nodeServerName, verifyPeerCertificate, type PeerIdentity } from "./transport/peer-identity.js";

/** ALPN of the end-to-end TLS inside a relayed stream. */
export const RELAYED_ALPN = "fabric-mesh-relayed/1";

/**
 * A QUIC stream as a Node Duplex, over the stream's web reader and writer:
 * a read is asked only while Node wants more (backpressure toward the
 * peer through QUIC flow control), a write completes when the stream took
 * it. Ending it sends FIN after the queued bytes; destroying it before both
 * directions ended resets the QUIC stream. (Not `Duplex.fromWeb`: in Node 20
 * its destroy path can throw from inside the adapter when the connection
 * closes under it, which took a whole agent down.) `onData` is told of every
 * chunk received (the link is alive).
 */
export class QuicDuplex extends Duplex {
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly writer: WritableStreamDefaultWriter<Uint8Array>;
  private reading = false;

  constructor(
    private readonly quic: QUICStream,
    private readonly onData?: () => void,
  ) {
    super({ allowHalfOpen: true });
    this.reader = quic.readable.getReader();
    this.writer = quic.writable.getWriter();
    this.on("error", () => undefined);
  }

  override _read(): void {
    if (this.reading) return;
    this.reading = true;
    this.reader.read().then(
      ({ value, done }) => {
        this.reading = false;
        if (done) {
          this.push(null);
          return;
        }
        this.onData?.();
        if (this.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength))) this._read();
      },
      (err: unknown) => {
        this.reading = false;
        this.destroy(err instanceof Error ? err : new Error("quic stream read failed"));
      },
    );
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.writer.write(chunk).then(
      () => cb(),
      (err: unknown) => cb(err instanceof Error ? err : new Error("quic stream write failed")),
    );
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.writer.close().then(
      () => cb(),
      (err: unknown) => cb(err instanceof Error ? err : new Error("quic stream close failed")),
    );
  }

  override _destroy(err: Error | null, cb: (err: Error | null) => void): void {
    // A clean close (both directions ended) lets QUIC deliver what is still queued and close the
    // stream itself; otherwise the stream is reset.
    const clean = err === null && this.readableEnded && this.writableFinished;
    if (!clean) {
      this.reader.cancel().catch(() => undefined);
      this.writer.abort().catch(() => undefined);
      if (!this.quic.closed) void this.quic.destroy({ force: true }).catch(() => undefined);
    }
    cb(err);
  }
}

/** A QUIC stream as a Node Duplex (see {@link QuicDuplex}). */
export function streamDuplex(s: QUICStream, onData?: () => void): Duplex {
  return new QuicDuplex(s, onData);
}

/** Closes `outer` when `inner` (a TLS socket over it) closes: gracefully after a clean close, at once after an error. */
export function closeWith(inner: Duplex, outer: Duplex): void {
  inner.once("close", () => {
    if (inner.errored === null) outer.end();
    else outer.destroy();
  });
}

/** Encodes one header or answer frame. */
export function encodeHeader(v: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(v), "utf8");
  if (body.length > MAX_HEADER_BYTES) throw new Error(`stream header of ${body.length} bytes exceeds ${MAX_HEADER_BYTES}`);
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  body.copy(out, 4);
  return out;
}

/** Why a header could not be read. */
export class HeaderError extends Error {
  override readonly name = "HeaderError";
}

function readExactly(d: Duplex, n: number, timeoutMs: number): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const done = (err: Error | undefined, b?: Buffer): void => {
      clearTimeout(timer);
      d.off("readable", tryRead);
      d.off("end", onEnd);
      d.off("close", onEnd);
      d.off("error", onError);
      if (err !== undefined) reject(err);
      else resolve(b as Buffer);
    };
    const tryRead = (): void => {
      const b = d.read(n) as Buffer | null;
      if (b === null) return;
      if (b.length < n) done(new HeaderError("stream ended inside a header"));
      else done(undefined, b);
    };
    const onEnd = (): void => done(new HeaderError("stream ended before its header"));
    const onError = (err: Error): void => done(new HeaderError(`stream failed before its header: ${err.message}`));
    const timer = setTimeout(() => done(new HeaderError(`no header within ${timeoutMs} ms`)), timeoutMs);
    d.on("readable", tryRead);
    d.once("end", onEnd);
    d.once("close", onEnd);
    d.once("error", onError);
    tryRead();
  });
}

/** Reads one header frame (JSON, ≤ MAX_HEADER_BYTES, depth ≤ 8); what follows stays in the stream. */
export async function readHeader(d: Duplex, timeoutMs = 10_000): Promise<unknown> {
  const head = await readExactly(d, 4, timeoutMs);
  const len = head.readUInt32BE(0);
  if (len === 0 || len > MAX_HEADER_BYTES) throw new HeaderError(`stream header of ${len} bytes (limit ${MAX_HEADER_BYTES})`);
  const body = await readExactly(d, len, timeoutMs);
  try {
    return parseJsonWithLimits(body, { maxBytes: MAX_HEADER_BYTES, maxDepth: 8 });
  } catch (err) {
    throw new HeaderError(`stream header is not JSON within limits: ${(err as Error).message}`);
  }
}

/** An answer to a header: accepted, or refused with `<Reason>: <detail>`. */
export type StreamAnswer = { ok: true } | { ok: false; error: string };

/** Reads an answer frame; throws with the refusal when the other side refused. */
export async function readAnswer(d: Duplex, what: string, timeoutMs = 10_000): Promise<void> {
  const v = (await readHeader(d, timeoutMs)) as Record<string, unknown> | null;
  if (v !== null && typeof v === "object" && v["ok"] === true) return;
  const error = v !== null && typeof v === "object" && typeof v["error"] === "string" ? v["error"] : "malformed answer";
  throw new StreamRefused(`${what} refused: ${error}`);
}

/** The other side refused a stream (its reason is in the message). */
export class StreamRefused extends Error {
  override readonly name = "StreamRefused";
}

/**
 * Joins two duplexes: bytes flow both ways with backpressure (pipe pauses
 * the source while the destination is full); an end on one side ends the
 * other's writable (half-close travels), and a failure or abort on either
 * side destroys both. `onBytes` is told of every chunk either side
 * received, as it passes (not when the splice closes: a long-lived stream,
 * or one whose ends close in any order, is counted all the same).
 */
export function splice(a: Duplex, b: Duplex, onBytes?: (n: number) => void): void {
  if (onBytes !== undefined) {
    a.on("data", (c: Buffer) => onBytes(c.length));
    b.on("data", (c: Buffer) => onBytes(c.length));
  }
  a.pipe(b);
  b.pipe(a);
  const closeOf = (x: Duplex, y: Duplex) => (): void => {
    if (!x.readableEnded || x.errored !== null) y.destroy();
  };
  a.once("close", closeOf(a, b));
  b.once("close", closeOf(b, a));
  a.on("error", () => b.destroy());
  b.on("error", () => a.destroy());
}

/** The node credentials TLS needs. */
export interface TlsCreds {
  cluster: string;
  keyPem: string;
  certPem: string;
  caPem: string;
}

/** Credentials kept with a built TLS context (an agent has one set; renewals and tests add a few). */
const CONTEXTS_KEPT = 4;

/** TLS contexts and parsed CAs by credentials, oldest first. */
const contexts = new Map<string, { context: tls.SecureContext; ca: X509Certificate }>();

/**
 * One secure context per set of credentials rather than one per stream:
 * building it (parsing the key, certificate and CA) was a third of the CPU
 * of a relayed stream open (profiled, docs/benchmarks.md). Renewed
 * credentials get a new context; the oldest beyond {@link CONTEXTS_KEPT} is
 * dropped.
 */
function contextOf(creds: TlsCreds): { context: tls.SecureContext; ca: X509Certificate } {
  const key = `${creds.keyPem}\n${creds.certPem}\n${creds.caPem}`;
  let entry = contexts.get(key);
  if (entry === undefined) {
    entry = { context: tls.createSecureContext({ key: creds.keyPem, cert: creds.certPem, ca: creds.caPem, minVersion: "TLSv1.3" }), ca: new X509Certificate(creds.caPem) };
    contexts.set(key, entry);
    if (contexts.size > CONTEXTS_KEPT) contexts.delete(contexts.keys().next().value as string);
  }
  return entry;
}

function verifyTlsPeer(sock: tls.TLSSocket, creds: TlsCreds, expected: string, authorised: (n: string) => boolean): PeerIdentity {
  const cert = sock.getPeerX509Certificate();
  return verifyPeerCertificate(cert?.raw, contextOf(creds).ca, creds.cluster, authorised, new Date(), expected);
}

/** TLS client inside a relayed stream: the server must prove it is `target` (cluster CA chain, node name). */
export function tlsToTarget(d: Duplex, creds: TlsCreds, target: string, authorised: (n: string) => boolean, timeoutMs = 10_000): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({
      socket: d,
      secureContext: contextOf(creds).context,
      servername: nodeServerName(creds.cluster, target),
      ALPNProtocols: [RELAYED_ALPN],
      minVersion: "TLSv1.3",
      // Verified below with the mesh's own rules (the same as the QUIC handshake's).
      rejectUnauthorized: false,
    });
    const timer = setTimeout(() => fail(new Error(`end-to-end TLS with node ${target} not done within ${timeoutMs} ms`)), timeoutMs);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      sock.destroy();
      reject(err);
    };
    sock.once("error", fail);
    sock.once("secureConnect", () => {
      clearTimeout(timer);
      sock.off("error", fail);
      try {
        verifyTlsPeer(sock, creds, target, authorised);
      } catch (err) {
        sock.destroy();
        reject(new StreamRefused(`end-to-end authentication of node ${target} failed: ${(err as Error).message}`));
        return;
      }
      sock.on("error", () => undefined);
      resolve(sock);
    });
  });
}

/** TLS server inside a relayed stream: the client must prove it is `source`. */
export function tlsFromSource(d: Duplex, creds: TlsCreds, source: string, authorised: (n: string) => boolean, timeoutMs = 10_000): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const sock = new tls.TLSSocket(d, {
      isServer: true,
      secureContext: contextOf(creds).context,
      requestCert: true,
      rejectUnauthorized: false,
      ALPNProtocols: [RELAYED_ALPN],
      minVersion: "TLSv1.3",
    });
    const timer = setTimeout(() => fail(new Error(`end-to-end TLS with node ${source} not done within ${timeoutMs} ms`)), timeoutMs);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      sock.destroy();
      reject(err);
    };
    sock.once("error", fail);
    sock.once("secure", () => {
      clearTimeout(timer);
      sock.off("error", fail);
      try {
        verifyTlsPeer(sock, creds, source, authorised);
      } catch (err) {
        sock.destroy();
        reject(new StreamRefused(`end-to-end authentication of node ${source} failed: ${(err as Error).message}`));
        return;
      }
      sock.on("error", () => undefined);
      resolve(sock);
    });
  });
}
