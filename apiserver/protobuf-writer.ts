/**
 * Protobuf wire-format writing, shared by the Kubernetes protobuf codec
 * (kube-protobuf.ts) and the OpenAPI v2 document encoder
 * (openapi-v2-proto.ts). It knows tags, varints, doubles and
 * length-delimited fields, nothing of schemas: each encoder decides which
 * fields to write, and in which order, to match what Go's encoder writes.
 */

/** Protobuf wire types this writer writes: varint, 64-bit, length-delimited. */
export type WireType = 0 | 1 | 2;

/** A message under construction: fields are appended in call order, then {@link finish} joins them. */
export class ProtobufWriter {
  private readonly chunks: Uint8Array[] = [];
  private size = 0;

  private push(bytes: Uint8Array): void {
    this.chunks.push(bytes);
    this.size += bytes.length;
  }

  /**
   * A base-128 varint of `v` taken as 64 bits, two's complement (a negative
   * int64 takes ten bytes); bits above the 64th are dropped, as in Go's
   * int64 and uint64.
   */
  varint(v: bigint): void {
    let n = BigInt.asUintN(64, v);
    const out: number[] = [];
    while (n > 0x7fn) {
      out.push(Number(n & 0x7fn) | 0x80);
      n >>= 7n;
    }
    out.push(Number(n));
    this.push(Uint8Array.from(out));
  }

  /** A field key: field number and wire type. */
  tag(no: number, wire: WireType): void {
    this.varint(BigInt((no << 3) | wire));
  }

  /** A varint field (int32, int64, uint64, bool). */
  varintField(no: number, v: bigint): void {
    this.tag(no, 0);
    this.varint(v);
  }

  /** A double field: eight bytes, little-endian IEEE 754. */
  doubleField(no: number, v: number): void {
    this.tag(no, 1);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, true);
    this.push(b);
  }

  /** A length-delimited field (string, bytes, embedded message, map entry). */
  bytesField(no: number, bytes: Uint8Array): void {
    this.tag(no, 2);
    this.varint(BigInt(bytes.length));
    this.push(bytes);
  }

  /** The message's bytes. */
  finish(): Uint8Array {
    const out = new Uint8Array(this.size);
    let off = 0;
    for (const c of this.chunks) {
      out.set(c, off);
      off += c.length;
    }
    return out;
  }
}
