/**
 * Reconnect delays of the agent's loops: exponential backoff with full
 * jitter (AWS architecture blog, "Exponential Backoff And Jitter"): the
 * delay is uniform in [0, min(cap, base * 2^attempt)]. Ten thousand agents
 * that lost the control plane at the same instant thus spread their
 * reconnects over the whole window instead of arriving in waves.
 */

/** Delay before retry number `attempt` (1-based); `random` is injectable for tests. */
export function fullJitterDelay(attempt: number, baseMs: number, capMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(Math.max(attempt, 0), 30));
  return Math.floor(random() * ceiling);
}

/** Sleeps `ms` or until signal aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
