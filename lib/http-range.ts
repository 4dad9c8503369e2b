/**
 * The one `Range: bytes=` form the artifact servers honour (the agent API's
 * version store and update-cache nodes): a single range `start-end`,
 * `start-` or `-suffix`, at most 16 digits each. Several ranges, other units
 * or anything else are malformed (400); a range outside the length is
 * unsatisfiable (416).
 */
export type ByteRange = { start: number; end: number };

/** Parses `header` against `length`: undefined when absent, "malformed", "unsatisfiable" or the inclusive range. */
export function parseByteRange(header: string | undefined, length: number): ByteRange | "malformed" | "unsatisfiable" | undefined {
  if (header === undefined || header === "") return undefined;
  if (header.length > 64) return "malformed";
  const m = /^bytes=(\d{0,16})-(\d{0,16})$/.exec(header.trim());
  if (!m || (m[1] === "" && m[2] === "")) return "malformed";
  if (m[1] === "") {
    const suffix = Number(m[2]);
    if (suffix === 0 || length === 0) return "unsatisfiable";
    return { start: Math.max(0, length - suffix), end: length - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === "" ? length - 1 : Math.min(Number(m[2]), length - 1);
  if (start >= length || end < start) return "unsatisfiable";
  return { start, end };
}
