/**
 * Limits on JSON read from the network: the signed snapshots an agent
 * receives and the request bodies the agent API reads.
 *
 * Why a limit on nesting, and not only on size. `JSON.parse` in V8 is
 * iterative, so it takes any depth; but almost everything that walks the
 * parsed value afterwards recurses (a canonicaliser, `JSON.stringify`,
 * PostgreSQL's jsonb input). A few kilobytes of `[[[[...]]]]` then end in a
 * stack overflow: a RangeError where a typed refusal was promised, or a
 * database error that fails a whole batch of other nodes' rows. The depth is
 * therefore checked on the raw text, before the parse, by a scan that keeps
 * no stack of its own (it counts brackets outside strings), so the check
 * itself cannot overflow and costs one pass over the bytes.
 *
 * Depth counts the containers around the deepest value: `1` and `"s"` are 0,
 * `[]` and `{}` are 1, `{"a":[1]}` is 2. Brackets inside strings do not count.
 *
 * Strings. PostgreSQL's jsonb cannot hold U+0000 nor an unpaired UTF-16
 * surrogate (JSON allows both as `\u0000` and `\ud800`), so a body that is
 * stored as jsonb must refuse them up front, or it fails later in SQL, as a
 * 500 or inside a batch. `wellFormedStrings` asks for that check (member
 * names and values, walked with an explicit stack).
 *
 * Invalid UTF-8 is refused (a fatal decoder), never replaced by U+FFFD, so
 * what is checked is exactly what was sent.
 */

/** Why a JSON text was refused. PascalCase so it can be reported as a reason. */
export type JsonLimitCode = "TooLarge" | "NotUtf8" | "TooDeep" | "NotJson" | "NulCharacter" | "LoneSurrogate";

/** A JSON text refused by {@link parseJsonWithLimits}; the message never quotes the input. */
export class JsonLimitError extends Error {
  override readonly name = "JsonLimitError";
  constructor(
    readonly code: JsonLimitCode,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(reason, options);
  }
}

/** What {@link parseJsonWithLimits} enforces. */
export interface JsonLimits {
  /** Largest accepted UTF-8 size in bytes. */
  maxBytes: number;
  /** Deepest accepted nesting of arrays and objects (see the module comment). */
  maxDepth: number;
  /** Refuse U+0000 and lone surrogates in member names and string values (for text stored as jsonb). */
  wellFormedStrings?: boolean;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;

/**
 * Nesting depth of a JSON text, counted on the raw characters outside
 * strings; stops scanning (and returns `stopAbove + 1`) as soon as the depth
 * exceeds `stopAbove`. Exact for valid JSON; for invalid JSON the number
 * means little, and the parse that follows refuses the text anyway. Never
 * throws and uses constant stack.
 */
export function jsonNestingDepth(text: string, stopAbove = Number.POSITIVE_INFINITY): number {
  let depth = 0;
  let max = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      // Jump to the closing quote: the next '"' preceded by an even number of backslashes.
      for (;;) {
        const q = text.indexOf('"', i + 1);
        if (q === -1) return max;
        let slashes = 0;
        for (let j = q - 1; j > i && text.charCodeAt(j) === BACKSLASH; j--) slashes++;
        i = q;
        if (slashes % 2 === 0) break;
      }
    } else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      depth++;
      if (depth > max) {
        max = depth;
        if (max > stopAbove) return max;
      }
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) {
      depth--;
    }
  }
  return max;
}

// String.prototype.isWellFormed is in Node 20 (V8 11.3) but not in the ES2022 lib types.
const isWellFormed = (String.prototype as unknown as { isWellFormed: (this: string) => boolean }).isWellFormed;

function checkString(s: string): void {
  if (s.includes("\u0000")) throw new JsonLimitError("NulCharacter", "a string holds U+0000");
  if (!isWellFormed.call(s)) throw new JsonLimitError("LoneSurrogate", "a string holds a lone surrogate");
}

/**
 * Throws JsonLimitError (NulCharacter, LoneSurrogate) when a member name or a
 * string value anywhere in `value` holds U+0000 or a lone surrogate. Walks
 * with an explicit stack, so any depth is safe.
 */
export function assertWellFormedStrings(value: unknown): void {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === "string") checkString(v);
    else if (Array.isArray(v)) for (const x of v) stack.push(x);
    else if (typeof v === "object" && v !== null) {
      for (const [k, x] of Object.entries(v)) {
        checkString(k);
        stack.push(x);
      }
    }
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Parses JSON read from the network within `limits`, in this order: size
 * (before decoding), strict UTF-8, nesting depth (on the raw text, before the
 * parse), JSON syntax, then the strings if `wellFormedStrings`. Throws only
 * JsonLimitError, whose code says which check failed.
 */
export function parseJsonWithLimits(input: Uint8Array | string, limits: JsonLimits): unknown {
  const size = typeof input === "string" ? Buffer.byteLength(input, "utf8") : input.byteLength;
  if (size > limits.maxBytes) throw new JsonLimitError("TooLarge", `${size} bytes exceeds the limit of ${limits.maxBytes}`);
  let text: string;
  if (typeof input === "string") {
    text = input;
  } else {
    try {
      text = utf8.decode(input);
    } catch (cause) {
      throw new JsonLimitError("NotUtf8", "not UTF-8", { cause });
    }
  }
  const depth = jsonNestingDepth(text, limits.maxDepth);
  if (depth > limits.maxDepth) throw new JsonLimitError("TooDeep", `nested deeper than ${limits.maxDepth} levels`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new JsonLimitError("NotJson", "not JSON", { cause });
  }
  if (limits.wellFormedStrings === true) assertWellFormedStrings(value);
  return value;
}
