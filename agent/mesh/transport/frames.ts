/**
 * The wire format of a mesh link: length-prefixed JSON frames on one QUIC
 * stream. A frame is a 4-byte big-endian length followed by that many bytes
 * of UTF-8 JSON. The length is checked before a byte of the body is kept,
 * and the body goes through lib/json-limits.ts (size, nesting depth, UTF-8),
 * so a hostile peer costs at most one frame's worth of memory and gets a
 * typed refusal, never a crash of the agent.
 */
import { JsonLimitError, parseJsonWithLimits } from "../../../lib/json-limits.js";

/** Limits on inbound frames. */
export interface FrameLimits {
  /** Largest accepted body, bytes. */
  maxFrameBytes: number;
  /** Deepest accepted JSON nesting (see lib/json-limits.ts). */
  maxDepth: number;
}

/** Defaults: control traffic is small; bulk bytes go over HTTPS (docs/mesh.md). */
export const DEFAULT_FRAME_LIMITS: FrameLimits = { maxFrameBytes: 256 * 1024, maxDepth: 32 };

/** Largest RTT sample a ping may carry, ms (a longer round trip is no link). */
export const MAX_CARRIED_RTT_MS = 600_000;

/**
 * A frame on a link. `req`/`res` carry an id; `msg` is one-way; `ping`/`pong`
 * are probes. A ping may carry the sender's own last RTT sample `r` (ms) and
 * its measured loss `l` (0..1), so the answering side learns the link's
 * figures without a probe of its own (docs/mesh.md, "Probes").
 */
export type Frame =
  | { t: "req"; id: number; m: string; p: unknown }
  | { t: "res"; id: number; ok: true; p: unknown }
  | { t: "res"; id: number; ok: false; e: string }
  | { t: "msg"; m: string; p: unknown }
  | { t: "ping"; id: number; r?: number; l?: number }
  | { t: "pong"; id: number };

/** Why an inbound frame was refused. */
export class FrameError extends Error {
  override readonly name = "FrameError";
  constructor(
    readonly code: "TooLarge" | "TooDeep" | "NotJson" | "NotUtf8" | "BadFrame",
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Encodes a frame: 4-byte big-endian length, then the JSON body. */
export function encodeFrame(frame: Frame): Uint8Array {
  const body = Buffer.from(JSON.stringify(frame), "utf8");
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  body.copy(out, 4);
  return out;
}

function isInt(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** Checks the shape of a parsed frame; throws {@link FrameError} `BadFrame`. */
export function toFrame(v: unknown): Frame {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new FrameError("BadFrame", "frame is not an object");
  const o = v as Record<string, unknown>;
  switch (o["t"]) {
    case "req":
      if (isInt(o["id"]) && typeof o["m"] === "string") return { t: "req", id: o["id"], m: o["m"], p: o["p"] };
      break;
    case "res":
      if (isInt(o["id"]) && o["ok"] === true) return { t: "res", id: o["id"], ok: true, p: o["p"] };
      if (isInt(o["id"]) && o["ok"] === false && typeof o["e"] === "string") return { t: "res", id: o["id"], ok: false, e: o["e"] };
      break;
    case "msg":
      if (typeof o["m"] === "string") return { t: "msg", m: o["m"], p: o["p"] };
      break;
    case "ping": {
      if (!isInt(o["id"])) break;
      const r = o["r"];
      const l = o["l"];
      if (r === undefined && l === undefined) return { t: "ping", id: o["id"] };
      // The figures come as a pair, within range: anything else is a broken or hostile peer.
      if (typeof r === "number" && r >= 0 && r <= MAX_CARRIED_RTT_MS && typeof l === "number" && l >= 0 && l <= 1) return { t: "ping", id: o["id"], r, l };
      break;
    }
    case "pong":
      if (isInt(o["id"])) return { t: "pong", id: o["id"] };
      break;
  }
  throw new FrameError("BadFrame", "frame has an unknown type or missing fields");
}

/**
 * Splits a byte stream into frames. Feed it chunks as they arrive; it returns
 * the complete frames and keeps the remainder. A declared length above the
 * limit throws before the body is buffered; after a throw the decoder is
 * unusable (the caller closes the stream). Chunks of a frame still arriving
 * are kept as a list and joined once the frame is complete, so a large frame
 * costs one copy, not one per chunk; the chunks are not copied on arrival
 * (the caller must not reuse a chunk's memory after pushing it).
 */
export class FrameDecoder {
  private chunks: Uint8Array[] = [];
  private size = 0;
  /** Bytes needed before a frame can complete: the header, then header and body. */
  private need = 4;
  constructor(private readonly limits: FrameLimits = DEFAULT_FRAME_LIMITS) {}

  /** Appends a chunk; returns the frames it completed, in order. */
  push(chunk: Uint8Array): Frame[] {
    this.chunks.push(chunk);
    this.size += chunk.length;
    if (this.size < this.need) return [];
    let buf = this.chunks.length === 1 ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength) : Buffer.concat(this.chunks, this.size);
    const frames: Frame[] = [];
    this.need = 4;
    while (buf.length >= 4) {
      const len = buf.readUInt32BE(0);
      if (len > this.limits.maxFrameBytes) throw new FrameError("TooLarge", `frame of ${len} bytes exceeds ${this.limits.maxFrameBytes}`);
      if (buf.length < 4 + len) {
        this.need = 4 + len;
        break;
      }
      const body = buf.subarray(4, 4 + len);
      buf = buf.subarray(4 + len);
      let parsed: unknown;
      try {
        parsed = parseJsonWithLimits(body, { maxBytes: this.limits.maxFrameBytes, maxDepth: this.limits.maxDepth });
      } catch (err) {
        if (err instanceof JsonLimitError) {
          const code = err.code === "TooDeep" || err.code === "TooLarge" || err.code === "NotUtf8" ? err.code : "NotJson";
          throw new FrameError(code, `frame refused: ${err.reason}`, { cause: err });
        }
        throw err;
      }
      frames.push(toFrame(parsed));
    }
    this.chunks = buf.length === 0 ? [] : [buf];
    this.size = buf.length;
    return frames;
  }
}
