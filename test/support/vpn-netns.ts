/**
 * Test support for the VPN data plane: network namespaces, veth pairs, a
 * "remote site" WireGuard peer and UDP echo probes, all named with the
 * caller's prefix and removed by cleanup() (call it in after/afterEach).
 * Everything stays inside namespaces the test created.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { connect, createServer, type AddressInfo, type Socket } from "node:net";
import { dirname, join } from "node:path";

/** Runs `ip ...` (throws with stderr on failure). */
export function ip(...args: string[]): string {
  return execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Runs a command inside a namespace. */
export function inNs(ns: string, cmd: string, args: string[], input?: string): string {
  return execFileSync("ip", ["netns", "exec", ns, cmd, ...args], { encoding: "utf8", input: input ?? "", stdio: ["pipe", "pipe", "pipe"] });
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
    const c = spawn("ip", ["netns", "exec", ns, cmd, ...args], { stdio: ["ignore", "pipe", "pipe"] });
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
    const c = spawn("ip", ["netns", "exec", ns, process.execPath, "-e", script], { stdio: ["ignore", "pipe", "ignore"] });
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
