/**
 * The `--watch` loop of fabricctl's status commands: runs `once` every
 * interval until SIGINT or SIGTERM. A failed refresh is reported and the
 * loop goes on (a watch outlives a server restart).
 */
import { describeError } from "./errors.js";

/** Runs `once` now and every `intervalMs` until SIGINT/SIGTERM. */
export async function refreshUntilSignal(once: () => Promise<void>, intervalMs: number, io: { err: (s: string) => void }): Promise<void> {
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    while (!stop.signal.aborted) {
      try {
        await once();
      } catch (err) {
        io.err(`fabricctl: ${describeError(err)}\n`);
      }
      await new Promise<void>((r) => {
        const t = setTimeout(r, intervalMs);
        stop.signal.addEventListener("abort", () => (clearTimeout(t), r()), { once: true });
      });
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
