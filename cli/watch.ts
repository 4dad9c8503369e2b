/**
 * The `--watch` loop of fabricctl's status commands: runs `once` every
 * interval until SIGINT or SIGTERM, or until `once` answers true (the
 * watched thing settled). A failed refresh is reported and the loop goes on
 * (a watch outlives a server restart).
 */
import { describeError } from "./errors.js";

/** Runs `once` now and every `intervalMs` until SIGINT/SIGTERM ("signal") or until it answers true ("settled"). */
export async function refreshUntilSignal(once: () => Promise<boolean | void>, intervalMs: number, io: { err: (s: string) => void }): Promise<"signal" | "settled"> {
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    while (!stop.signal.aborted) {
      try {
        if ((await once()) === true) return "settled";
      } catch (err) {
        io.err(`fabricctl: ${describeError(err)}\n`);
      }
      await new Promise<void>((r) => {
        const t = setTimeout(r, intervalMs);
        stop.signal.addEventListener("abort", () => (clearTimeout(t), r()), { once: true });
      });
    }
    return "signal";
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
