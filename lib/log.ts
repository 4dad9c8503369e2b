/**
 * Structured logging: one line per event, a constant message plus fields.
 *
 * Level comes from FABRIC_LOG_LEVEL (debug, info, warn, error; default info).
 * Format: JSON lines (default) or text, for people; one format per process,
 * chosen by FABRIC_LOG_FORMAT=json|text or the binaries' --log-format flag
 * (setLogFormat), which wins over the variable.
 */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Output format of every log line of the process. */
export type LogFormat = "json" | "text";

let formatOverride: LogFormat | undefined;

/** Parses a --log-format / FABRIC_LOG_FORMAT value; throws on anything but json or text. */
export function parseLogFormat(v: string): LogFormat {
  if (v === "json" || v === "text") return v;
  throw new Error(`invalid log format ${JSON.stringify(v)}: want json or text`);
}

/** Sets the format of every later log line of this process (the --log-format flag). */
export function setLogFormat(f: LogFormat): void {
  formatOverride = f;
}

/** The format in force: setLogFormat's, else FABRIC_LOG_FORMAT's, else json. */
export function logFormat(): LogFormat {
  return formatOverride ?? (process.env.FABRIC_LOG_FORMAT === "text" ? "text" : "json");
}

const order: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Fields attached to a log line. Errors are flattened to their message and cause chain. */
export type LogFields = Record<string, unknown>;

/** A logger bound to a component name and a set of fields. */
export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A child logger that adds fields to every line. */
  with(fields: LogFields): Logger;
}

function threshold(): number {
  const env = (process.env.FABRIC_LOG_LEVEL ?? "info") as LogLevel;
  return order[env] ?? order.info;
}

function describeError(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const out: Record<string, unknown> = { message: err.message };
  if (err.cause !== undefined) out.cause = describeError(err.cause);
  return out;
}

function write(level: LogLevel, component: string, base: LogFields, msg: string, fields?: LogFields): void {
  if (order[level] < threshold()) return;
  const described: LogFields = { ...base };
  if (fields) {
    for (const [k, v] of Object.entries(fields)) described[k] = v instanceof Error ? describeError(v) : v;
  }
  const ts = new Date().toISOString();
  const text = logFormat() === "text" ? `${ts} ${level.toUpperCase()} [${component}] ${msg} ${JSON.stringify(described)}` : JSON.stringify({ ts, level, component, msg, ...described });
  (level === "error" || level === "warn" ? process.stderr : process.stdout).write(text + "\n");
}

/** Creates a logger for a component ("apiserver", "controller.nodegroup", ...). */
export function logger(component: string, base: LogFields = {}): Logger {
  return {
    debug: (m, f) => write("debug", component, base, m, f),
    info: (m, f) => write("info", component, base, m, f),
    warn: (m, f) => write("warn", component, base, m, f),
    error: (m, f) => write("error", component, base, m, f),
    with: (f) => logger(component, { ...base, ...f }),
  };
}
