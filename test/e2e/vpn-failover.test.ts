/**
 * VPN failover end to end: real fabric-agent processes, each in its own
 * network namespace (test/support/netns.ts, prefix afw), a real control plane
 * (agent API reached from the namespaces through a forwarder on the lab's
 * bridge address), real wireguard-go tunnels to a remote site (namespace
 * afw-site: a WireGuard peer holding the other half of the connection's
 * credential and a UDP echo server on 10.20.0.1, behind it). The set-up is
 * VpnRig (test/support/vpn-netns.ts).
 *
 * Shows: the preferred node holds the lease and packets to a route-policy
 * destination arrive at the remote site through its tunnel; the holder
 * SIGKILLed -> the other node holds the lease and its tunnel carries the
 * packets (the killed agent's wireguard-go dies with it); the holder cut
 * from the control plane (its link down) tears its tunnel down by its
 * deadline, before the next grant starts (hook time vs the grant's database
 * time), and once reconnected its stale tunnel carries nothing while the
 * new holder's does; an agent restarted while cut off runs from its
 * checkpointed snapshot (connection known, nothing held, `unknown`) and
 * contends once reachable. Needs root, wireguard-go, wg, ip (hack/wireguard.sh).
 */
import assert from "node:assert/strict";
import { eventually, kubectl } from "../support/controlplane.js";
import { processesWith } from "../support/processes.js";
import { udpProbe, VpnRig } from "../support/vpn-netns.js";

const TTL_MS = 3000;
const CONN = VpnRig.CONN;

describe("e2e: VPN failover between real agents in network namespaces, real WireGuard to a remote site", function () {
  this.timeout(300_000);
  // Parallel runs on one host need distinct prefixes (2-6 lowercase letters).
  const rig = new VpnRig(process.env.VPN_E2E_PREFIX ?? "afw", TTL_MS);
  const failWith = (err: unknown): never => {
    throw new Error(`${(err as Error).message}\n${rig.diagnostics()}`);
  };

  before(async () => {
    await rig.start(["n1", "n2"]);
  });
  after(async () => {
    await rig.stop();
  });

  it("the preferred node holds the lease; packets to a route-policy destination arrive at the remote site through its tunnel; the control plane shows its state", async () => {
    const n1 = rig.agent("n1");
    const n2 = rig.agent("n2");
    const token = await eventually(() => rig.holdsWithTunnel(n1), 120_000, 250).catch(failWith);
    await eventually(() => rig.reachesThroughTunnel(n1), 30_000, 200);
    assert.ok(rig.hookLines(n1).some((l) => l.startsWith(`up ${CONN} ${token} `)), rig.hookLines(n1).join("\n"));
    // n2 (preference 1) is told the lease is busy.
    let last: unknown;
    const other = await eventually(async () => {
      const r = await rig.row(n2);
      last = r ?? (await rig.status(n2).catch(() => undefined)) ?? "no status file of the running agent";
      return r?.state === "lease_required" && r.reason?.startsWith("held by another node") === true ? r : undefined;
    }, 30_000, 250).catch((err: unknown) => failWith(new Error(`${(err as Error).message}; n2's last row: ${JSON.stringify(last)}`)));
    assert.equal(other.tunnel, "down");
    const g = await rig.grants();
    assert.equal(g.at(-1)?.holder, rig.fq("n1"));
    assert.equal(Number(g.at(-1)?.token), token);
    // `fabric-agent vpn status` prints the table; the holder's report reaches VPNConnection status.
    const table = await n1.host.exec("bin/fabric-agent", ["vpn", "status", "--state-dir", n1.dir]);
    assert.match(table.stdout, new RegExp(`${CONN}\\s+assigned\\s+${token}\\s+up\\s+${rig.ifOf(n1)}`), table.stdout + table.stderr);
    await eventually(async () => {
      const r = await kubectl(rig.cp.api.kubeconfigPath, ["get", "vpnconnection", "-n", "org-a", "exit", "-o", "jsonpath={.status.activeLease.holder} {.status.ownerState}"]);
      return r.stdout === `${rig.fq("n1")} Assigned`;
    }, 30_000, 250);
  });

  it("the holder SIGKILLed: its wireguard-go dies with it, the other node holds the lease and its tunnel carries the packets", async () => {
    const n1 = rig.agent("n1");
    const n2 = rig.agent("n2");
    const before = (await rig.grants()).length;
    assert.equal(processesWith(rig.ifOf(n1)).length, 1, "n1's wireguard-go runs");
    await rig.stopAgent(n1, "SIGKILL");
    await eventually(() => processesWith(rig.ifOf(n1)).length === 0, 10_000, 100);
    const token = await eventually(() => rig.holdsWithTunnel(n2), TTL_MS + 15_000, 100).catch(failWith);
    const g = await rig.grants();
    assert.equal(g.length, before + 1);
    assert.equal(g.at(-1)?.holder, rig.fq("n2"));
    assert.ok(token > Number(g.at(-2)?.token), "the new grant's token is higher");
    await eventually(() => rig.reachesThroughTunnel(n2), 30_000, 200);
    assert.ok(rig.hookLines(n2).some((l) => l.startsWith(`up ${CONN} ${token} `)));
  });

  it("the holder cut from the control plane tears its tunnel down by its deadline, before the next grant; reconnected, its stale tunnel carries nothing", async () => {
    const n1 = rig.agent("n1");
    const n2 = rig.agent("n2");
    rig.startAgent(n1);
    await eventually(async () => (await rig.row(n1))?.state === "lease_required", 60_000, 250);
    const held = await rig.holdsWithTunnel(n2);
    assert.ok(held !== undefined);
    const downsBefore = rig.hookLines(n2).filter((l) => l.startsWith("down ")).length;
    await n2.host.cut();
    // n2 keeps running, cut off: its deadline timer tears the tunnel down (hook "down" with its token).
    const downLine = await eventually(() => rig.hookLines(n2).filter((l) => l.startsWith("down "))[downsBefore], TTL_MS + 15_000, 100);
    assert.ok(downLine.startsWith(`down ${CONN} ${held} `), downLine);
    const downAt = Number(downLine.split(" ").at(-1));
    const next = await eventually(async () => (await rig.grants()).find((g) => Number(g.token) > held), TTL_MS + 20_000, 100);
    assert.equal(next.holder, rig.fq("n1"));
    assert.ok(downAt < next.granted_at.getTime(), `n2 tore down at ${downAt}, n1's grant started at ${next.granted_at.getTime()}`);
    const t1 = await eventually(() => rig.holdsWithTunnel(n1), 30_000, 100);
    assert.equal(t1, Number(next.token));
    await eventually(() => rig.reachesThroughTunnel(n1), 30_000, 200);
    // n2 reconnected: no tunnel interface, no wireguard-go, and its packets never come out of the tunnel.
    await n2.host.restore();
    const link = await n2.host.exec("ip", ["link", "show", rig.ifOf(n2)]);
    assert.notEqual(link.code, 0, "the stale holder has no tunnel interface");
    assert.equal(processesWith(rig.ifOf(n2)).length, 0);
    const before = rig.echo.senders.length;
    assert.equal(await udpProbe(n2.host.netns, VpnRig.BEHIND, 7007, 1000), false, "nothing answers the stale holder through a tunnel");
    assert.ok(!rig.echo.senders.slice(before).includes("10.99.0.2"));
    await eventually(async () => (await rig.row(n2))?.state === "lease_required", 30_000, 250);
    assert.ok(await rig.reachesThroughTunnel(n1), "the new holder still carries the packets");
  });

  it("an agent restarted while cut off runs from its checkpointed snapshot: the connection is known, nothing is held, it contends once reachable", async () => {
    const n2 = rig.agent("n2");
    await n2.host.cut();
    await rig.stopAgent(n2, "SIGTERM");
    rig.startAgent(n2);
    // Booted from the checkpoint (no control plane): the assignment is there, the acquire cannot reach anyone.
    const row = await eventually(async () => {
      const r = await rig.row(n2);
      return r?.state === "unknown" ? r : undefined;
    }, 60_000, 250).catch(failWith);
    assert.equal(row.tunnel, "down");
    assert.equal(row.token, undefined);
    assert.match(row.reason ?? "", /acquire failed/);
    assert.match(n2.out, /booted from checkpoint/, "the agent says it started from its checkpoint");
    await n2.host.restore();
    await eventually(async () => (await rig.row(n2))?.state === "lease_required", 60_000, 250).catch(failWith);
    assert.ok(await rig.holdsWithTunnel(rig.agent("n1")), "n1 still holds the lease with its tunnel up");
  });
});
