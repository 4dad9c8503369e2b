/**
 * The controller's side loop over the leases (leader only): ends the leases
 * expired by the database clock (grant history end_reason `expired`,
 * audited) and wakes the connections whose grants started or ended since the
 * last pass, wherever they were decided (this process's agent API or
 * another's), and those whose holder sent a `vpn` status report naming them,
 * so status (ownerState included) and events follow within a pass.
 */
import type { Logger } from "../../lib/log.js";
import type { VpnStore } from "../../lib/state/vpn.js";

/** See the module comment. */
export class VpnLeaseWatch {
  private lastId = 0;
  private since = new Date(0);

  constructor(private readonly d: { store: VpnStore; isLeader: () => boolean; wake: (connection: string) => void; log: Logger; intervalMs?: number }) {}

  /** One pass; returns the connections woken. */
  async once(): Promise<string[]> {
    const ended = await this.d.store.sweepExpired();
    for (const e of ended) this.d.log.info("vpn lease expired", { connection: e.connection, holder: e.holder, token: e.token, renewals: e.renewals });
    const ch = await this.d.store.grantChanges(this.lastId, this.since);
    const reported = await this.d.store.holderReportsSince(this.since);
    this.lastId = ch.lastId;
    this.since = ch.now;
    const woken = [...new Set([...ended.map((e) => e.connection), ...ch.connections, ...reported])];
    for (const c of woken) this.d.wake(c);
    return woken;
  }

  /** Runs until signal aborts, a pass every intervalMs (default 1 s) while leading. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      if (this.d.isLeader()) {
        try {
          await this.once();
        } catch (err) {
          this.d.log.warn("vpn lease watch failed", { error: (err as Error).message });
        }
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, this.d.intervalMs ?? 1000);
        function done(): void {
          clearTimeout(t);
          signal.removeEventListener("abort", done);
          resolve();
        }
        signal.addEventListener("abort", done, { once: true });
      });
    }
  }
}
