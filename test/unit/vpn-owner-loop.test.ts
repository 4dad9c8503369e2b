/**
 * The membership's VPN owner (agent/vpn/vpn-loop.ts) with a fake snapshot
 * subscription, clock, data plane and API: owners start for new
 * assignments, a connection leaving the snapshot is torn down and
 * released, unusable assignments are listed with reasons, status reports
 * carry growing versions, and stop tears everything down.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { StatusReport } from "../../lib/agent-protocol.js";
import type { SignedSnapshot } from "../../lib/snapshot/format.js";
import type { MembershipSync, SnapshotListener } from "../../agent/sync/snapshot-sync.js";
import type { HeldSnapshot } from "../../agent/sync/status.js";
import type { LeaseTransport } from "../../agent/vpn/lease-client.js";
import type { DataPlane, OwnerClock } from "../../agent/vpn/owner.js";
import { runVpnOwner } from "../../agent/vpn/vpn-loop.js";
import { readVpnStatus } from "../../agent/vpn/vpn-status.js";
import type { VpnAssignment } from "../../agent/vpn/types.js";
import { logger } from "../../lib/log.js";
import { eventually } from "../support/controlplane.js";

const CRED = "[Interface]\nPrivateKey = OKXcyhb/PJjsT0C8aQSHPqnkCmLoSSKyyI5BPD6r8Xw=\nAddress = 10.99.0.2/32\n[Peer]\nPublicKey = QbHx3wCzI5TeceYzqDvx2ifCuBmKCT5TF3qfTiXUBmA=\nAllowedIPs = 10.20.0.0/16\n";
const a = (connection: string): VpnAssignment => ({ connection, mode: "Connector", preference: 0, routes: [{ destination: "10.20.0.0/16", action: "Route", metric: 10 }], leaseTtlMs: 3000, hasCredentialRef: true, enabled: true });
const flush = async (): Promise<void> => {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
};

/** Timers that fire only when the test says so. */
class ManualClock implements OwnerClock {
  t = 0;
  timers: Array<{ at: number; fn: () => void }> = [];
  now = (): number => this.t;
  setTimer = (fn: () => void, ms: number): unknown => {
    const t = { at: this.t + ms, fn };
    this.timers.push(t);
    return t;
  };
  clearTimer = (h: unknown): void => {
    this.timers = this.timers.filter((t) => t !== h);
  };
  random = (): number => 0;
  async advance(ms: number): Promise<void> {
    this.t += ms;
    for (;;) {
      const due = this.timers.filter((t) => t.at <= this.t);
      if (due.length === 0) break;
      this.timers = this.timers.filter((t) => !due.includes(t));
      for (const t of due) t.fn();
      await flush();
    }
  }
}

describe("vpn owner loop: one membership's owners driven by snapshots", () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), "afw-vpn-loop-"))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("starts owners, stops one whose assignment left, lists unusable ones, reports with growing versions, tears down on stop", async () => {
    const events: string[] = [];
    const reports: StatusReport[] = [];
    let listener: SnapshotListener | undefined;
    const sync = { dir, status: { cluster: "c1", node: "c1.n1" }, subscribe: (l: SnapshotListener) => (listener = l) } as unknown as MembershipSync;
    const dp: DataPlane = {
      available: () => ({ ok: true }),
      up: async (s) => void events.push(`up ${s.connection} ${s.token} ${s.ifname}`),
      down: async (r) => void events.push(`down ${r.connection} ${r.token}`),
      clean: async () => undefined,
    };
    let token = 0;
    const transport: LeaseTransport = {
      request: async <T>(_m: string, path: string, body?: unknown) => {
        const b = body as { connection: string; token: number };
        const call = path.split("/").pop();
        if (call === "release") events.push(`release ${b.connection} ${b.token}`);
        const answer = call === "acquire" ? { granted: true, token: ++token, ttlMs: 3000 } : call === "renew" ? { token: b.token, ttlMs: 3000 } : call === "release" ? { released: true } : { token: b.token, credential: CRED };
        return { status: 200, body: answer as T };
      },
    };
    const clock = new ManualClock();
    const vpn = runVpnOwner(sync, { log: logger("vpn-loop-test"), dataPlane: dp, transport, clock, send: async (r) => void reports.push(r), interfacePrefix: "afw" });
    const offer = async (assignments: unknown[]): Promise<void> => {
      listener?.({ payload: { vpn: { assignments } } } as unknown as SignedSnapshot, {} as HeldSnapshot);
      await flush();
      await clock.advance(1000);
    };
    await offer([a("org-a/one"), a("org-a/two"), { ...a("org-a/bad"), routes: [{ destination: "10.0.0.0/8 dev lo", action: "Route", metric: 1 }] }]);
    assert.deepEqual(events.filter((e) => e.startsWith("up")).map((e) => e.split(" ")[1]).sort(), ["org-a/one", "org-a/two"]);
    assert.deepEqual(vpn.status().connections.map((c) => [c.connection, c.state, c.tunnel]), [["org-a/one", "assigned", "up"], ["org-a/two", "assigned", "up"]]);
    const file = await eventually(async () => {
      const f = await readVpnStatus(dir);
      return f?.connections.length === 2 ? f : undefined;
    }, 5000, 20);
    assert.deepEqual(file?.invalid, [{ connection: "org-a/bad", invalid: "a route destination is not a CIDR" }]);
    assert.ok(file?.connections.every((c) => /^afw[a-z2-7]{12}$/.test(c.interface)));
    await eventually(() => reports.length >= 1, 5000, 20);
    assert.ok(reports.every((r, i) => i === 0 || r.version > (reports[i - 1]?.version ?? 0)), "versions grow");

    const oneToken = vpn.status().connections.find((c) => c.connection === "org-a/one")?.token;
    await offer([a("org-a/two")]);
    const down = events.indexOf(`down org-a/one ${oneToken}`);
    assert.ok(down >= 0 && events.indexOf(`release org-a/one ${oneToken}`) > down, events.join("\n"));
    assert.deepEqual(vpn.status().connections.map((c) => c.connection), ["org-a/two"]);
    // The report of the change follows (after the status file is written).
    await eventually(() => JSON.stringify((reports.at(-1)?.body as { connections: Array<{ connection: string }> }).connections.map((c) => c.connection)) === '["org-a/two"]', 5000, 20);

    await vpn.stop();
    assert.ok(events.some((e) => e.startsWith("down org-a/two")));
    assert.ok(events.some((e) => e.startsWith("release org-a/two")));
  });
});
