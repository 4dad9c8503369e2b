/**
 * Test support for the VPN data plane: network namespaces, veth pairs, a
 * "remote site" WireGuard peer and UDP echo probes, all named with the
 * caller's prefix and removed by cleanup() (call it in after/afterEach);
 * and VpnRig, real agents in namespaces contending for one connection
 * (the e2e test and the failover benchmark). Everything stays inside
 * namespaces the test created.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { connect, createServer, type AddressInfo, type Socket } from "node:net";
import { dirname, join } from "node:path";
import { loadIdentities } from "../../agent/enroll/identity-store.js";
import { join as joinNode } from "../../agent/enroll/join.js";
import { interfaceName } from "../../agent/vpn/plan.js";
import { readVpnStatus, type VpnStatusFile, type VpnStatusRow } from "../../agent/vpn/vpn-status.js";
import { runControlPlane, type ControlPlane } from "../../controlplane/controlplane.js";
import { logger } from "../../lib/log.js";
import { seedStateDir } from "./pg-template.js";
import { agentEnv, kubectl, repoRoot, tempStateDir } from "./controlplane.js";
import { createToken } from "./enrollment.js";
import { createLab, inNetns, type NetnsHost, type NetnsLab as Lab } from "./netns.js";
import { apply, credentialSecret, ensureNamespace, VPN_CAPABILITIES, vpnConnection, waitHealthy } from "./vpn-fleet.js";

const AGENT_BIN = join(repoRoot, "bin", "fabric-agent");

/** Runs `ip ...` (throws with stderr on failure). */
export function ip(...args: string[]): string {
  return execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Runs a command inside a namespace. */
export function inNs(ns: string, cmd: string, args: string[], input?: string): string {
  return execFileSync(...inNetns(ns, cmd, args), { encoding: "utf8", input: input ?? "", stdio: ["pipe", "pipe", "pipe"] });
}

/** A WireGuard key pair from `wg`. */
export function wgKeys(): { privateKey: string; publicKey: string } {
  const privateKey = execFileSync("wg", ["genkey"], { encoding: "utf8" }).trim();
  const publicKey = execFileSync("wg", ["pubkey"], { encoding: "utf8", input: privateKey }).trim();
  return { privateKey, publicKey };
}

/** Namespaces, links and processes a test made; cleanup() removes them all. */
export class NetnsLab {
  readonly namespaces: string[] = [];
  readonly children: ChildProcess[] = [];
  readonly sockets: string[] = [];

  /** A namespace with lo up (an existing one of the same name, a leftover, is removed first). */
  ns(name: string): string {
    try {
      ip("netns", "del", name);
    } catch {
      // not there
    }
    ip("netns", "add", name);
    this.namespaces.push(name);
    inNs(name, "ip", ["link", "set", "lo", "up"]);
    return name;
  }

  /** A veth pair between two namespaces with an address on each end. */
  link(a: { ns: string; dev: string; addr: string }, b: { ns: string; dev: string; addr: string }): void {
    ip("link", "add", a.dev, "netns", a.ns, "type", "veth", "peer", "name", b.dev, "netns", b.ns);
    for (const e of [a, b]) {
      inNs(e.ns, "ip", ["address", "add", e.addr, "dev", e.dev]);
      inNs(e.ns, "ip", ["link", "set", e.dev, "up"]);
    }
  }

  /** Starts a long-running process inside a namespace (killed by cleanup). */
  spawnIn(ns: string, cmd: string, args: string[]): ChildProcess {
    const c = spawn(...inNetns(ns, cmd, args), { stdio: ["ignore", "pipe", "pipe"] });
    this.children.push(c);
    return c;
  }

  /**
   * The remote site: wireguard-go on `ifname` in `ns`, listening on
   * `listenPort`, its tunnel address, one peer (the holder's public key,
   * allowed `peerAllowed`) and `behind` (the network the connection routes
   * to) on its loopback.
   */
  async remoteSite(o: { ns: string; ifname: string; keys: { privateKey: string }; listenPort: number; address: string; peerPublicKey: string; peerAllowed: string; behind: string }): Promise<void> {
    const c = this.spawnIn(o.ns, "wireguard-go", ["-f", o.ifname]);
    this.sockets.push(o.ifname);
    await waitFor(() => {
      try {
        inNs(o.ns, "wg", ["show", o.ifname]);
        return true;
      } catch {
        if (c.exitCode !== null) throw new Error(`remote wireguard-go exited ${c.exitCode}`);
        return false;
      }
    }, 10_000);
    const conf = join(mkdtempSync(join(tmpdir(), "afw-wg-")), "wg.conf");
    writeFileSync(conf, `[Interface]\nPrivateKey = ${o.keys.privateKey}\nListenPort = ${o.listenPort}\n[Peer]\nPublicKey = ${o.peerPublicKey}\nAllowedIPs = ${o.peerAllowed}\n`, { mode: 0o600 });
    inNs(o.ns, "wg", ["setconf", o.ifname, conf]);
    rmSync(dirname(conf), { recursive: true, force: true });
    inNs(o.ns, "ip", ["address", "add", o.address, "dev", o.ifname]);
    inNs(o.ns, "ip", ["link", "set", o.ifname, "up"]);
    inNs(o.ns, "ip", ["route", "add", o.peerAllowed, "dev", o.ifname]);
    inNs(o.ns, "ip", ["address", "add", o.behind, "dev", "lo"]);
  }

  /**
   * A UDP echo server in `ns` on host:port: answers every datagram and
   * records the sender address (from). Resolves once it is listening.
   */
  async echoServer(ns: string, host: string, port: number): Promise<{ senders: string[] }> {
    const script = `const s=require("node:dgram").createSocket("udp4");s.on("message",(m,r)=>{process.stdout.write(r.address+"\\n");s.send(m,r.port,r.address)});s.bind(${port},${JSON.stringify(host)},()=>process.stdout.write("listening\\n"));`;
    const c = this.spawnIn(ns, process.execPath, ["-e", script]);
    const senders: string[] = [];
    let listening = false;
    let buf = "";
    c.stdout?.on("data", (d: Buffer) => {
      buf += d.toString("utf8");
      const lines = buf.split("\n");
      buf = lines.pop() ?? "";
      for (const l of lines) {
        if (l === "listening") listening = true;
        else senders.push(l);
      }
    });
    await waitFor(() => {
      if (c.exitCode !== null) throw new Error(`echo server in ${ns} exited ${c.exitCode}`);
      return listening;
    }, 10_000);
    return { senders };
  }

  /** Removes everything this lab made; never throws. */
  cleanup(): void {
    for (const c of this.children) {
      try {
        c.kill("SIGKILL");
      } catch {
        // gone
      }
    }
    for (const ns of this.namespaces.splice(0)) {
      try {
        ip("netns", "del", ns);
      } catch {
        // gone
      }
    }
    for (const s of this.sockets.splice(0)) rmSync(`/var/run/wireguard/${s}.sock`, { force: true });
  }
}

/**
 * Sends one UDP datagram from `ns` to host:port and waits up to `timeoutMs`
 * for the echo: true when it came back.
 */
export function udpProbe(ns: string, host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  const script = `const s=require("node:dgram").createSocket("udp4");const t=setTimeout(()=>{process.stdout.write("timeout");process.exit(0)},${timeoutMs});s.on("message",()=>{process.stdout.write("echo");process.exit(0)});s.on("error",(e)=>{process.stdout.write("error "+e.code);process.exit(0)});s.send("probe",${port},${JSON.stringify(host)});`;
  return new Promise((resolve) => {
    const c = spawn(...inNetns(ns, process.execPath, ["-e", script]), { stdio: ["ignore", "pipe", "ignore"] });
    let out = "";
    c.stdout.on("data", (d: Buffer) => (out += d.toString("utf8")));
    c.on("close", () => resolve(out === "echo"));
  });
}

/** Polls `fn` until it returns true (or throws), up to `timeoutMs`. */
export async function waitFor(fn: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > until) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A TCP forwarder in the root namespace: listens on `host` (e.g. a lab
 * bridge address, so agents inside namespaces reach it) and forwards to
 * 127.0.0.1:`targetPort` (the control plane's agent API).
 */
export async function forwardTcp(host: string, targetPort: number): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((c) => {
    const u = connect(targetPort, "127.0.0.1");
    for (const s of [c, u]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => undefined);
    }
    c.pipe(u);
    u.pipe(c);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** One real agent of a VpnRig, in its own namespace. */
export interface RigAgent {
  name: string;
  host: NetnsHost;
  /** State directory. */
  dir: string;
  /** Where the hook appends "<event> <connection> <token> <epoch ms>". */
  hookLog: string;
  child?: ChildProcess;
  out: string;
}

/**
 * Real agents in network namespaces (test/support/netns.ts, lab prefix
 * given), a control plane in this process whose agent API they reach
 * through a forwarder on the lab's bridge address, a remote site (namespace
 * `<prefix>-site`: a WireGuard peer of the connection's key and a UDP echo
 * server on 10.20.0.1:7007), and one VPNConnection `org-a/exit` with a
 * Route and an Exclude policy that every agent may own, in the agents'
 * order of preference. Agents run with `--vpn-interface-prefix <prefix>`
 * and a hook that logs each event with its time.
 */
export class VpnRig {
  static readonly CLUSTER = "vpn-e2e";
  static readonly CONN = "org-a/exit";
  static readonly BEHIND = "10.20.0.1";
  readonly agents: RigAgent[] = [];
  readonly wg = new NetnsLab();
  lab!: Lab;
  cp!: ControlPlane;
  echo!: { senders: string[] };
  private cpDir: string | undefined;
  private hookDir: string | undefined;
  private forwarder: { port: number; close(): Promise<void> } | undefined;

  constructor(
    readonly prefix: string,
    readonly ttlMs: number,
  ) {}

  fq(n: string): string {
    return `${VpnRig.CLUSTER}.${n}`;
  }

  agent(n: string): RigAgent {
    const a = this.agents.find((x) => x.name === n);
    if (a === undefined) throw new Error(`no agent ${n}`);
    return a;
  }

  ifOf(a: RigAgent): string {
    return interfaceName(this.prefix, VpnRig.CLUSTER, this.fq(a.name), VpnRig.CONN);
  }

  async start(names: string[]): Promise<void> {
    this.lab = await createLab(this.prefix);
    const hosts = new Map<string, NetnsHost>();
    for (const n of names) hosts.set(n, await this.lab.addHost(n));
    const siteHost = await this.lab.addHost("site");
    this.hookDir = mkdtempSync(join(tmpdir(), `${this.prefix}-vpn-`));
    chmodSync(this.hookDir, 0o755);
    writeFileSync(join(this.hookDir, "hook.sh"), `#!/bin/sh\necho "$FABRIC_VPN_EVENT $FABRIC_VPN_CONNECTION $FABRIC_VPN_TOKEN $(date +%s%3N)" >> "$HOOK_LOG"\n`, { mode: 0o755 });
    // The remote site: the peer of the connection's key, no fixed endpoint (it learns the holder's from its handshake).
    const conn = wgKeys();
    const site = wgKeys();
    await this.wg.remoteSite({ ns: siteHost.netns, ifname: `${this.prefix}site0`, keys: site, listenPort: 51820, address: "10.99.0.1/32", peerPublicKey: conn.publicKey, peerAllowed: "10.99.0.2/32", behind: `${VpnRig.BEHIND}/32` });
    this.echo = await this.wg.echoServer(siteHost.netns, VpnRig.BEHIND, 7007);

    this.cpDir = tempStateDir();
    await seedStateDir(this.cpDir);
    this.cp = await runControlPlane({
      stateDir: this.cpDir,
      host: "127.0.0.1",
      port: 0,
      metricsPort: 0,
      fsync: false,
      log: logger("test-controlplane"),
      controllers: { identity: "vpn-e2e", sweepIntervalMs: 1000 },
      agentPort: 0,
      agentApi: { rateLimit: { burst: 100_000, perSecond: 100_000 }, serverNames: [this.lab.rootAddress] },
    });
    const agentApi = this.cp.agentApi;
    if (agentApi === undefined) throw new Error("agent api did not start");
    this.forwarder = await forwardTcp(this.lab.rootAddress, agentApi.port);
    const server = `https://${this.lab.rootAddress}:${this.forwarder.port}`;
    const kubeconfig = this.cp.api.kubeconfigPath;
    await apply(kubeconfig, { apiVersion: "accessfabric.io/v1alpha1", kind: "FabricCluster", metadata: { name: VpnRig.CLUSTER }, spec: { enrollmentPolicy: { approval: "TokenAutoApprove" } } });
    const w = await kubectl(kubeconfig, ["wait", "--for=condition=Ready", `fabriccluster/${VpnRig.CLUSTER}`, "--timeout=60s"]);
    if (w.code !== 0) throw new Error(w.stderr);
    const token = await createToken(kubeconfig, "vpn-e2e-join", { cluster: VpnRig.CLUSTER, maxUses: names.length, autoApprove: true });
    for (const name of names) {
      const dir = tempStateDir(`${this.prefix}-vpn-agent-`);
      await joinNode({ server, token, caHash: agentApi.caHash, stateDir: dir, nodeName: name, cluster: VpnRig.CLUSTER, capabilities: VPN_CAPABILITIES, pollIntervalMs: 200, timeoutMs: 120_000 });
      const a: RigAgent = { name, host: hosts.get(name)!, dir, hookLog: join(this.hookDir, `${name}.log`), out: "" };
      this.agents.push(a);
      this.startAgent(a);
    }
    // Every agent Healthy before the connection exists: eligibility is decided when the connection is reconciled
    // (a node turning healthy later is picked up only by a later reconcile of the connection).
    await waitHealthy((sql, params) => this.cp.db.pool.query(sql, params), names.map((n) => this.fq(n)), 120_000);
    await ensureNamespace(kubeconfig, "org-a");
    const credential = `[Interface]\nPrivateKey = ${conn.privateKey}\nAddress = 10.99.0.2/32\n[Peer]\nPublicKey = ${site.publicKey}\nEndpoint = ${siteHost.address}:51820\nAllowedIPs = 10.20.0.0/16\nPersistentKeepalive = 1\n`;
    await apply(kubeconfig, credentialSecret("org-a", "exit-creds", credential));
    await apply(kubeconfig, { apiVersion: "accessfabric.io/v1alpha1", kind: "RoleAssignment", metadata: { name: "vpn-exits" }, spec: { cluster: VpnRig.CLUSTER, role: "vpn-exit", nodeNames: names.map((n) => this.fq(n)) } });
    await apply(
      kubeconfig,
      vpnConnection("org-a", "exit", {
        cluster: VpnRig.CLUSTER,
        mode: "Exit",
        allowedNodes: names.map((n) => this.fq(n)),
        routePolicies: [
          { name: "office", destination: "10.20.0.0/16" },
          { name: "keep-out", destination: "10.20.5.0/24", action: "Exclude" },
        ],
        credentialSecretRef: { name: "exit-creds" },
        leaseDuration: `${this.ttlMs / 1000}s`,
      }),
    );
  }

  startAgent(a: RigAgent): void {
    a.out = "";
    const child = a.host.spawn(AGENT_BIN, ["run", "--state-dir", a.dir, "--capabilities", VPN_CAPABILITIES.join(","), "--heartbeat-interval", "1s", "--backoff-cap", "1s", "--mesh-port", "0", "--vpn-hook", join(this.hookDir ?? "", "hook.sh"), "--vpn-interface-prefix", this.prefix], {
      stdio: ["ignore", "pipe", "pipe"],
      env: agentEnv({ HOOK_LOG: a.hookLog }),
    });
    child.stdout?.on("data", (b: Buffer) => (a.out = (a.out + b.toString()).slice(-20_000)));
    child.stderr?.on("data", (b: Buffer) => (a.out = (a.out + b.toString()).slice(-20_000)));
    a.child = child;
  }

  async stopAgent(a: RigAgent, signal: NodeJS.Signals): Promise<void> {
    const c = a.child;
    if (c === undefined || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once("exit", r));
    c.kill(signal);
    await exited;
  }

  hookLines(a: RigAgent): string[] {
    return existsSync(a.hookLog) ? readFileSync(a.hookLog, "utf8").split("\n").filter((l) => l !== "") : [];
  }

  async grants(): Promise<Array<{ token: string; holder: string; granted_at: Date }>> {
    return (await this.cp.db.pool.query<{ token: string; holder: string; granted_at: Date }>("SELECT token::text, holder, granted_at FROM vpn_grants WHERE connection = $1 ORDER BY token", [VpnRig.CONN])).rows;
  }

  /** The agent's vpn-status.json (from its membership directory), when the running process wrote it. */
  async status(a: RigAgent): Promise<VpnStatusFile | undefined> {
    const [id] = await loadIdentities(a.dir);
    if (id === undefined) return undefined;
    const s = await readVpnStatus(id.dir).catch(() => undefined);
    return s !== undefined && s.pid === a.child?.pid ? s : undefined;
  }

  /** The running agent's row of the connection. */
  async row(a: RigAgent): Promise<VpnStatusRow | undefined> {
    return (await this.status(a))?.connections.find((c) => c.connection === VpnRig.CONN);
  }

  /** The token when the agent holds the lease with its tunnel up. */
  async holdsWithTunnel(a: RigAgent): Promise<number | undefined> {
    const r = await this.row(a);
    return r?.state === "assigned" && r.tunnel === "up" && r.token !== undefined ? r.token : undefined;
  }

  /** A probe from the agent's namespace that the remote site saw coming out of the tunnel. */
  async reachesThroughTunnel(a: RigAgent): Promise<boolean> {
    const before = this.echo.senders.length;
    return (await udpProbe(a.host.netns, VpnRig.BEHIND, 7007, 1000)) && this.echo.senders.slice(before).includes("10.99.0.2");
  }

  diagnostics(): string {
    return this.agents.map((a) => `--- ${a.name}\n${a.out.slice(-4000)}`).join("\n");
  }

  async stop(): Promise<void> {
    for (const a of this.agents) await this.stopAgent(a, "SIGTERM").catch(() => undefined);
    await this.forwarder?.close();
    await this.cp?.stop();
    this.wg.cleanup();
    await this.lab?.destroy();
    for (const a of this.agents) {
      rmSync(a.dir, { recursive: true, force: true });
      // A SIGKILLed wireguard-go leaves its socket; the next agent would remove it, but this one may not have got that far.
      rmSync(`/var/run/wireguard/${this.ifOf(a)}.sock`, { force: true });
    }
    if (this.cpDir !== undefined) rmSync(this.cpDir, { recursive: true, force: true });
    if (this.hookDir !== undefined) rmSync(this.hookDir, { recursive: true, force: true });
  }
}
