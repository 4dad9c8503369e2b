/**
 * A minimal DER reader and writer: just enough ASN.1 to build and parse
 * PKCS#10 requests and X.509 certificates for any key type Node's crypto
 * knows (node-forge only handles RSA keys there). The reader returns exact
 * byte ranges, so signatures are checked over the bytes as received, never
 * over a re-encoding.
 */

/** One TLV element: tag byte, and the content and whole-element ranges in `buf`. */
export interface Tlv {
  tag: number;
  /** The whole element (header + content). */
  raw: Buffer;
  /** The content bytes. */
  content: Buffer;
}

/** Reads the element starting at offset; throws on truncated or indefinite-length input. */
export function readTlv(buf: Buffer, offset = 0): Tlv & { end: number } {
  if (offset + 2 > buf.length) throw new Error("der: truncated element header");
  const tag = buf[offset] ?? 0;
  if ((tag & 0x1f) === 0x1f) throw new Error("der: multi-byte tags are not supported");
  let len = buf[offset + 1] ?? 0;
  let header = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new Error("der: unsupported length encoding");
    if (offset + 2 + n > buf.length) throw new Error("der: truncated length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (buf[offset + 2 + i] ?? 0);
    header += n;
  }
  const start = offset + header;
  const end = start + len;
  if (end > buf.length) throw new Error("der: element longer than its input");
  return { tag, raw: buf.subarray(offset, end), content: buf.subarray(start, end), end };
}

/** The child elements of a constructed element's content. */
export function children(content: Buffer): Tlv[] {
  const out: Tlv[] = [];
  let off = 0;
  while (off < content.length) {
    const t = readTlv(content, off);
    out.push({ tag: t.tag, raw: t.raw, content: t.content });
    off = t.end;
  }
  return out;
}

/** Encodes one element. */
export function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  const n = body.length;
  let header: Buffer;
  if (n < 0x80) header = Buffer.from([tag, n]);
  else {
    const bytes: number[] = [];
    for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
    header = Buffer.from([tag, 0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([header, body]);
}

/** SEQUENCE. */
export const seq = (...c: Buffer[]): Buffer => tlv(0x30, ...c);
/** SET. */
export const set = (...c: Buffer[]): Buffer => tlv(0x31, ...c);
/** Context-specific constructed [n]. */
export const ctx = (n: number, ...c: Buffer[]): Buffer => tlv(0xa0 | n, ...c);
/** NULL. */
export const nullDer = (): Buffer => Buffer.from([0x05, 0x00]);
/** UTF8String. */
export const utf8 = (s: string): Buffer => tlv(0x0c, Buffer.from(s, "utf8"));
/** BOOLEAN. */
export const bool = (v: boolean): Buffer => tlv(0x01, Buffer.from([v ? 0xff : 0x00]));
/** OCTET STRING. */
export const octets = (b: Buffer): Buffer => tlv(0x04, b);
/** BIT STRING with no unused bits. */
export const bits = (b: Buffer): Buffer => tlv(0x03, Buffer.from([0]), b);

/** INTEGER from a small non-negative number. */
export function int(n: number): Buffer {
  const bytes: number[] = [];
  let v = n;
  do {
    bytes.unshift(v & 0xff);
    v = Math.floor(v / 256);
  } while (v > 0);
  if ((bytes[0] ?? 0) & 0x80) bytes.unshift(0);
  return tlv(0x02, Buffer.from(bytes));
}

/** INTEGER from big-endian magnitude bytes (positive). */
export function intBytes(b: Buffer): Buffer {
  return tlv(0x02, (b[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : b);
}

/** OBJECT IDENTIFIER from dotted text. */
export function oid(dotted: string): Buffer {
  const parts = dotted.split(".").map((p) => Number.parseInt(p, 10));
  const [a = 0, b = 0, ...rest] = parts;
  const out: number[] = [a * 40 + b];
  for (const p of rest) {
    const enc: number[] = [p & 0x7f];
    for (let v = Math.floor(p / 128); v > 0; v = Math.floor(v / 128)) enc.unshift((v & 0x7f) | 0x80);
    out.push(...enc);
  }
  return tlv(0x06, Buffer.from(out));
}

/** Dotted text of an OBJECT IDENTIFIER's content. */
export function oidText(content: Buffer): string {
  const first = content[0] ?? 0;
  const out = [Math.floor(first / 40), first % 40];
  let v = 0;
  for (let i = 1; i < content.length; i++) {
    const byte = content[i] ?? 0;
    v = v * 128 + (byte & 0x7f);
    if (!(byte & 0x80)) {
      out.push(v);
      v = 0;
    }
  }
  return out.join(".");
}

/** UTCTime before 2050, GeneralizedTime after (RFC 5280 4.1.2.5). */
export function time(d: Date): Buffer {
  const iso = d.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const compact = iso.slice(0, 19).replace(/[-:T]/g, "") + "Z"; // YYYYMMDDHHMMSSZ
  return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(compact.slice(2), "ascii")) : tlv(0x18, Buffer.from(compact, "ascii"));
}
