/**
 * Wires the VPN owner of one membership into the agent's snapshot loop:
 *
 *   const vpn = runVpnOwner(sync, { log, identity, hook });   // in runMembership's onSync, before boot
 *   await vpn.stop();                                          // agent shutdown: tear down, release
 *
 * - Desired state comes only from MembershipSync.subscribe (the verified
 *   checkpoint at boot, stale or not, then each accepted snapshot): its
 *   `vpn` part lists the connections this node may own. plan.ts decides
 *   what starts, changes and stops; one ConnectionOwner per connection
 *   (owner.ts) does the rest. With the control plane away the owners keep
 *   their timers (a holder tears down at its deadline) and keep trying to
 *   contend, which succeeds only once it is reachable again.
 * - Status: every change writes vpn-status.json and hands the report kind
 *   `vpn` to a LatestReportSender (agent/sync/latest-report.ts) over the
 *   membership's status sender; the file is also rewritten every 5 s
 *   (remaining deadline) and a failed send is retried within 5 s.
 * - Calls to the agent API go over the membership's mTLS transport and
 *   follow certificate renewals like the status sender does.
 */
import type { StatusReport } from "../../lib/agent-protocol.js";
import type { Logger } from "../../lib/log.js";
import { AgentApiClient, AgentApiRequestError } from "../http/client.js";
import { loadIdentity, type StoredIdentity } from "../enroll/identity-store.js";
import { LatestReportSender } from "../sync/latest-report.js";
import type { MembershipSync } from "../sync/snapshot-sync.js";
import { statusSender } from "../sync/status-sender.js";
import { VpnLeaseClient, type LeaseTransport, type LeaseTransportSource } from "./lease-client.js";
import { ConnectionOwner, systemClock, type DataPlane, type OwnerClock } from "./owner.js";
import { interfaceName, planAssignments } from "./plan.js";
import { assignmentsOf, VPN_STATUS_KIND, type VpnAssignment, type VpnStatusBody } from "./types.js";
import { writeVpnStatus, type VpnStatusFile } from "./vpn-status.js";
import { WireGuardDataPlane } from "./wireguard.js";

/** Default prefix of the agent's WireGuard interfaces. */
export const DEFAULT_VPN_INTERFACE_PREFIX = "fvpn";
const REFRESH_MS = 5000;

/** Options of runVpnOwner. */
export interface VpnOwnerOptions {
  log: Logger;
  identity?: StoredIdentity;
  /** `--vpn-hook PATH`. */
  hook?: string;
  /** `--vpn-interface-prefix` (default fvpn). */
  interfacePrefix?: string;
  /** Replace the parts (tests). */
  dataPlane?: DataPlane;
  transport?: LeaseTransportSource;
  send?: (r: StatusReport) => Promise<void>;
  clock?: OwnerClock;
}

/** A membership's running VPN owner. */
export interface VpnOwnerHandle {
  /** The rows last reported. */
  status(): VpnStatusBody;
  /** Tears every tunnel down and releases every lease. */
  stop(): Promise<void>;
}

/** The agent API client of the membership, replaced when its certificate was renewed. */
function membershipTransport(dir: string, initial: StoredIdentity | undefined): { transport: () => Promise<LeaseTransport>; close(): void } {
  let identity = initial;
  let client: AgentApiClient | undefined;
  const current = async (): Promise<AgentApiClient> => {
    identity ??= await loadIdentity(dir);
    client ??= new AgentApiClient(identity.info.server, { ca: identity.serverCaPem, cert: identity.certPem, key: identity.keyPem }, { maxSockets: 2 });
    return client;
  };
  const transport = async (): Promise<LeaseTransport> => {
    const c = await current();
    return {
      request: async (method, path, body, headers, o) => {
        try {
          return await c.request(method, path, body, headers, o);
        } catch (err) {
          if (err instanceof AgentApiRequestError && err.code === "CertificateSuperseded") {
            const fresh = await loadIdentity(dir);
            if (identity === undefined || fresh.info.serial !== identity.info.serial) {
              identity = fresh;
              client?.close();
              client = undefined;
            }
          }
          throw err;
        }
      },
    };
  };
  return { transport, close: () => client?.close() };
}

/** See the module comment. */
export function runVpnOwner(sync: MembershipSync, o: VpnOwnerOptions): VpnOwnerHandle {
  const log = o.log.with({ cluster: sync.status.cluster, node: sync.status.node, component: "vpn" });
  const clock = o.clock ?? systemClock;
  const dataPlane = o.dataPlane ?? new WireGuardDataPlane({ log, ...(o.hook !== undefined ? { hook: o.hook } : {}) });
  const own = o.transport === undefined ? membershipTransport(sync.dir, o.identity) : undefined;
  const leases = new VpnLeaseClient(o.transport ?? own!.transport, { now: () => clock.now() });
  const sender = o.send === undefined ? statusSender(sync.dir, o.identity, VPN_STATUS_KIND) : undefined;
  const send = o.send ?? sender!.send;
  const prefix = o.interfacePrefix ?? DEFAULT_VPN_INTERFACE_PREFIX;
  const owners = new Map<string, ConnectionOwner>();
  /** Owners whose assignment left the snapshot, until their teardown and release are done. */
  const stopping = new Map<string, Promise<void>>();
  const assignments = new Map<string, VpnAssignment>();
  let invalid: VpnStatusFile["invalid"] = [];
  let stopped = false;
  const reporter = new LatestReportSender<VpnStatusBody>({
    send,
    log,
    what: "vpn status report",
    body: (b) => b as unknown as Record<string, unknown>,
    // The remaining deadline changes every time: it alone does not make a report.
    changeKey: (b) => JSON.stringify(b.connections.map(({ deadlineInMs: _, ...c }) => c)),
    retryMs: REFRESH_MS,
  });
  let reporting: Promise<void> | undefined;
  let again = false;

  const body = (): VpnStatusBody => ({ connections: [...owners.values()].map((w) => w.status()).sort((a, b) => (a.connection < b.connection ? -1 : 1)) });

  const report = async (): Promise<void> => {
    const b = body();
    const availability = dataPlane.available();
    const file: VpnStatusFile = {
      formatVersion: 1,
      cluster: sync.status.cluster,
      node: sync.status.node,
      pid: process.pid,
      dataPlane: availability.ok ? { ok: true } : { ok: false, reason: availability.reason },
      connections: b.connections.map((c) => {
        const a = assignments.get(c.connection);
        return { ...c, interface: owners.get(c.connection)?.ifname ?? "", mode: a?.mode ?? "", preference: a?.preference ?? 0 };
      }),
      invalid,
      updatedAt: new Date().toISOString(),
    };
    try {
      await writeVpnStatus(sync.dir, file);
    } catch (err) {
      log.warn("writing vpn status failed", { err });
    }
    reporter.update(b);
    await reporter.flush();
  };

  const changed = (): void => {
    if (stopped) return;
    if (reporting !== undefined) {
      again = true;
      return;
    }
    reporting = (async () => {
      do {
        again = false;
        await report();
      } while (again && !stopped);
      reporting = undefined;
    })();
  };

  const refresh = setInterval(changed, REFRESH_MS);

  sync.subscribe((snapshot) => {
    if (stopped) return;
    const parsed = assignmentsOf(snapshot.payload);
    invalid = parsed.invalid;
    for (const i of parsed.invalid) log.warn("VPN assignment ignored", i);
    const plan = planAssignments(assignments, parsed.assignments);
    for (const c of plan.stop) {
      const w = owners.get(c);
      owners.delete(c);
      assignments.delete(c);
      if (w === undefined) continue;
      const done = w.stop("assignment left the snapshot").finally(() => {
        if (stopping.get(c) === done) stopping.delete(c);
        changed();
      });
      stopping.set(c, done);
    }
    for (const a of plan.update) {
      assignments.set(a.connection, a);
      void owners.get(a.connection)?.update(a);
    }
    for (const a of plan.start) {
      assignments.set(a.connection, a);
      // Back in the snapshot while its previous owner still tears down: that teardown comes first.
      const w = new ConnectionOwner(a, interfaceName(prefix, sync.status.cluster, sync.status.node, a.connection), { leases, dataPlane, clock, log: log.with({ connection: a.connection }), onChange: changed }, stopping.get(a.connection));
      owners.set(a.connection, w);
      w.start();
    }
    changed();
  });

  return {
    status: body,
    async stop() {
      stopped = true;
      clearInterval(refresh);
      await Promise.all([...owners.values()].map((w) => w.stop("agent stopping")).concat([...stopping.values()]));
      await reporting;
      // The last state (all down) goes to the file; the send may not hold shutdown for long with the control plane away.
      await Promise.race([report(), new Promise((r) => setTimeout(r, 2000).unref())]);
      reporter.close();
      own?.close();
      sender?.close();
    },
  };
}
