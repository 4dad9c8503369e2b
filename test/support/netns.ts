/**
 * Test support: separate hosts on one machine. A lab is a Linux bridge in the
 * root namespace plus one network namespace per host, each joined to the
 * bridge by a veth pair and given one IPv4 address of the lab's /24. The root
 * namespace holds `.1` on the bridge, so the test process reaches servers run
 * inside the namespaces (it is only a client there).
 *
 * Every name derives from a caller-given prefix (2-6 lowercase letters):
 * namespaces `<prefix>-<host>`, the bridge `<prefix>br`, veth ends
 * `<prefix><n>a` (root side, a bridge port) and `<prefix><n>b` (inside the
 * namespace). Parallel users with different prefixes never clash; the subnet
 * is hashed from the prefix and moved on while it overlaps a route of the
 * root namespace. createLab() first removes what a killed run with the same
 * prefix left behind (processes still running inside its namespaces are
 * killed), and destroys what it built when it fails half-way.
 * Needs root and iproute2 (hack/netns-tools.sh installs it).
 */
import { execFile, spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { createHash } from "node:crypto";
import { promisify } from "node:util";

const execFileP = promisify(execFile);

/**
 * The command and arguments that run `command args` inside namespace `netns`.
 * nsenter enters only the network namespace; `ip netns exec` and `ip -n`
 * also remount / and /sys, which fails where / is not a mount point (a
 * chroot, as on a fresh machine: "mount --make-rslave / failed").
 */
export function inNetns(netns: string, command: string, args: readonly string[]): [string, string[]] {
  return ["nsenter", [`--net=/var/run/netns/${netns}`, command, ...args]];
}

/** Runs `ip ARGS` (`-n NETNS ...` inside that namespace, through nsenter); throws with its stderr on failure. */
export async function ip(args: string[]): Promise<string> {
  const [command, argv] = args[0] === "-n" && args[1] !== undefined ? inNetns(args[1], "ip", args.slice(2)) : ["ip", args];
  try {
    const r = await execFileP(command, argv, { encoding: "utf8" });
    return r.stdout;
  } catch (err) {
    const e = err as { code?: string | number; stderr?: string };
    if (e.code === "ENOENT") throw new Error("`ip` (iproute2) not found: run hack/netns-tools.sh (as root) to install it");
    throw new Error(`ip ${args.join(" ")} failed: ${(e.stderr ?? String(err)).trim()}`);
  }
}

/** One host: a namespace with one address on the lab's bridge. */
export interface NetnsHost {
  /** The caller's short name. */
  name: string;
  /** Namespace name (`<prefix>-<name>`). */
  netns: string;
  /** Its IPv4 address on the bridge. */
  address: string;
  /** Root-side veth (a bridge port): down cuts the host off. */
  hostVeth: string;
  /** Veth end inside the namespace. */
  innerVeth: string;
  /** Cuts the host off the bridge (root-side veth down): its processes keep running. */
  cut(): Promise<void>;
  /** Reconnects it. */
  restore(): Promise<void>;
  /** Spawns a process inside the namespace (`nsenter --net`, which execs: the child's pid is the command's). */
  spawn(command: string, args: string[], opts?: SpawnOptions): ChildProcess;
  /** Runs a command inside the namespace to completion. */
  exec(command: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
}

/** A bridge and the hosts on it. */
export interface NetnsLab {
  prefix: string;
  bridge: string;
  /** First three octets, e.g. "10.213.5". */
  subnet: string;
  /** The root namespace's address on the bridge (`<subnet>.1`). */
  rootAddress: string;
  /** Adds a host (namespace, veth pair, address, loopback up). At most 250 per lab. */
  addHost(name: string): Promise<NetnsHost>;
  hosts(): NetnsHost[];
  host(name: string): NetnsHost;
  /** Removes every namespace and interface of the prefix (processes inside should be stopped first). */
  destroy(): Promise<void>;
}

function checkPrefix(prefix: string): void {
  // Letters only, so that `<prefix><digits>` can never be read as another prefix's names.
  if (!/^[a-z]{2,6}$/.test(prefix)) throw new Error(`netns prefix ${JSON.stringify(prefix)}: 2-6 lowercase letters`);
}

/** Namespaces and root-namespace interfaces that belong to `prefix`. */
export async function leftovers(prefix: string): Promise<{ namespaces: string[]; links: string[] }> {
  checkPrefix(prefix);
  const namespaces = (await ip(["netns", "list"]))
    .split("\n")
    .map((l) => l.trim().split(/\s+/)[0] ?? "")
    .filter((n) => n.startsWith(`${prefix}-`));
  const own = new RegExp(`^${prefix}(br|\\d+[ab])$`);
  const links = (await ip(["-o", "link", "show"]))
    .split("\n")
    .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1] ?? "")
    .filter((n) => own.test(n));
  return { namespaces, links };
}

/** Removes every namespace and interface of `prefix` (a killed run's leftovers, or a lab's own). */
export async function cleanupPrefix(prefix: string): Promise<void> {
  const found = await leftovers(prefix);
  // A namespace outlives its name while a process holds it: end what runs inside first (only this prefix's namespaces).
  for (const ns of found.namespaces) {
    const pids = (await ip(["netns", "pids", ns]).catch(() => "")).split(/\s+/).filter((x) => /^\d+$/.test(x));
    for (const pid of pids) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {
        // gone
      }
    }
  }
  for (const ns of found.namespaces) await ip(["netns", "del", ns]).catch(() => undefined);
  for (const link of found.links) await ip(["link", "del", link]).catch(() => undefined);
  // Deleting a namespace removes its veth pairs asynchronously: wait for them to go.
  const deadline = Date.now() + 10_000;
  for (;;) {
    const left = await leftovers(prefix);
    if (left.namespaces.length === 0 && left.links.length === 0) return;
    if (Date.now() > deadline) throw new Error(`netns cleanup of ${prefix}: still present: ${[...left.namespaces, ...left.links].join(", ")}`);
    for (const link of left.links) await ip(["link", "del", link]).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A /24 under 10.0.0.0/8 hashed from the prefix, skipping any that a root-namespace route covers. */
async function pickSubnet(prefix: string): Promise<string> {
  const routes = (await ip(["-4", "route", "show", "table", "all"])).split("\n");
  const taken = (s: string): boolean => routes.some((r) => r.startsWith(`${s}.`) || r.startsWith(`${s.split(".").slice(0, 2).join(".")}.0.0/16`) || r.startsWith("10.0.0.0/8"));
  const h = createHash("sha256").update(prefix).digest();
  for (let i = 0; i < 64; i++) {
    const s = `10.${200 + ((h[0] ?? 0) + i) % 50}.${((h[1] ?? 0) + i * 7) % 256}`;
    if (!taken(s)) return s;
  }
  throw new Error(`no free /24 for netns prefix ${prefix}`);
}

/** Builds a lab: cleans the prefix's leftovers, then the bridge with the root's address. */
export async function createLab(prefix: string): Promise<NetnsLab> {
  checkPrefix(prefix);
  await cleanupPrefix(prefix);
  const bridge = `${prefix}br`;
  const subnet = await pickSubnet(prefix);
  const rootAddress = `${subnet}.1`;
  const hosts: NetnsHost[] = [];
  try {
    await ip(["link", "add", bridge, "type", "bridge"]);
    await ip(["addr", "add", `${rootAddress}/24`, "dev", bridge]);
    await ip(["link", "set", bridge, "up"]);
  } catch (err) {
    await cleanupPrefix(prefix);
    throw err;
  }
  const lab: NetnsLab = {
    prefix,
    bridge,
    subnet,
    rootAddress,
    hosts: () => [...hosts],
    host(name) {
      const h = hosts.find((x) => x.name === name);
      if (h === undefined) throw new Error(`no host ${name} in lab ${prefix}`);
      return h;
    },
    async addHost(name) {
      if (!/^[a-z0-9][a-z0-9-]{0,30}$/.test(name)) throw new Error(`host name ${JSON.stringify(name)}: lowercase letters, digits, dashes`);
      if (hosts.some((x) => x.name === name)) throw new Error(`host ${name} exists in lab ${prefix}`);
      const n = hosts.length + 1;
      if (n > 250) throw new Error("at most 250 hosts per lab");
      const netns = `${prefix}-${name}`;
      const hostVeth = `${prefix}${n}a`;
      const innerVeth = `${prefix}${n}b`;
      const address = `${subnet}.${n + 1}`;
      try {
        await ip(["netns", "add", netns]);
        await ip(["link", "add", hostVeth, "type", "veth", "peer", "name", innerVeth, "netns", netns]);
        await ip(["link", "set", hostVeth, "master", bridge, "up"]);
        await ip(["-n", netns, "addr", "add", `${address}/24`, "dev", innerVeth]);
        await ip(["-n", netns, "link", "set", innerVeth, "up"]);
        await ip(["-n", netns, "link", "set", "lo", "up"]);
      } catch (err) {
        await ip(["netns", "del", netns]).catch(() => undefined);
        await ip(["link", "del", hostVeth]).catch(() => undefined);
        throw err;
      }
      const host: NetnsHost = {
        name,
        netns,
        address,
        hostVeth,
        innerVeth,
        cut: async () => void (await ip(["link", "set", hostVeth, "down"])),
        restore: async () => void (await ip(["link", "set", hostVeth, "up"])),
        spawn: (command, args, opts = {}) => spawn(...inNetns(netns, command, args), opts),
        exec: (command, args) =>
          new Promise((resolve) => {
            execFile(...inNetns(netns, command, args), { encoding: "utf8" }, (err, stdout, stderr) => {
              const code = err === null ? 0 : typeof (err as { code?: unknown }).code === "number" ? ((err as { code: number }).code) : 1;
              resolve({ code, stdout, stderr });
            });
          }),
      };
      hosts.push(host);
      return host;
    },
    async destroy() {
      await cleanupPrefix(prefix);
      hosts.length = 0;
    },
  };
  return lab;
}
