/**
 * Warning response headers as kube-apiserver writes them (RFC 7234 5.5,
 * k8s.io/apiserver's warning recorder): `299 - "<text>"` with `"` and `\`
 * escaped, one header per distinct warning, and once a request's warnings
 * pass 4 KiB each is truncated to 256 bytes. Node refuses control
 * characters and anything past U+00FF in a header value (and how it encodes
 * U+0080..U+00FF has varied between versions), so the value is kept ASCII:
 * control characters become spaces, as Go's server turns CR and LF into
 * spaces, and other non-ASCII characters become "?".
 */
import type Koa from "koa";

/** kube's budget for all warnings of one response. */
export const maxWarningBytes = 4 * 1024;
/** How much of each warning's text kube keeps once the budget is exceeded. */
export const truncatedWarningBytes = 256;

/** Adds warnings to the response (duplicates are sent once), keeping the Warning headers within kube's limits. */
export function addWarnings(ctx: Koa.Context, texts: readonly string[]): void {
  const state = ctx.state as { warnings?: string[] };
  const all = (state.warnings ??= []);
  for (const t of texts) if (t !== "" && !all.includes(t)) all.push(t);
  let headers = all.map(header);
  const total = headers.reduce((n, h) => n + h.length, 0);
  if (total > maxWarningBytes) headers = all.map((t) => header(truncate(t, truncatedWarningBytes)));
  ctx.set("Warning", headers);
}

/** The (ASCII) header value of one warning. */
function header(text: string): string {
  const clean = text
    .replace(/[\u0000-\u0008\u000a-\u001f\u007f]/g, " ")
    .replace(/[^\u0000-\u007f]/gu, "?")
    .replace(/["\\]/g, (c) => `\\${c}`);
  return `299 - "${clean}"`;
}

/** The longest prefix of `text` whose UTF-8 form fits in `bytes`, cut on a character boundary. */
function truncate(text: string, bytes: number): string {
  if (Buffer.byteLength(text, "utf8") <= bytes) return text;
  let out = "";
  let size = 0;
  for (const ch of text) {
    const n = Buffer.byteLength(ch, "utf8");
    if (size + n > bytes) break;
    out += ch;
    size += n;
  }
  return out;
}
