/**
 * The VPN owner of one connection on this node: contend for its lease,
 * hold it, and keep the data plane up exactly while it holds it.
 *
 * - Contend (only while the assignment is enabled, has a credential
 *   reference and the data plane's tools are here; otherwise `not_started`
 *   or `blocked` with the reason) after contendDelayMs(preference): lower
 *   preference asks first. A busy lease is asked for again after the
 *   server's retryAfterMs plus that delay; 403 (NotEligible) is `blocked`
 *   and retried slowly; a failed call (control plane away, NotLeader) is
 *   `unknown` and retried.
 * - Hold: on a grant the local deadline is armed at once (monotonic send
 *   time + ttl - margin, computed by the lease client lease-client.ts on
 *   this owner's clock), renewals run every ttl/3, then the
 *   credential is fetched with the token and the data plane brought up
 *   carrying (connection, token).
 * - The deadline is a timer of its own: when it fires with no successful
 *   renewal since, the data plane is torn down, whatever network call is
 *   still pending (its late answer is ignored: every continuation checks
 *   the epoch it started in). 409 LeaseLost tears down at once too.
 * - A bring-up that fails (credential refused or malformed, wg/ip errors)
 *   and a crash of wireguard-go give the lease back (teardown first, then
 *   release) so that another node can take it.
 * - stop() (assignment gone, agent shutdown) tears down, then releases.
 */
import { performance } from "node:perf_hooks";
import type { Logger } from "../../lib/log.js";
import { AgentApiRequestError } from "../http/client.js";
import { parseCredential } from "./credential.js";
import type { HeldLease, VpnLeaseClient } from "./lease-client.js";
import { blockedRetryMs, contendBlocker, contendDelayMs, dataPlaneChanged, renewIntervalMs, renewRetryMs } from "./plan.js";
import type { VpnAssignment, VpnConnectionStatus, VpnOwnerState } from "./types.js";
import type { Availability, TunnelRef, TunnelSpec } from "./wireguard.js";

/** Time and randomness of the owner (tests pass a fake one). */
export interface OwnerClock {
  /** Monotonic milliseconds. */
  now(): number;
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
  random(): number;
}

/** The process's monotonic clock and timers. */
export const systemClock: OwnerClock = {
  now: () => performance.now(),
  setTimer: (fn, ms) => setTimeout(fn, ms),
  clearTimer: (h) => clearTimeout(h as NodeJS.Timeout),
  random: Math.random,
};

/** What the owner needs of the data plane (WireGuardDataPlane). */
export interface DataPlane {
  available(): Availability;
  up(spec: TunnelSpec, onCrash: (reason: string) => void, signal?: AbortSignal): Promise<void>;
  down(ref: TunnelRef, reason: string): Promise<void>;
  clean(ifname: string): Promise<void>;
}

/** Shared by the owners of one membership. */
export interface OwnerDeps {
  /** The lease client, on `clock`'s now (its deadlines are this clock's times). */
  leases: VpnLeaseClient;
  dataPlane: DataPlane;
  clock: OwnerClock;
  log: Logger;
  /** Called whenever a reported field changes. */
  onChange: () => void;
}

type Phase = "idle" | "waiting" | "acquiring" | "holding" | "stopped";

const RELEASE_TIMEOUT_MS = 2000;

function message(err: unknown): string {
  return err instanceof AgentApiRequestError ? `${err.code}: ${err.message}` : (err as Error).message;
}

/** See the module comment. */
export class ConnectionOwner {
  private phase: Phase = "idle";
  /** Bumped whenever a hold ends or the owner stops: continuations of an older epoch do nothing. */
  private epoch = 0;
  /** The lease held (token and local deadline), while holding. */
  private lease: HeldLease | undefined;
  private ttlMs: number;
  private tunnel = false;
  private state: VpnOwnerState = "not_started";
  private reason: string | undefined;
  private contendTimer: unknown;
  private renewTimer: unknown;
  private deadlineTimer: unknown;
  /** Aborts the bring-up in flight when the hold ends. */
  private bringUpAbort: AbortController | undefined;
  /** The last evaluate() found a local reason not to contend (contendBlocker). */
  private blockedLocally = false;
  /** The data plane operations of this connection, one at a time. */
  private dpChain: Promise<void>;

  /** `after`: a previous owner of the same connection still stopping (its teardown comes first). */
  constructor(
    private assignment: VpnAssignment,
    readonly ifname: string,
    private readonly d: OwnerDeps,
    after: Promise<void> = Promise.resolve(),
  ) {
    this.ttlMs = assignment.leaseTtlMs;
    // Leftovers of a previous agent (it held no lease we know of now).
    this.dpChain = after.then(() => d.dataPlane.clean(ifname)).catch((err: unknown) => d.log.warn("cleaning a leftover VPN interface failed", { ifname, err }));
  }

  private get token(): number | undefined {
    return this.lease?.token;
  }

  get connection(): string {
    return this.assignment.connection;
  }

  /** Starts contending (after the leftover cleanup). */
  start(): void {
    void this.dpChain.then(() => this.evaluate());
  }

  /** The status row of the `vpn` report. */
  status(): VpnConnectionStatus {
    const holding = this.phase === "holding";
    return {
      connection: this.assignment.connection,
      state: this.state,
      ...(holding && this.token !== undefined ? { token: this.token } : {}),
      ...(this.reason !== undefined ? { reason: this.reason } : {}),
      ...(holding && this.lease !== undefined ? { deadlineInMs: Math.max(0, Math.round(this.lease.deadline - this.d.clock.now())) } : {}),
      tunnel: this.tunnel ? "up" : "down",
    };
  }

  private set(state: VpnOwnerState, reason: string | undefined): void {
    if (state === this.state && reason === this.reason) return;
    this.state = state;
    this.reason = reason;
    this.d.onChange();
  }

  private clearTimers(): void {
    for (const t of [this.contendTimer, this.renewTimer, this.deadlineTimer]) if (t !== undefined) this.d.clock.clearTimer(t);
    this.contendTimer = this.renewTimer = this.deadlineTimer = undefined;
  }

  private dp(op: () => Promise<void>): Promise<void> {
    const next = this.dpChain.then(op, op);
    this.dpChain = next.catch(() => undefined);
    return next;
  }

  /** Decides, when not holding: report why not, or contend after `delayMs` (default: by preference). */
  private evaluate(delayMs?: number): void {
    if (this.phase === "stopped" || this.phase === "holding" || this.phase === "acquiring") return;
    if (this.contendTimer !== undefined) this.d.clock.clearTimer(this.contendTimer);
    this.contendTimer = undefined;
    const blocker = contendBlocker(this.assignment, this.d.dataPlane.available());
    if (blocker !== undefined) {
      this.phase = "idle";
      this.blockedLocally = true;
      this.set(blocker.state, blocker.reason);
      return;
    }
    // First contention, or a local reason (disabled, no credential reference) went away.
    if (this.state === "not_started" || this.blockedLocally) this.set("lease_required", "contending");
    this.blockedLocally = false;
    this.phase = "waiting";
    const ms = delayMs ?? contendDelayMs(this.assignment.preference, this.assignment.leaseTtlMs, this.d.clock.random());
    this.contendTimer = this.d.clock.setTimer(() => void this.contend(), ms);
  }

  private contendAgainMs(): number {
    return contendDelayMs(this.assignment.preference, this.assignment.leaseTtlMs, this.d.clock.random());
  }

  private async contend(): Promise<void> {
    if (this.phase !== "waiting") return;
    this.contendTimer = undefined;
    this.phase = "acquiring";
    const epoch = this.epoch;
    const connection = this.assignment.connection;
    const r = await this.d.leases.acquire(connection);
    if (epoch !== this.epoch) {
      // Stopped meanwhile: give back what was granted.
      if (r.kind === "granted") await this.release(connection, r.lease.token);
      return;
    }
    if (r.kind !== "granted") {
      this.phase = "idle";
      if (r.kind === "refused" && r.status === 403) {
        this.set("blocked", `${r.code}: ${r.message}`);
        this.evaluate(blockedRetryMs(this.assignment.leaseTtlMs));
      } else if (r.kind === "busy") {
        this.set("lease_required", `held by another node: ${r.reason}`);
        this.evaluate(r.retryAfterMs + this.contendAgainMs());
      } else {
        this.set("unknown", `acquire failed: ${r.kind === "refused" ? `${r.code}: ${r.message}` : r.message}`);
        this.evaluate(this.contendAgainMs() + renewIntervalMs(this.assignment.leaseTtlMs));
      }
      return;
    }
    const lease = r.lease;
    this.phase = "holding";
    this.ttlMs = lease.ttlMs;
    this.armDeadline(lease);
    this.scheduleRenew(renewIntervalMs(lease.ttlMs));
    this.d.log.info("VPN lease granted", { connection, token: lease.token, ttlMs: lease.ttlMs });
    this.set("assigned", "lease held; bringing the tunnel up");
    await this.bringUp(epoch, lease.token);
  }

  private async bringUp(epoch: number, token: number): Promise<void> {
    const connection = this.assignment.connection;
    const abort = new AbortController();
    this.bringUpAbort = abort;
    try {
      const text = await this.d.leases.credential({ connection, token });
      if (epoch !== this.epoch) return;
      const credential = parseCredential(text);
      const routes = this.assignment.routes;
      await this.dp(async () => {
        if (abort.signal.aborted) return;
        await this.d.dataPlane.up({ connection, token, ifname: this.ifname, credential, routes }, (reason) => void this.crashed(epoch, reason), abort.signal);
        // Aborted after the last step: the teardown queued behind us removes it.
        if (!abort.signal.aborted) this.tunnel = true;
      });
    } catch (err) {
      if (epoch !== this.epoch) return;
      await this.giveUp(`tunnel bring-up failed: ${message(err)}`, "blocked", blockedRetryMs(this.ttlMs));
      return;
    }
    if (epoch !== this.epoch || !this.tunnel) return;
    this.set("assigned", undefined);
  }

  private armDeadline(lease: HeldLease): void {
    this.lease = lease;
    if (this.deadlineTimer !== undefined) this.d.clock.clearTimer(this.deadlineTimer);
    const epoch = this.epoch;
    this.deadlineTimer = this.d.clock.setTimer(() => {
      if (epoch !== this.epoch) return;
      this.d.log.warn("VPN lease deadline passed without a renewal: tearing the tunnel down", { connection: this.assignment.connection, token: this.token });
      void this.endHold("deadline passed without a successful renewal; tunnel torn down", "lease_required");
    }, Math.max(0, lease.deadline - this.d.clock.now()));
  }

  private scheduleRenew(ms: number): void {
    if (this.renewTimer !== undefined) this.d.clock.clearTimer(this.renewTimer);
    this.renewTimer = this.d.clock.setTimer(() => void this.renew(), ms);
  }

  private async renew(): Promise<void> {
    this.renewTimer = undefined;
    const lease = this.lease;
    if (this.phase !== "holding" || lease === undefined) return;
    const epoch = this.epoch;
    const r = await this.d.leases.renew(lease);
    if (epoch !== this.epoch) return;
    if (r.kind === "lost") {
      await this.endHold(`lease lost: ${r.message}; tunnel torn down`, "lease_required");
      return;
    }
    if (r.kind === "unavailable") {
      this.set(this.state, `renew failed: ${r.message}`);
      this.scheduleRenew(renewRetryMs(this.ttlMs));
      return;
    }
    this.ttlMs = r.lease.ttlMs;
    this.armDeadline(r.lease);
    this.scheduleRenew(renewIntervalMs(r.lease.ttlMs));
    if (this.reason?.startsWith("renew failed") === true) this.set(this.state, this.tunnel ? undefined : this.reason);
  }

  /** Ends the hold: timers off, later answers ignored, data plane down (before anything else). */
  private async endHold(reason: string, state: VpnOwnerState): Promise<number | undefined> {
    const token = this.token;
    this.epoch++;
    this.clearTimers();
    this.bringUpAbort?.abort();
    this.phase = "idle";
    this.lease = undefined;
    const ref = { connection: this.assignment.connection, token: token ?? 0, ifname: this.ifname };
    await this.dp(() => this.d.dataPlane.down(ref, reason)).catch((err: unknown) => this.d.log.warn("VPN teardown failed", { ...ref, err }));
    this.tunnel = false;
    this.set(state, reason);
    this.evaluate();
    return token;
  }

  /** Ends the hold and gives the lease back, then waits `retryMs` before contending again. */
  private async giveUp(reason: string, state: VpnOwnerState, retryMs: number): Promise<void> {
    const connection = this.assignment.connection;
    const token = await this.endHold(reason, state);
    if (token !== undefined) await this.release(connection, token);
    if (this.phase !== "stopped") this.evaluate(retryMs);
  }

  private async crashed(epoch: number, reason: string): Promise<void> {
    if (epoch !== this.epoch) return;
    this.tunnel = false;
    await this.giveUp(`data plane crashed: ${reason}; lease released`, "blocked", blockedRetryMs(this.ttlMs));
  }

  private async release(connection: string, token: number): Promise<void> {
    const timeout = new Promise<void>((r) => {
      const h = this.d.clock.setTimer(r, RELEASE_TIMEOUT_MS);
      void h;
    });
    const released = this.d.leases.release({ connection, token }).then((ok) => {
      if (!ok) this.d.log.info("VPN lease not released (it expires by itself)", { connection, token });
    });
    await Promise.race([released, timeout]);
  }

  /** A new assignment for the same connection. */
  async update(a: VpnAssignment): Promise<void> {
    const old = this.assignment;
    this.assignment = a;
    if (this.phase === "stopped") return;
    if (this.phase === "holding") {
      const blocker = contendBlocker(a, this.d.dataPlane.available());
      if (blocker !== undefined) {
        await this.giveUp(blocker.reason, blocker.state, 0);
        return;
      }
      if (dataPlaneChanged(old, a) && this.token !== undefined) {
        const token = this.token;
        const epoch = this.epoch;
        this.bringUpAbort?.abort();
        await this.dp(() => this.d.dataPlane.down({ connection: a.connection, token, ifname: this.ifname }, "routes changed"));
        this.tunnel = false;
        if (epoch !== this.epoch) return;
        this.set("assigned", "routes changed; bringing the tunnel up again");
        await this.bringUp(epoch, token);
      }
      return;
    }
    if (this.phase !== "acquiring") this.evaluate();
  }

  /** Tears down, then releases (assignment gone, or agent shutdown). */
  async stop(reason: string): Promise<void> {
    const holding = this.phase === "holding";
    const token = this.token;
    this.epoch++;
    this.phase = "stopped";
    this.clearTimers();
    this.bringUpAbort?.abort();
    const ref = { connection: this.assignment.connection, token: token ?? 0, ifname: this.ifname };
    await this.dp(() => this.d.dataPlane.down(ref, reason)).catch((err: unknown) => this.d.log.warn("VPN teardown failed", { ...ref, err }));
    this.tunnel = false;
    if (holding && token !== undefined) await this.release(ref.connection, token);
  }
}
