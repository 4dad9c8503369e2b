/**
 * VPN failover end to end: real fabric-agent processes, each in its own
 * network namespace (test/support/netns.ts, prefix afw), a real control plane
 * (agent API reached from the namespaces through a forwarder on the lab's
 * bridge address), real wireguard-go tunnels to a remote site (namespace
 * afw-site: a WireGuard peer holding the other half of the connection's
 * credential and a UDP echo server on 10.20.0.1, behind it).
 *
 * Shows: the preferred node holds the lease and packets to a route-policy
 * destination arrive at the remote site through its tunnel; the holder
 * SIGKILLed -> the other node holds the lease and its tunnel carries the
 * packets (the killed agent's wireguard-go dies with it); the holder cut
 * from the control plane (its link down) tears its tunnel down by its
 * deadline, before the next grant starts (hook time vs the grant's database
 * time), and once reconnected its stale tunnel carries nothing while the
 * new holder's does. Needs root, wireguard-go, wg, ip (hack/wireguard.sh).
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join as joinPath } from "node:path";
import { join } from "../../agent/enroll/join.js";
import { interfaceName } from "../../agent/vpn/plan.js";
import type { VpnStatusFile } from "../../agent/vpn/vpn-status.js";
import { runControlPlane, type ControlPlane } from "../../controlplane/controlplane.js";
import { logger } from "../../lib/log.js";
import { agentEnv, eventually, kubectl, repoRoot, tempStateDir } from "../support/controlplane.js";
import { createToken } from "../support/enrollment.js";
import { createLab, type NetnsHost, type NetnsLab } from "../support/netns.js";
import { processesWith } from "../support/processes.js";
import { apply, credentialSecret, ensureNamespace, VPN_CAPABILITIES, vpnConnection } from "../support/vpn-fleet.js";
import { NetnsLab as WgLab, forwardTcp, udpProbe, wgKeys } from "../support/vpn-netns.js";

const agentBin = joinPath(repoRoot, "bin", "fabric-agent");
const CLUSTER = "vpn-e2e";
const CONN = "org-a/exit";
const TTL_MS = 3000;
const BEHIND = "10.20.0.1";

interface Agent {
  name: string;
  host: NetnsHost;
  dir: string;
  hookLog: string;
  child?: ChildProcess;
  out: string;
}

async function vpnStatus(a: Agent): Promise<VpnStatusFile | undefined> {
  const r = await a.host.exec(agentBin, ["vpn", "status", "--output", "json", "--state-dir", a.dir]);
  if (r.code !== 0) return undefined;
  return (JSON.parse(r.stdout) as Array<{ vpn: VpnStatusFile | null }>)[0]?.vpn ?? undefined;
}

async function rowOf(a: Agent): Promise<VpnStatusFile["connections"][number] | undefined> {
  return (await vpnStatus(a))?.connections.find((c) => c.connection === CONN);
}

describe("e2e: VPN failover between real agents in network namespaces, real WireGuard to a remote site", function () {
  this.timeout(300_000);
  let lab: NetnsLab;
  const wg = new WgLab();
  let cp: ControlPlane;
  let cpDir: string;
  let forwarder: { port: number; close(): Promise<void> };
  let echo: { senders: string[] };
  let hookDir: string;
  const agents: Agent[] = [];
  const byName = (n: string): Agent => agents.find((a) => a.name === n)!;
  const fq = (n: string): string => `${CLUSTER}.${n}`;
  const ifOf = (a: Agent): string => interfaceName("afw", CLUSTER, fq(a.name), CONN);

  const startAgent = (a: Agent): void => {
    a.out = "";
    const child = a.host.spawn(agentBin, ["run", "--state-dir", a.dir, "--capabilities", VPN_CAPABILITIES.join(","), "--heartbeat-interval", "1s", "--backoff-cap", "1s", "--mesh-port", "0", "--vpn-hook", joinPath(hookDir, "hook.sh"), "--vpn-interface-prefix", "afw"], {
      stdio: ["ignore", "pipe", "pipe"],
      env: agentEnv({ HOOK_LOG: a.hookLog }),
    });
    child.stdout?.on("data", (b: Buffer) => (a.out = (a.out + b.toString()).slice(-20_000)));
    child.stderr?.on("data", (b: Buffer) => (a.out = (a.out + b.toString()).slice(-20_000)));
    a.child = child;
  };
  const stopAgent = async (a: Agent, signal: NodeJS.Signals): Promise<void> => {
    const c = a.child;
    if (c === undefined || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once("exit", r));
    c.kill(signal);
    await exited;
  };
  const hookLines = (a: Agent): string[] => (existsSync(a.hookLog) ? readFileSync(a.hookLog, "utf8").split("\n").filter((l) => l !== "") : []);
  const grants = async (): Promise<Array<{ token: string; holder: string; granted_at: Date }>> =>
    (await cp.db.pool.query<{ token: string; holder: string; granted_at: Date }>("SELECT token::text, holder, granted_at FROM vpn_grants WHERE connection = $1 ORDER BY token", [CONN])).rows;
  const diagnostics = (): string => agents.map((a) => `--- ${a.name}\n${a.out.slice(-4000)}`).join("\n");
  const holdsWithTunnel = async (a: Agent): Promise<number | undefined> => {
    const r = await rowOf(a);
    return r?.state === "assigned" && r.tunnel === "up" && r.token !== undefined ? r.token : undefined;
  };
  /** A probe from the agent's namespace that the remote site saw coming out of the tunnel. */
  const reachesThroughTunnel = async (a: Agent): Promise<boolean> => {
    const before = echo.senders.length;
    return (await udpProbe(a.host.netns, BEHIND, 7007, 1000)) && echo.senders.slice(before).includes("10.99.0.2");
  };

  before(async () => {
    lab = await createLab("afw");
    const hosts = { n1: await lab.addHost("n1"), n2: await lab.addHost("n2"), site: await lab.addHost("site") };
    hookDir = mkdtempSync(joinPath(tmpdir(), "afw-vpn-e2e-"));
    writeFileSync(joinPath(hookDir, "hook.sh"), `#!/bin/sh\necho "$FABRIC_VPN_EVENT $FABRIC_VPN_CONNECTION $FABRIC_VPN_TOKEN $(date +%s%3N)" >> "$HOOK_LOG"\n`);
    chmodSync(joinPath(hookDir, "hook.sh"), 0o755);
    chmodSync(hookDir, 0o755);

    // The remote site: the peer of the connection's key, no fixed endpoint (it learns the holder's from its handshake).
    const conn = wgKeys();
    const site = wgKeys();
    await wg.remoteSite({ ns: hosts.site.netns, ifname: "afwsite0", keys: site, listenPort: 51820, address: "10.99.0.1/32", peerPublicKey: conn.publicKey, peerAllowed: "10.99.0.2/32", behind: `${BEHIND}/32` });
    echo = await wg.echoServer(hosts.site.netns, BEHIND, 7007);

    cpDir = tempStateDir();
    cp = await runControlPlane({
      stateDir: cpDir,
      host: "127.0.0.1",
      port: 0,
      metricsPort: 0,
      fsync: false,
      log: logger("test-controlplane"),
      controllers: { identity: "vpn-e2e", sweepIntervalMs: 1000 },
      agentPort: 0,
      agentApi: { rateLimit: { burst: 100_000, perSecond: 100_000 }, serverNames: [lab.rootAddress] },
    });
    const agentApi = cp.agentApi!;
    forwarder = await forwardTcp(lab.rootAddress, agentApi.port);
    const server = `https://${lab.rootAddress}:${forwarder.port}`;
    const kubeconfig = cp.api.kubeconfigPath;
    await apply(kubeconfig, { apiVersion: "accessfabric.io/v1alpha1", kind: "FabricCluster", metadata: { name: CLUSTER }, spec: { enrollmentPolicy: { approval: "TokenAutoApprove" } } });
    const w = await kubectl(kubeconfig, ["wait", "--for=condition=Ready", `fabriccluster/${CLUSTER}`, "--timeout=60s"]);
    assert.equal(w.code, 0, w.stderr);
    const token = await createToken(kubeconfig, "vpn-e2e-join", { cluster: CLUSTER, maxUses: 5, autoApprove: true });
    for (const name of ["n1", "n2"] as const) {
      const dir = tempStateDir("afw-vpn-agent-");
      await join({ server, token, caHash: agentApi.caHash, stateDir: dir, nodeName: name, cluster: CLUSTER, capabilities: VPN_CAPABILITIES, pollIntervalMs: 200, timeoutMs: 120_000 });
      const a: Agent = { name, host: hosts[name], dir, hookLog: joinPath(hookDir, `${name}.log`), out: "" };
      agents.push(a);
      startAgent(a);
    }
    await ensureNamespace(kubeconfig, "org-a");
    const credential = `[Interface]\nPrivateKey = ${conn.privateKey}\nAddress = 10.99.0.2/32\n[Peer]\nPublicKey = ${site.publicKey}\nEndpoint = ${hosts.site.address}:51820\nAllowedIPs = 10.20.0.0/16\nPersistentKeepalive = 1\n`;
    await apply(kubeconfig, credentialSecret("org-a", "exit-creds", credential));
    await apply(kubeconfig, { apiVersion: "accessfabric.io/v1alpha1", kind: "RoleAssignment", metadata: { name: "vpn-exits" }, spec: { cluster: CLUSTER, role: "vpn-exit", nodeNames: [fq("n1"), fq("n2")] } });
    await apply(
      kubeconfig,
      vpnConnection("org-a", "exit", {
        cluster: CLUSTER,
        mode: "Exit",
        allowedNodes: [fq("n1"), fq("n2")],
        routePolicies: [
          { name: "office", destination: "10.20.0.0/16" },
          { name: "keep-out", destination: "10.20.5.0/24", action: "Exclude" },
        ],
        credentialSecretRef: { name: "exit-creds" },
        leaseDuration: `${TTL_MS / 1000}s`,
      }),
    );
  });

  after(async () => {
    for (const a of agents) await stopAgent(a, "SIGTERM").catch(() => undefined);
    await forwarder?.close();
    await cp?.stop();
    wg.cleanup();
    await lab?.destroy();
    for (const a of agents) rmSync(a.dir, { recursive: true, force: true });
    if (cpDir !== undefined) rmSync(cpDir, { recursive: true, force: true });
    if (hookDir !== undefined) rmSync(hookDir, { recursive: true, force: true });
  });

  it("the preferred node holds the lease; packets to a route-policy destination arrive at the remote site through its tunnel; the control plane shows its state", async () => {
    const n1 = byName("n1");
    const n2 = byName("n2");
    const token = await eventually(() => holdsWithTunnel(n1), 120_000, 250).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n${diagnostics()}`);
    });
    await eventually(() => reachesThroughTunnel(n1), 30_000, 200);
    assert.ok(hookLines(n1).some((l) => l.startsWith(`up ${CONN} ${token} `)), hookLines(n1).join("\n"));
    const other = await rowOf(n2);
    assert.equal(other?.state, "lease_required", JSON.stringify(other));
    assert.equal(other?.tunnel, "down");
    const g = await grants();
    assert.equal(g.at(-1)?.holder, fq("n1"));
    assert.equal(Number(g.at(-1)?.token), token);
    // The holder's report reaches VPNConnection status.
    await eventually(async () => {
      const r = await kubectl(cp.api.kubeconfigPath, ["get", "vpnconnection", "-n", "org-a", "exit", "-o", "jsonpath={.status.activeLease.holder} {.status.ownerState}"]);
      return r.stdout === `${fq("n1")} Assigned`;
    }, 30_000, 250);
  });

  it("the holder SIGKILLed: its wireguard-go dies with it, the other node holds the lease and its tunnel carries the packets", async () => {
    const n1 = byName("n1");
    const n2 = byName("n2");
    const before = (await grants()).length;
    assert.equal(processesWith(ifOf(n1)).length, 1, "n1's wireguard-go runs");
    await stopAgent(n1, "SIGKILL");
    await eventually(() => processesWith(ifOf(n1)).length === 0, 10_000, 100);
    const token = await eventually(() => holdsWithTunnel(n2), TTL_MS + 15_000, 100).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n${diagnostics()}`);
    });
    const g = await grants();
    assert.equal(g.length, before + 1);
    assert.equal(g.at(-1)?.holder, fq("n2"));
    assert.ok(token > Number(g.at(-2)?.token), "the new grant's token is higher");
    await eventually(() => reachesThroughTunnel(n2), 30_000, 200);
    assert.ok(hookLines(n2).some((l) => l.startsWith(`up ${CONN} ${token} `)));
  });

  it("the holder cut from the control plane tears its tunnel down by its deadline, before the next grant; reconnected, its stale tunnel carries nothing", async () => {
    const n1 = byName("n1");
    const n2 = byName("n2");
    startAgent(n1);
    await eventually(async () => (await rowOf(n1))?.state === "lease_required", 60_000, 250);
    const held = await holdsWithTunnel(n2);
    assert.ok(held !== undefined);
    const downsBefore = hookLines(n2).filter((l) => l.startsWith("down ")).length;
    await n2.host.cut();
    // n2 keeps running, cut off: its deadline timer tears the tunnel down (hook "down" with its token).
    const downLine = await eventually(() => hookLines(n2).filter((l) => l.startsWith("down "))[downsBefore], TTL_MS + 15_000, 100);
    assert.ok(downLine.startsWith(`down ${CONN} ${held} `), downLine);
    const downAt = Number(downLine.split(" ").at(-1));
    const next = await eventually(async () => (await grants()).find((g) => Number(g.token) > held), TTL_MS + 20_000, 100);
    assert.equal(next.holder, fq("n1"));
    assert.ok(downAt < next.granted_at.getTime(), `n2 tore down at ${downAt}, n1's grant started at ${next.granted_at.getTime()}`);
    const t1 = await eventually(() => holdsWithTunnel(n1), 30_000, 100);
    assert.equal(t1, Number(next.token));
    await eventually(() => reachesThroughTunnel(n1), 30_000, 200);
    // n2 reconnected: no tunnel interface, no wireguard-go, and its packets never come out of the tunnel.
    await n2.host.restore();
    const link = await n2.host.exec("ip", ["link", "show", ifOf(n2)]);
    assert.notEqual(link.code, 0, "the stale holder has no tunnel interface");
    assert.equal(processesWith(ifOf(n2)).length, 0);
    const before = echo.senders.length;
    assert.equal(await udpProbe(n2.host.netns, BEHIND, 7007, 1000), false, "nothing answers the stale holder through a tunnel");
    assert.ok(!echo.senders.slice(before).includes("10.99.0.2"));
    await eventually(async () => (await rowOf(n2))?.state === "lease_required", 30_000, 250);
    assert.ok(await reachesThroughTunnel(n1), "the new holder still carries the packets");
  });
});
