/**
 * Label and field selectors with kube-apiserver's syntax and semantics
 * (k8s.io/apimachinery/pkg/labels and pkg/fields). Pure: parsing and
 * matching only. The API server filters lists and watches with them and turns
 * a {@link SelectorError} into a 400; the controllers match the
 * metav1.LabelSelectors of role assignments and service workloads against
 * node labels with the same code, so both sides agree on what a selector
 * selects.
 */

/** A malformed selector; its message is safe to show to clients. */
export class SelectorError extends Error {
  override readonly name = "SelectorError";
}

/**
 * Operators of a label requirement. `==` parses to `=`; `!` is
 * DoesNotExist; `gt`/`lt` compare integer label values.
 */
export type LabelOperator = "=" | "!=" | "in" | "notin" | "exists" | "!" | "gt" | "lt";

/** One requirement of a label selector, e.g. `tier in (a,b)`. */
export interface LabelRequirement {
  readonly key: string;
  readonly operator: LabelOperator;
  /** Empty for `exists` and `!`; exactly one value for `=`, `!=`, `gt`, `lt`. */
  readonly values: readonly string[];
}

/**
 * A parsed label selector: all requirements must hold (AND). With no
 * requirements it matches everything, unless `nothing` is set (a nil
 * metav1.LabelSelector, which kube treats as matching no object).
 */
export interface LabelSelector {
  readonly requirements: readonly LabelRequirement[];
  readonly nothing?: boolean;
}

/** A selector matching every object. */
export const everything: LabelSelector = { requirements: [] };

const qualifiedNamePart = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const dnsSubdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Returns why `key` is not a valid label key, or undefined when it is. */
export function labelKeyError(key: string): string | undefined {
  const slash = key.indexOf("/");
  let name = key;
  if (slash >= 0) {
    const prefix = key.slice(0, slash);
    name = key.slice(slash + 1);
    if (prefix.length === 0) return "prefix part must be non-empty";
    if (prefix.length > 253 || !dnsSubdomain.test(prefix)) {
      return "prefix part must be a lowercase RFC 1123 subdomain of at most 253 characters";
    }
  }
  if (name.length === 0) return "name part must be non-empty";
  if (name.length > 63) return "name part must be no more than 63 characters";
  if (!qualifiedNamePart.test(name)) {
    return "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
  }
  return undefined;
}

/** Returns why `value` is not a valid label value, or undefined when it is. */
export function labelValueError(value: string): string | undefined {
  if (value.length === 0) return undefined;
  if (value.length > 63) return "must be no more than 63 characters";
  if (!qualifiedNamePart.test(value)) {
    return "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
  }
  return undefined;
}

function requirement(key: string, operator: LabelOperator, values: readonly string[]): LabelRequirement {
  const keyErr = labelKeyError(key);
  if (keyErr !== undefined) throw new SelectorError(`invalid label key "${key}": ${keyErr}`);
  switch (operator) {
    case "in":
    case "notin":
      if (values.length === 0) {
        throw new SelectorError("for 'in', 'notin' operators, values set can't be empty");
      }
      break;
    case "=":
    case "!=":
      if (values.length !== 1) {
        throw new SelectorError("exact-match compatibility requires one single value");
      }
      break;
    case "exists":
    case "!":
      if (values.length !== 0) {
        throw new SelectorError("values set must be empty for exists and does not exist");
      }
      break;
    case "gt":
    case "lt":
      if (values.length !== 1 || !/^-?[0-9]+$/.test(values[0] ?? "")) {
        throw new SelectorError("for 'Gt', 'Lt' operators, exactly one integer value is required");
      }
      return { key, operator, values };
  }
  for (const v of values) {
    const valueErr = labelValueError(v);
    if (valueErr !== undefined) throw new SelectorError(`invalid label value: "${v}": ${valueErr}`);
  }
  return { key, operator, values: [...new Set(values)] };
}

type TokenKind =
  | "ident"
  | "in"
  | "notin"
  | "!"
  | "!="
  | "="
  | "=="
  | ">"
  | "<"
  | "("
  | ")"
  | ","
  | "end";

interface Token {
  readonly kind: TokenKind;
  readonly text: string;
}

const specialChars = new Set(["!", "=", ">", "<", "(", ")", ","]);

function lexLabelSelector(s: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < s.length) {
    const c = s[i] ?? "";
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (specialChars.has(c)) {
      const two = s.slice(i, i + 2);
      if (two === "!=" || two === "==") {
        tokens.push({ kind: two, text: two });
        i += 2;
        continue;
      }
      tokens.push({ kind: c as TokenKind, text: c });
      i++;
      continue;
    }
    let j = i;
    while (j < s.length && !specialChars.has(s[j] ?? "") && !/\s/.test(s[j] ?? "")) j++;
    const word = s.slice(i, j);
    const kind: TokenKind = word === "in" ? "in" : word === "notin" ? "notin" : "ident";
    tokens.push({ kind, text: word });
    i = j;
  }
  tokens.push({ kind: "end", text: "" });
  return tokens;
}

function describe(t: Token): string {
  return t.kind === "end" ? "end of string" : `'${t.text}'`;
}

/**
 * Parses a label selector in kube's string syntax: comma-separated
 * requirements `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a)`, `k`,
 * `!k`, `k>1`, `k<1`. An empty or blank string selects everything.
 * @throws SelectorError on any syntax or validation error.
 */
export function parseLabelSelector(s: string): LabelSelector {
  const tokens = lexLabelSelector(s);
  let pos = 0;
  const peek = (): Token => tokens[pos] ?? { kind: "end", text: "" };
  const next = (): Token => {
    const t = peek();
    if (pos < tokens.length - 1) pos++;
    return t;
  };
  const fail = (found: Token, expected: string): never => {
    throw new SelectorError(`unable to parse requirement: found ${describe(found)}, expected: ${expected}`);
  };

  const requirements: LabelRequirement[] = [];
  if (peek().kind === "end") return { requirements };
  for (;;) {
    let negated = false;
    if (peek().kind === "!") {
      next();
      negated = true;
    }
    const keyTok = next();
    if (keyTok.kind !== "ident") fail(keyTok, "identifier");
    const key = keyTok.text;
    const after = peek();
    if (after.kind === "end" || after.kind === ",") {
      requirements.push(requirement(key, negated ? "!" : "exists", []));
    } else if (negated) {
      fail(after, "',' or 'end of string'");
    } else {
      const opTok = next();
      let operator: LabelOperator;
      switch (opTok.kind) {
        case "=":
        case "==":
          operator = "=";
          break;
        case "!=":
          operator = "!=";
          break;
        case "in":
          operator = "in";
          break;
        case "notin":
          operator = "notin";
          break;
        case ">":
          operator = "gt";
          break;
        case "<":
          operator = "lt";
          break;
        default:
          return fail(opTok, "'=', '!=', '==', 'in', 'notin', '>', '<'");
      }
      let values: string[];
      if (operator === "in" || operator === "notin") {
        const open = next();
        if (open.kind !== "(") fail(open, "'('");
        values = [];
        for (;;) {
          const t = peek();
          if (t.kind === ")") {
            // As in kube, `()` and a trailing `,)` carry an empty value.
            const prev = tokens[pos - 1]?.kind;
            if (prev === "(" || prev === ",") values.push("");
            next();
            break;
          }
          if (t.kind === "ident" || t.kind === "in" || t.kind === "notin") {
            values.push(t.text);
            next();
            const sep = next();
            if (sep.kind === ")") break;
            if (sep.kind !== ",") fail(sep, "',' or ')'");
            continue;
          }
          if (t.kind === ",") {
            values.push("");
            next();
            continue;
          }
          fail(t, "',', ')' or identifier");
        }
      } else {
        const v = peek();
        if (v.kind === "end" || v.kind === ",") {
          values = [""];
        } else if (v.kind === "ident" || v.kind === "in" || v.kind === "notin") {
          values = [v.text];
          next();
        } else {
          return fail(v, "identifier");
        }
      }
      requirements.push(requirement(key, operator, values));
    }
    const sep = next();
    if (sep.kind === "end") break;
    if (sep.kind !== ",") fail(sep, "',' or 'end of string'");
    const start = peek();
    if (start.kind !== "ident" && start.kind !== "!") fail(start, "identifier or '!'");
  }
  return { requirements };
}

/** True when `labels` satisfy every requirement of `sel`. */
export function matchesLabels(sel: LabelSelector, labels: Record<string, string> | undefined): boolean {
  if (sel.nothing === true) return false;
  const l = labels ?? {};
  for (const r of sel.requirements) {
    const has = Object.prototype.hasOwnProperty.call(l, r.key);
    const value = has ? l[r.key] : undefined;
    switch (r.operator) {
      case "=":
      case "in":
        if (value === undefined || !r.values.includes(value)) return false;
        break;
      case "!=":
      case "notin":
        if (value !== undefined && r.values.includes(value)) return false;
        break;
      case "exists":
        if (!has) return false;
        break;
      case "!":
        if (has) return false;
        break;
      case "gt":
      case "lt": {
        if (value === undefined || !/^-?[0-9]+$/.test(value)) return false;
        const actual = BigInt(value);
        const bound = BigInt(r.values[0] ?? "0");
        if (r.operator === "gt" ? !(actual > bound) : !(actual < bound)) return false;
        break;
      }
    }
  }
  return true;
}

/** The metav1.LabelSelector wire shape. */
export interface Metav1LabelSelector {
  matchLabels?: Record<string, string> | null;
  matchExpressions?:
    | Array<{ key: string; operator: string; values?: string[] | null }>
    | null;
}

/**
 * Converts a metav1.LabelSelector as in kube's LabelSelectorAsSelector:
 * null/undefined matches nothing, `{}` matches everything.
 * @throws SelectorError on an unknown operator or invalid key/values.
 */
export function labelSelectorFromMetav1(sel: Metav1LabelSelector | null | undefined): LabelSelector {
  if (sel === null || sel === undefined) return { requirements: [], nothing: true };
  const requirements: LabelRequirement[] = [];
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) {
    requirements.push(requirement(k, "=", [v]));
  }
  for (const expr of sel.matchExpressions ?? []) {
    const values = expr.values ?? [];
    switch (expr.operator) {
      case "In":
        requirements.push(requirement(expr.key, "in", values));
        break;
      case "NotIn":
        requirements.push(requirement(expr.key, "notin", values));
        break;
      case "Exists":
        requirements.push(requirement(expr.key, "exists", values));
        break;
      case "DoesNotExist":
        requirements.push(requirement(expr.key, "!", values));
        break;
      default:
        throw new SelectorError(`"${expr.operator}" is not a valid label selector operator`);
    }
  }
  return { requirements };
}

/**
 * The `key=value` requirements of `sel`, for pre-filtering rows with a
 * jsonb containment query; matching in JS still decides. A key required
 * twice keeps its first value (such a selector matches nothing anyway).
 */
export function equalityLabelRequirements(sel: LabelSelector): Record<string, string> {
  const out: Record<string, string> = {};
  for (const r of sel.requirements) {
    const v = r.values[0];
    if (r.operator === "=" && v !== undefined && !Object.prototype.hasOwnProperty.call(out, r.key)) {
      out[r.key] = v;
    }
  }
  return out;
}

/** Renders `sel` back to kube's string syntax. */
export function labelSelectorToString(sel: LabelSelector): string {
  return sel.requirements
    .map((r) => {
      switch (r.operator) {
        case "=":
        case "!=":
          return `${r.key}${r.operator}${r.values[0] ?? ""}`;
        case "in":
        case "notin":
          return `${r.key} ${r.operator} (${r.values.join(",")})`;
        case "exists":
          return r.key;
        case "!":
          return `!${r.key}`;
        case "gt":
          return `${r.key}>${r.values[0] ?? ""}`;
        case "lt":
          return `${r.key}<${r.values[0] ?? ""}`;
      }
    })
    .join(",");
}

/** One term of a field selector. */
export interface FieldRequirement {
  readonly field: string;
  readonly operator: "=" | "!=";
  readonly value: string;
}

/** A parsed field selector: all terms must hold; none matches everything. */
export interface FieldSelector {
  readonly requirements: readonly FieldRequirement[];
}

function splitUnescaped(s: string, sep: string): string[] {
  const parts: string[] = [];
  let current = "";
  for (let i = 0; i < s.length; i++) {
    const c = s[i] ?? "";
    if (c === "\\" && i + 1 < s.length) {
      current += c + (s[i + 1] ?? "");
      i++;
      continue;
    }
    if (c === sep) {
      parts.push(current);
      current = "";
      continue;
    }
    current += c;
  }
  parts.push(current);
  return parts;
}

function unescapeFieldValue(v: string): string {
  let out = "";
  for (let i = 0; i < v.length; i++) {
    const c = v[i] ?? "";
    if (c === "\\") {
      const n = v[i + 1];
      if (n === "\\" || n === "," || n === "=") {
        out += n;
        i++;
        continue;
      }
      throw new SelectorError(`invalid field selector value "${v}": invalid escape sequence`);
    }
    if (c === "," || c === "=") {
      throw new SelectorError(`invalid field selector value "${v}": unescaped '${c}' must be escaped`);
    }
    out += c;
  }
  return out;
}

/**
 * Parses a field selector: comma-separated `path=value`, `path==value`,
 * `path!=value` terms; `\,`, `\=` and `\\` escape inside values. An empty
 * string selects everything.
 * @throws SelectorError when a term has no operator or a bad escape.
 */
export function parseFieldSelector(s: string): FieldSelector {
  const requirements: FieldRequirement[] = [];
  if (s.trim() === "") return { requirements };
  for (const term of splitUnescaped(s, ",")) {
    let found: FieldRequirement | undefined;
    for (let i = 0; i < term.length && found === undefined; i++) {
      if (term[i] === "\\") {
        i++;
        continue;
      }
      for (const [op, norm] of [
        ["!=", "!="],
        ["==", "="],
        ["=", "="],
      ] as const) {
        if (term.startsWith(op, i)) {
          const field = term.slice(0, i).trim();
          if (field === "") throw new SelectorError(`invalid selector: '${s}'; empty field name in '${term}'`);
          found = { field, operator: norm, value: unescapeFieldValue(term.slice(i + op.length)) };
          break;
        }
      }
    }
    if (found === undefined) {
      throw new SelectorError(`invalid selector: '${s}'; can't understand '${term}'`);
    }
    requirements.push(found);
  }
  return { requirements };
}

/**
 * The string value of a dotted path in `obj`, as kube field sets expose it:
 * strings as they are, numbers and booleans printed, absent as "".
 */
export function fieldValue(obj: unknown, path: string): string {
  let cur: unknown = obj;
  for (const part of path.split(".")) {
    if (cur === null || typeof cur !== "object" || Array.isArray(cur)) return "";
    cur = (cur as Record<string, unknown>)[part];
  }
  if (typeof cur === "string") return cur;
  if (typeof cur === "number" || typeof cur === "boolean" || typeof cur === "bigint") return String(cur);
  return "";
}

/**
 * True when `obj` satisfies every term of `sel`. `value` reads a field as
 * the kind's selectable field set exposes it (a kind may map a field label
 * to another path, as events map `source`); by default the dotted path.
 */
export function matchesFields(sel: FieldSelector, obj: unknown, value: (obj: unknown, path: string) => string = fieldValue): boolean {
  for (const r of sel.requirements) {
    const equal = value(obj, r.field) === r.value;
    if (r.operator === "=" ? !equal : equal) return false;
  }
  return true;
}

/**
 * The distinct field paths `sel` uses, so the server can refuse unsupported
 * ones with 400 `"<path>" is not a known field selector: only ...`-style
 * errors ("field label not supported") before matching.
 */
export function fieldSelectorPaths(sel: FieldSelector): string[] {
  return [...new Set(sel.requirements.map((r) => r.field))];
}
