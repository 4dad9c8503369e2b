/**
 * VPN failover time: holder SIGKILLed -> the new holder's tunnel up.
 *
 * VpnRig (test/support/vpn-netns.ts): two real agents in their own network
 * namespaces, a control plane in this process, a remote WireGuard site;
 * one connection with a 3 s lease (the shortest the controller accepts).
 * Each round SIGKILLs the current holder (time t0, this host's clock) and
 * reads the survivor's hook line "up <connection> <token> <ms>" (written
 * right after its tunnel is up: wireguard-go running, wg setconf, address,
 * routes); failover = that time - t0. The grant's database time splits it
 * into waiting for the lease (expiry + contention delay) and bring-up
 * (credential fetch + data plane). The killed agent is then restarted and
 * must report lease_required before the next round. Bounded: ROUNDS rounds,
 * each waits at most 30 s. Prints figures; asserts nothing.
 *
 *   npx tsx test/bench/vpn-failover.bench.ts [rounds=20]
 */
import { eventually } from "../support/controlplane.js";
import { VpnRig, type RigAgent } from "../support/vpn-netns.js";

const ROUNDS = Math.min(100, Number(process.argv[2] ?? 20));
const TTL_MS = 3000;

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? NaN;
};
const fmt = (xs: number[]): string => `p50 ${pct(xs, 50)} ms, p99 ${pct(xs, 99)} ms, max ${Math.max(...xs)} ms`;

async function main(): Promise<void> {
  const rig = new VpnRig("afwb", TTL_MS);
  const total: number[] = [];
  const toGrant: number[] = [];
  const bringUp: number[] = [];
  try {
    await rig.start(["n1", "n2"]);
    let holder: RigAgent = rig.agent("n1");
    await eventually(() => rig.holdsWithTunnel(holder), 120_000, 200);
    for (let round = 1; round <= ROUNDS; round++) {
      const survivor = holder.name === "n1" ? rig.agent("n2") : rig.agent("n1");
      await eventually(async () => (await rig.row(survivor))?.state === "lease_required", 30_000, 100);
      const ups = rig.hookLines(survivor).filter((l) => l.startsWith("up ")).length;
      const held = await rig.holdsWithTunnel(holder);
      const t0 = Date.now();
      await rig.stopAgent(holder, "SIGKILL");
      const line = await eventually(() => rig.hookLines(survivor).filter((l) => l.startsWith("up "))[ups], 30_000, 20);
      const [, , token, at] = line.split(" ");
      const grant = (await rig.grants()).find((g) => Number(g.token) === Number(token));
      total.push(Number(at) - t0);
      if (grant !== undefined) {
        toGrant.push(grant.granted_at.getTime() - t0);
        bringUp.push(Number(at) - grant.granted_at.getTime());
      }
      process.stdout.write(`round ${round}: token ${held} -> ${token} on ${survivor.name}: tunnel up after ${Number(at) - t0} ms\n`);
      rig.startAgent(holder);
      holder = survivor;
    }
  } finally {
    await rig.stop();
  }
  process.stdout.write(`vpn failover, ${total.length} rounds, lease ttl ${TTL_MS} ms (deadline margin 1 s, renew every 1 s)\n`);
  process.stdout.write(`  holder SIGKILLed -> new holder's tunnel up: ${fmt(total)}\n`);
  process.stdout.write(`  of which until the grant (expiry + contention): ${fmt(toGrant)}\n`);
  process.stdout.write(`  of which grant -> tunnel up (credential, wireguard-go, wg, ip): ${fmt(bringUp)}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
