/**
 * Durations on fabricctl's command line: Go-style (30s, 15m, 1h30m, the
 * syntax of the API's duration fields, parsed by the same function the
 * controllers use) plus whole days (7d), which operators type for look-backs.
 */
import { parseDuration } from "../lib/enrollment/token.js";
import { UsageError } from "./errors.js";

/** Milliseconds of `text`; a malformed value is a usage error naming `flag`. */
export function flagDuration(flag: string, text: string): number {
  const days = /^([0-9]+)d(.*)$/.exec(text);
  try {
    if (days !== null) return Number(days[1]) * 86_400_000 + (days[2] === "" ? 0 : parseDuration(days[2] ?? ""));
    return parseDuration(text);
  } catch {
    throw new UsageError(`${flag}: invalid duration "${text}" (use e.g. 90s, 30m, 1h30m, 7d)`);
  }
}

/** `--since`: a duration back from `now`, or an RFC 3339 time. */
export function sinceTime(text: string, now: number): Date {
  if (/^[0-9]{4}-[0-9]{2}-[0-9]{2}/.test(text)) {
    const t = Date.parse(text);
    if (Number.isNaN(t)) throw new UsageError(`--since: invalid time "${text}" (use RFC 3339, e.g. 2025-01-31T12:00:00Z, or a duration such as 2h)`);
    return new Date(t);
  }
  return new Date(now - flagDuration("--since", text));
}
