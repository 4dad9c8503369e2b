/**
 * The subset of kubectl's JSONPath (k8s.io/client-go/util/jsonpath) that
 * printer columns use: `.a.b`, `['a.b']`, `[0]`, `[-1]`, `[1:3]`, `[*]`,
 * `.*`, `..name`, and filters such as `[?(@.type=="Ready")]`. The path may be
 * wrapped in `{}` and may start with `$`. Missing keys yield no result
 * rather than an error, as the CRD table convertor allows.
 */

/** A malformed JSONPath expression. */
export class JsonPathError extends Error {
  override readonly name = "JsonPathError";
}

type Literal = string | number | boolean | null;

type Operand = { kind: "path"; steps: Step[] } | { kind: "literal"; value: Literal };

type Filter =
  | { kind: "exists"; operand: Operand }
  | { kind: "compare"; op: "==" | "!=" | "<" | "<=" | ">" | ">="; left: Operand; right: Operand };

type Step =
  | { kind: "field"; name: string }
  | { kind: "wildcard" }
  | { kind: "recursive"; name: string | undefined }
  | { kind: "index"; index: number }
  | { kind: "slice"; start: number | undefined; end: number | undefined; step: number | undefined }
  | { kind: "filter"; filter: Filter };

class Parser {
  private pos = 0;
  constructor(private readonly src: string) {}

  private fail(msg: string): never {
    throw new JsonPathError(`invalid jsonpath ${JSON.stringify(this.src)} at ${this.pos}: ${msg}`);
  }

  private peek(offset = 0): string {
    return this.src[this.pos + offset] ?? "";
  }

  private skipSpace(): void {
    while (/\s/.test(this.peek()) && this.pos < this.src.length) this.pos++;
  }

  atEnd(): boolean {
    return this.pos >= this.src.length;
  }

  /** Parses steps until end of input or a character in `stop`. */
  parseSteps(stop: string): Step[] {
    const steps: Step[] = [];
    if (this.peek() === "$" || this.peek() === "@") this.pos++;
    for (;;) {
      const c = this.peek();
      if (c === "" || stop.includes(c)) return steps;
      if (c === ".") {
        if (this.peek(1) === ".") {
          this.pos += 2;
          const name = this.readName();
          steps.push({ kind: "recursive", name: name === "" || name === "*" ? undefined : name });
          continue;
        }
        this.pos++;
        if (this.peek() === "*") {
          this.pos++;
          steps.push({ kind: "wildcard" });
          continue;
        }
        const name = this.readName();
        if (name === "") {
          // A bare "." (or a trailing one) selects the current object.
          continue;
        }
        steps.push({ kind: "field", name });
        continue;
      }
      if (c === "[") {
        steps.push(this.parseBracket());
        continue;
      }
      // A leading name without a dot, e.g. `metadata.name`.
      if (steps.length === 0 && /[A-Za-z0-9_-]/.test(c)) {
        steps.push({ kind: "field", name: this.readName() });
        continue;
      }
      this.fail(`unexpected ${JSON.stringify(c)}`);
    }
  }

  private readName(): string {
    const start = this.pos;
    while (this.pos < this.src.length && /[^.[\]{}()\s=!<>,'"@$*]/.test(this.peek())) this.pos++;
    return this.src.slice(start, this.pos);
  }

  private readQuoted(): string {
    const quote = this.peek();
    this.pos++;
    let out = "";
    while (this.pos < this.src.length && this.peek() !== quote) {
      if (this.peek() === "\\" && this.pos + 1 < this.src.length) {
        this.pos++;
        const e = this.peek();
        out += e === "n" ? "\n" : e === "t" ? "\t" : e;
      } else {
        out += this.peek();
      }
      this.pos++;
    }
    if (this.peek() !== quote) this.fail("unterminated string");
    this.pos++;
    return out;
  }

  private parseBracket(): Step {
    this.pos++; // [
    this.skipSpace();
    const c = this.peek();
    let step: Step;
    if (c === "?") {
      this.pos++;
      this.skipSpace();
      if (this.peek() !== "(") this.fail("expected '(' after '?'");
      this.pos++;
      step = { kind: "filter", filter: this.parseFilter() };
      this.skipSpace();
      if (this.peek() !== ")") this.fail("expected ')' closing the filter");
      this.pos++;
    } else if (c === "'" || c === '"') {
      step = { kind: "field", name: this.readQuoted() };
    } else if (c === "*") {
      this.pos++;
      step = { kind: "wildcard" };
    } else {
      const start = this.pos;
      while (this.pos < this.src.length && this.peek() !== "]") this.pos++;
      const body = this.src.slice(start, this.pos).trim();
      if (/^-?\d+$/.test(body)) {
        step = { kind: "index", index: Number(body) };
      } else if (/^(-?\d+)?:(-?\d+)?(:(-?\d+)?)?$/.test(body)) {
        const [a, b, s] = body.split(":");
        const num = (x: string | undefined): number | undefined =>
          x === undefined || x === "" ? undefined : Number(x);
        step = { kind: "slice", start: num(a), end: num(b), step: num(s) };
      } else {
        this.fail(`unsupported array index ${JSON.stringify(body)}`);
      }
    }
    this.skipSpace();
    if (this.peek() !== "]") this.fail("expected ']'");
    this.pos++;
    return step;
  }

  private parseOperand(): Operand {
    this.skipSpace();
    const c = this.peek();
    if (c === "@" || c === "$" || c === ".") {
      return { kind: "path", steps: this.parseSteps(")=!<> \t") };
    }
    if (c === "'" || c === '"') return { kind: "literal", value: this.readQuoted() };
    const m = /^(-?\d+(\.\d+)?([eE][-+]?\d+)?|true|false|null)/.exec(this.src.slice(this.pos));
    if (m === null) this.fail("expected a path or a literal in the filter");
    this.pos += m[0].length;
    const text = m[0];
    const value: Literal = text === "true" ? true : text === "false" ? false : text === "null" ? null : Number(text);
    return { kind: "literal", value };
  }

  private parseFilter(): Filter {
    const left = this.parseOperand();
    this.skipSpace();
    const op = /^(==|!=|<=|>=|<|>)/.exec(this.src.slice(this.pos));
    if (op === null) return { kind: "exists", operand: left };
    this.pos += op[0].length;
    const right = this.parseOperand();
    return { kind: "compare", op: op[0] as "==" | "!=" | "<" | "<=" | ">" | ">=", left, right };
  }
}

/** A compiled JSONPath; compile once per printer column, evaluate per row. */
export interface CompiledJsonPath {
  readonly source: string;
  evaluate(obj: unknown): unknown[];
}

function unwrap(path: string): string {
  const t = path.trim();
  if (t.startsWith("{") && t.endsWith("}")) return t.slice(1, -1).trim();
  return t;
}

/**
 * Parses `path` (with or without `{}`).
 * @throws JsonPathError on syntax kubectl would also reject, or on syntax
 * outside the supported subset (ranges, unions, functions).
 */
export function compileJsonPath(path: string): CompiledJsonPath {
  const body = unwrap(path);
  const parser = new Parser(body);
  const steps = parser.parseSteps("");
  if (!parser.atEnd()) throw new JsonPathError(`invalid jsonpath ${JSON.stringify(path)}: trailing input`);
  return { source: path, evaluate: (obj) => applySteps([obj], steps) };
}

/** Evaluates `path` against `obj`; every matched value, in document order. */
export function evalJsonPath(path: string, obj: unknown): unknown[] {
  return compileJsonPath(path).evaluate(obj);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function children(v: unknown): unknown[] {
  if (Array.isArray(v)) return v;
  if (isRecord(v)) return Object.keys(v).sort().map((k) => v[k]);
  return [];
}

function recurse(v: unknown, name: string | undefined, out: unknown[]): void {
  if (name === undefined) {
    for (const c of children(v)) {
      out.push(c);
      recurse(c, name, out);
    }
    return;
  }
  if (isRecord(v) && Object.prototype.hasOwnProperty.call(v, name)) out.push(v[name]);
  for (const c of children(v)) recurse(c, name, out);
}

function applyStep(values: unknown[], step: Step): unknown[] {
  const out: unknown[] = [];
  for (const v of values) {
    switch (step.kind) {
      case "field":
        if (isRecord(v) && Object.prototype.hasOwnProperty.call(v, step.name)) out.push(v[step.name]);
        break;
      case "wildcard":
        out.push(...children(v));
        break;
      case "recursive":
        recurse(v, step.name, out);
        break;
      case "index":
        if (Array.isArray(v)) {
          const i = step.index < 0 ? v.length + step.index : step.index;
          if (i >= 0 && i < v.length) out.push(v[i]);
        }
        break;
      case "slice":
        if (Array.isArray(v)) {
          const len = v.length;
          const norm = (x: number): number => Math.min(len, Math.max(0, x < 0 ? len + x : x));
          const start = norm(step.start ?? 0);
          const end = norm(step.end ?? len);
          const inc = step.step ?? 1;
          if (inc > 0) for (let i = start; i < end; i += inc) out.push(v[i]);
        }
        break;
      case "filter":
        if (Array.isArray(v)) {
          for (const item of v) if (testFilter(step.filter, item)) out.push(item);
        } else if (isRecord(v) && testFilter(step.filter, v)) {
          out.push(v);
        }
        break;
    }
  }
  return out;
}

function applySteps(values: unknown[], steps: readonly Step[]): unknown[] {
  let cur = values;
  for (const s of steps) cur = applyStep(cur, s);
  return cur;
}

function operandValues(op: Operand, item: unknown): unknown[] {
  return op.kind === "literal" ? [op.value] : applySteps([item], op.steps);
}

function compare(op: "==" | "!=" | "<" | "<=" | ">" | ">=", a: unknown, b: unknown): boolean {
  switch (op) {
    case "==":
      return a === b;
    case "!=":
      return a !== b;
    default: {
      if (!((typeof a === "number" && typeof b === "number") || (typeof a === "string" && typeof b === "string"))) {
        return false;
      }
      if (op === "<") return a < b;
      if (op === "<=") return a <= b;
      if (op === ">") return a > b;
      return a >= b;
    }
  }
}

function testFilter(f: Filter, item: unknown): boolean {
  if (f.kind === "exists") {
    return operandValues(f.operand, item).some((v) => v !== null && v !== undefined);
  }
  const left = operandValues(f.left, item);
  const right = operandValues(f.right, item);
  return left.some((l) => right.some((r) => compare(f.op, l, r)));
}

/**
 * Formats one JSONPath result as kubectl's PrintResults does: strings as
 * they are, maps and lists as compact JSON with sorted keys, null as "".
 */
export function formatJsonPathValue(v: unknown): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") return String(v);
  return JSON.stringify(sortKeys(v));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (isRecord(v)) {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) out[k] = sortKeys(v[k]);
    return out;
  }
  return v;
}
