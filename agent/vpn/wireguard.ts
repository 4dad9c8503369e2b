/**
 * The VPN data plane: userspace WireGuard (`wireguard-go` from Debian's
 * package) on a TUN device, configured with `wg` and `ip`.
 *
 *   const dp = new WireGuardDataPlane({ log, hook });
 *   await dp.available();                       // { ok: false, reason } when a tool is missing
 *   await dp.up({ connection, token, ifname, credential, routes }, onCrash);
 *   await dp.down({ connection, token, ifname }, "released");
 *
 * - Detection: `wireguard-go`, `wg` and `ip` on PATH; when one is missing
 *   the owner reports `blocked` with the reason and never contends.
 * - Bring-up: `wireguard-go -f <ifname>` as a child of the agent (under
 *   `setpriv --pdeathsig KILL` when setpriv exists, so a SIGKILLed agent
 *   leaves no tunnel behind), wait for its control socket
 *   (/var/run/wireguard/<ifname>.sock: host-wide, hence host-unique names),
 *   `wg setconf <ifname> <file>` with the credential minus Address/MTU from
 *   a 0600 file in a fresh 0700 directory removed right after (the key is
 *   never in argv nor in a log line),
 *   `ip address add`, `ip link set up`, then one `ip route add <dest> dev
 *   <ifname> metric <m>` per `Route` policy (add: a host route with the same
 *   destination and metric is refused, never taken over).
 * - Kept out of the tunnel: each `Exclude` destination and each peer
 *   endpoint is pinned, before the tunnel routes exist, to the route it has
 *   now (`ip route get`: same gateway and device), or to a `throw` route
 *   when it has none; a destination that already has a route of its own
 *   prefix is left alone. Pins are removed at teardown.
 * - Teardown: SIGTERM (SIGKILL after 3 s), `ip link del`, pins removed,
 *   a stale control socket removed; idempotent (also for leftovers of a
 *   previous agent: clean()).
 * - A wireguard-go that exits on its own is a crash: the tunnel is cleaned
 *   up and onCrash is called with its exit status and last output line.
 * - Every bring-up and teardown carries (connection, token); the optional
 *   hook (`--vpn-hook PATH`) runs after each with FABRIC_VPN_CONNECTION,
 *   FABRIC_VPN_TOKEN, FABRIC_VPN_EVENT=up|down and FABRIC_VPN_INTERFACE.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import type { Logger } from "../../lib/log.js";
import type { ParsedCredential } from "./credential.js";
import type { VpnRoutePolicy } from "./types.js";

/** Where wireguard-go puts its control sockets (not separated by network namespaces). */
export const WIREGUARD_SOCKET_DIR = "/var/run/wireguard";

/** Options of WireGuardDataPlane. */
export interface DataPlaneOptions {
  log: Logger;
  /** Hook command run after each bring-up and teardown. */
  hook?: string;
  /** Runs every `wireguard-go`, `wg` and `ip` inside this network namespace (`nsenter --net`: unlike `ip netns exec`, it remounts nothing, so it also works in a chroot). */
  netns?: string;
  /** PATH searched for the tools (default $PATH plus the sbin directories). */
  path?: string;
  /** How long wireguard-go may take to create its interface (default 10 s). */
  readyTimeoutMs?: number;
}

/** What up() brings up. */
export interface TunnelSpec {
  connection: string;
  token: number;
  ifname: string;
  credential: ParsedCredential;
  routes: VpnRoutePolicy[];
}

/** The (connection, token) a teardown belongs to. */
export interface TunnelRef {
  connection: string;
  token: number;
  ifname: string;
}

/** Whether the data plane can run here. */
export type Availability = { ok: true } | { ok: false; reason: string };

interface Tunnel {
  spec: TunnelSpec;
  child: ChildProcess;
  exited: Promise<void>;
  stopping: boolean;
  pins: string[];
}

const COMMAND_TIMEOUT_MS = 10_000;

function findOnPath(name: string, path: string): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (dir === "") continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** The network address of a CIDR, as `ip route get` takes it. */
function firstAddress(cidr: string): string {
  return cidr.split("/")[0] ?? cidr;
}

/** See the module comment. */
export class WireGuardDataPlane {
  private readonly tunnels = new Map<string, Tunnel>();
  private tools: { wireguardGo: string; wg: string; ip: string; setpriv?: string } | undefined;
  private availability: Availability | undefined;
  private readonly path: string;

  constructor(private readonly o: DataPlaneOptions) {
    this.path = o.path ?? [process.env.PATH ?? "", "/usr/local/sbin", "/usr/sbin", "/sbin"].join(delimiter);
  }

  /** Detects the tools once; the reason names what is missing and how to get it. */
  available(): Availability {
    if (this.availability !== undefined) return this.availability;
    const wireguardGo = findOnPath("wireguard-go", this.path);
    const wg = findOnPath("wg", this.path);
    const ip = findOnPath("ip", this.path);
    const missing = [wireguardGo === undefined ? "wireguard-go (Debian package wireguard-go)" : "", wg === undefined ? "wg (wireguard-tools)" : "", ip === undefined ? "ip (iproute2)" : ""].filter((s) => s !== "");
    if (wireguardGo === undefined || wg === undefined || ip === undefined) {
      this.availability = { ok: false, reason: `VPN data plane unavailable: ${missing.join(", ")} not found on PATH` };
    } else {
      const setpriv = findOnPath("setpriv", this.path);
      this.tools = { wireguardGo, wg, ip, ...(setpriv !== undefined ? { setpriv } : {}) };
      if (setpriv === undefined) this.o.log.warn("setpriv not found: a SIGKILLed agent would leave its wireguard-go running", {});
      this.availability = { ok: true };
    }
    return this.availability;
  }

  /** True while the tunnel of `ifname` is up (its wireguard-go running). */
  isUp(ifname: string): boolean {
    const t = this.tunnels.get(ifname);
    return t !== undefined && !t.stopping;
  }

  private need(): { wireguardGo: string; wg: string; ip: string; setpriv?: string } {
    const a = this.available();
    if (!a.ok || this.tools === undefined) throw new Error(a.ok ? "VPN data plane unavailable" : a.reason);
    return this.tools;
  }

  private argv(cmd: string, args: string[]): [string, string[]] {
    if (this.o.netns === undefined) return [cmd, args];
    this.need();
    return [findOnPath("nsenter", this.path) ?? "nsenter", [`--net=/var/run/netns/${this.o.netns}`, cmd, ...args]];
  }

  /** Runs a tool; rejects with its stderr. */
  private run(cmd: string, args: string[]): Promise<string> {
    const [file, argv] = this.argv(cmd, args);
    return new Promise((resolve, reject) => {
      const child = spawn(file, argv, { stdio: ["pipe", "pipe", "pipe"] });
      let out = "";
      let err = "";
      const timer = setTimeout(() => child.kill("SIGKILL"), COMMAND_TIMEOUT_MS);
      child.stdout.on("data", (d: Buffer) => (out += d.toString("utf8")));
      child.stderr.on("data", (d: Buffer) => (err += d.toString("utf8")));
      child.on("error", (e) => {
        clearTimeout(timer);
        reject(new Error(`${cmd} ${args.join(" ")}: ${e.message}`));
      });
      child.on("close", (code, signal) => {
        clearTimeout(timer);
        if (code === 0) resolve(out);
        else reject(new Error(`${cmd.split("/").pop()} ${args.join(" ")}: ${err.trim() || (signal !== null ? `killed by ${signal}` : `exit ${code}`)}`));
      });
      child.stdin.end();
    });
  }

  /** `wg setconf` from a 0600 file in a fresh 0700 directory, removed right after (wg cannot read a socket as /dev/stdin). */
  private async setconf(wg: string, ifname: string, text: string): Promise<void> {
    const dir = mkdtempSync(join(tmpdir(), "fabric-vpn-"));
    try {
      const file = join(dir, "wg.conf");
      writeFileSync(file, text, { mode: 0o600 });
      await this.run(wg, ["setconf", ifname, file]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  private async ip(args: string[]): Promise<string> {
    return this.run(this.need().ip, args);
  }

  /** Pins `dest` to the route it has now (or a throw route); undefined when it needs no pin. */
  private async pin(dest: string, metric: number): Promise<string | undefined> {
    const exact = await this.ip(["route", "show", "exact", dest]).catch(() => "");
    if (exact.trim() !== "") return undefined;
    let via: string | undefined;
    let dev: string | undefined;
    try {
      const [r] = JSON.parse(await this.ip(["-j", "route", "get", firstAddress(dest)])) as { gateway?: string; dev?: string; type?: string }[];
      if (r?.type === undefined || r.type === "unicast") {
        via = r?.gateway;
        dev = r?.dev;
      }
    } catch {
      // no route: a throw route keeps it out
    }
    const args = dev === undefined ? ["route", "replace", "throw", dest, "metric", String(metric)] : ["route", "replace", dest, ...(via !== undefined ? ["via", via] : []), "dev", dev, "metric", String(metric)];
    await this.ip(args);
    return dest;
  }

  private async unpin(pins: string[]): Promise<void> {
    for (const dest of pins) await this.ip(["route", "del", dest]).catch(() => undefined);
  }

  private async waitReady(ifname: string, t: { exited: boolean; output: string[] }): Promise<void> {
    const sock = join(WIREGUARD_SOCKET_DIR, `${ifname}.sock`);
    const until = Date.now() + (this.o.readyTimeoutMs ?? 10_000);
    for (;;) {
      if (t.exited) throw new Error(`wireguard-go exited before creating ${ifname}: ${t.output.at(-1) ?? "no output"}`);
      if (existsSync(sock)) return;
      if (Date.now() > until) throw new Error(`wireguard-go did not create ${ifname} within ${this.o.readyTimeoutMs ?? 10_000} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /**
   * Brings the tunnel up (see the module comment); on failure everything it
   * did is undone and the error thrown (also when `signal` aborts between
   * steps). onCrash is called when wireguard-go exits without a teardown.
   */
  async up(spec: TunnelSpec, onCrash: (reason: string) => void, signal?: AbortSignal): Promise<void> {
    const tools = this.need();
    const step = () => {
      if (signal?.aborted === true) throw new Error(`bring-up of ${spec.ifname} aborted (the lease ended)`);
    };
    if (this.tunnels.has(spec.ifname)) throw new Error(`tunnel ${spec.ifname} is already up`);
    await this.clean(spec.ifname);
    step();
    const pins: string[] = [];
    const state = { exited: false, output: [] as string[] };
    let tunnel: Tunnel | undefined;
    try {
      for (const r of spec.routes.filter((r) => r.action === "Exclude")) {
        const p = await this.pin(r.destination, r.metric);
        if (p !== undefined) pins.push(p);
      }
      for (const host of spec.credential.endpointHosts) {
        const p = await this.pin(host.includes(":") ? `${host}/128` : `${host}/32`, 0);
        if (p !== undefined) pins.push(p);
      }
      const wgArgs = ["-f", spec.ifname];
      const [file, argv] = tools.setpriv !== undefined ? this.argv(tools.setpriv, ["--pdeathsig", "KILL", "--", tools.wireguardGo, ...wgArgs]) : this.argv(tools.wireguardGo, wgArgs);
      const child = spawn(file, argv, { stdio: ["ignore", "pipe", "pipe"] });
      const keep = (d: Buffer) => {
        for (const l of d.toString("utf8").split("\n")) if (l.trim() !== "" && !/^[│┌└ ]/.test(l)) state.output.push(l.trim());
        state.output.splice(0, Math.max(0, state.output.length - 5));
      };
      child.stdout?.on("data", keep);
      child.stderr?.on("data", keep);
      const exited = new Promise<void>((resolve) => {
        child.on("error", (e) => {
          state.output.push(e.message);
          state.exited = true;
          resolve();
        });
        child.on("exit", (code, signal) => {
          state.exited = true;
          resolve();
          const t = this.tunnels.get(spec.ifname);
          if (t === undefined || t.child !== child || t.stopping) return;
          this.tunnels.delete(spec.ifname);
          const reason = `wireguard-go of ${spec.ifname} exited (${signal !== null ? `signal ${signal}` : `code ${code}`}): ${state.output.at(-1) ?? "no output"}`;
          this.o.log.warn("VPN data plane crashed", { connection: spec.connection, token: spec.token, ifname: spec.ifname, reason });
          void this.clean(spec.ifname, t.pins).finally(() => {
            void this.callHook(spec.connection, spec.token, spec.ifname, "down");
            onCrash(reason);
          });
        });
      });
      tunnel = { spec, child, exited, stopping: false, pins };
      this.tunnels.set(spec.ifname, tunnel);
      await this.waitReady(spec.ifname, state);
      step();
      await this.setconf(tools.wg, spec.ifname, spec.credential.setconf);
      for (const a of spec.credential.addresses) await this.ip(["address", "add", a, "dev", spec.ifname]);
      if (spec.credential.mtu !== undefined) await this.ip(["link", "set", spec.ifname, "mtu", String(spec.credential.mtu)]);
      step();
      await this.ip(["link", "set", spec.ifname, "up"]);
      for (const r of spec.routes.filter((r) => r.action === "Route")) {
        // `add`, never `replace`: a route of the host with the same destination and metric (its default route, say) is not ours to take over.
        await this.ip(["route", "add", r.destination, "dev", spec.ifname, "metric", String(r.metric)]).catch((err: Error) => {
          throw new Error(/File exists/.test(err.message) ? `route ${r.destination} metric ${r.metric} already exists on this host: the policy needs another metric` : err.message);
        });
      }
      step();
    } catch (err) {
      if (tunnel !== undefined) tunnel.stopping = true;
      await this.stopChild(tunnel);
      this.tunnels.delete(spec.ifname);
      await this.clean(spec.ifname, pins);
      throw err;
    }
    this.o.log.info("VPN tunnel up", { connection: spec.connection, token: spec.token, ifname: spec.ifname, routes: spec.routes.length });
    await this.callHook(spec.connection, spec.token, spec.ifname, "up");
  }

  private async stopChild(t: Tunnel | undefined): Promise<void> {
    if (t === undefined) return;
    t.child.kill("SIGTERM");
    const killed = await Promise.race([t.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 3000).unref())]);
    if (!killed) {
      t.child.kill("SIGKILL");
      await t.exited;
    }
  }

  /** Tears the tunnel down; idempotent. The hook runs when there was a tunnel to tear down. */
  async down(ref: TunnelRef, reason: string): Promise<void> {
    const t = this.tunnels.get(ref.ifname);
    if (t !== undefined) {
      t.stopping = true;
      await this.stopChild(t);
      this.tunnels.delete(ref.ifname);
    }
    await this.clean(ref.ifname, t?.pins ?? []);
    if (t !== undefined) {
      this.o.log.info("VPN tunnel down", { connection: ref.connection, token: ref.token, ifname: ref.ifname, reason });
      await this.callHook(ref.connection, ref.token, ref.ifname, "down");
    }
  }

  /** Removes the interface, the pins and a stale control socket, whatever is there (leftovers of a previous agent too). */
  async clean(ifname: string, pins: string[] = []): Promise<void> {
    if (!this.available().ok) return;
    await this.ip(["link", "del", ifname]).catch(() => undefined);
    await this.unpin(pins);
    if (!this.tunnels.has(ifname)) rmSync(join(WIREGUARD_SOCKET_DIR, `${ifname}.sock`), { force: true });
  }

  /** Tears every tunnel down (agent shutdown). */
  async downAll(reason: string): Promise<void> {
    await Promise.all([...this.tunnels.values()].map((t) => this.down(t.spec, reason)));
  }

  private callHook(connection: string, token: number, ifname: string, event: "up" | "down"): Promise<void> {
    const hook = this.o.hook;
    if (hook === undefined) return Promise.resolve();
    return new Promise((resolve) => {
      const child = spawn(hook, [], {
        stdio: ["ignore", "ignore", "pipe"],
        env: { ...process.env, FABRIC_VPN_CONNECTION: connection, FABRIC_VPN_TOKEN: String(token), FABRIC_VPN_EVENT: event, FABRIC_VPN_INTERFACE: ifname },
      });
      let err = "";
      const timer = setTimeout(() => child.kill("SIGKILL"), COMMAND_TIMEOUT_MS);
      child.stderr?.on("data", (d: Buffer) => (err = (err + d.toString("utf8")).slice(-500)));
      child.on("error", (e) => {
        clearTimeout(timer);
        this.o.log.warn("VPN hook failed to start", { hook, connection, token, event, error: e.message });
        resolve();
      });
      child.on("close", (code) => {
        clearTimeout(timer);
        if (code !== 0) this.o.log.warn("VPN hook failed", { hook, connection, token, event, code, stderr: err.trim() });
        resolve();
      });
    });
  }
}
