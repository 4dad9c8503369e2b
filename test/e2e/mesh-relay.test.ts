/**
 * Relays and TCP forwarding with real agents as separate hosts: each
 * `bin/fabric-agent` runs in its own network namespace. A (and a node `o` of
 * another cluster) sit on one bridge, B on a second bridge, and the relays R1
 * and R2 are dual-homed on both, so A and B truly cannot reach each other
 * (no route between the bridges). The control plane runs in this process on
 * the root namespace's address of the first bridge; B reaches it through a
 * host route to that address via the root's address on the second bridge
 * (the root accepts packets for its own addresses on any interface; nothing
 * is forwarded, so A and B stay apart).
 *
 * B runs a ServiceWorkload (a TCP echo server on its loopback) that declares
 * mesh port 7000. Proves: `mesh ping B` from A answers `relay via R`; `mesh
 * forward` carries 1 MiB end to end with its checksum; cutting the relay in
 * use fails over to the other; a forward to an undeclared port and to a node
 * of another cluster is refused with the reason at the source.
 *
 * Names: namespaces afr-*, bridges afrbr (test/support/netns.ts) and afrzbr,
 * veths afrN[ab] and afrzN[ab], all removed in `after` (and before, when a
 * killed run left them).
 */
import assert from "node:assert/strict";
import { execFile, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { join as joinPath } from "node:path";
import { promisify } from "node:util";
import { join } from "../../agent/enroll/join.js";
import type { MeshStatus } from "../../agent/mesh/mesh-status.js";
import { runControlPlane, type ControlPlane } from "../../controlplane/controlplane.js";
import { logger } from "../../lib/log.js";
import { agentEnv, eventually, kubectl, repoRoot, tempStateDir } from "../support/controlplane.js";
import { createToken } from "../support/enrollment.js";
import { createLab, ip, type NetnsHost, type NetnsLab } from "../support/netns.js";

const exec = promisify(execFile);
const agentBin = joinPath(repoRoot, "bin", "fabric-agent");
const PREFIX = "afr";
const BRIDGE2 = "afrzbr";
const CLUSTER = "afr-c";
const OTHER = "afr-o";
const ECHO_PORT = 7000;
const MESH_PORT = 4433;
const CAPS = "can_accept_client_ingress,can_route_mesh,can_accept_node_ingress";

/** Marks this run's workload processes (the agent leaves workloads running when it stops, for adoption). */
const RUN_TOKEN = `afr-echo-${process.pid}-${Date.now()}`;
/** A TCP echo server for the workload (Native runtime: node -e). */
const ECHO_SCRIPT = `/* ${RUN_TOKEN} */ require("node:net").createServer({ allowHalfOpen: true }, (s) => { s.on("error", () => {}); s.pipe(s); }).listen(${ECHO_PORT}, "127.0.0.1")`;

interface Agent {
  short: string;
  name: string;
  cluster: string;
  host: NetnsHost;
  /** Its addresses, first bridge first. */
  addresses: string[];
  dir: string;
  child?: ChildProcess;
  out: string;
}

/** Stops this run's workload processes, found by the token in their command line. */
function killWorkloads(): void {
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(RUN_TOKEN)) process.kill(Number(pid), "SIGKILL");
    } catch {
      // gone meanwhile
    }
  }
}

/** Removes the second bridge and its veths (the harness cleans the prefix's namespaces and its own links). */
async function cleanupBridge2(): Promise<void> {
  const links = (await ip(["-o", "link", "show"])).split("\n").map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1] ?? "").filter((n) => /^afrz(br|\d+[ab])$/.test(n));
  for (const l of links) await ip(["link", "del", l]).catch(() => undefined);
}

async function meshStatus(a: Agent): Promise<MeshStatus | undefined> {
  const r = await exec(agentBin, ["mesh", "status", "--output", "json", "--state-dir", a.dir], { encoding: "utf8", env: agentEnv() });
  return (JSON.parse(r.stdout) as Array<{ mesh: MeshStatus | null }>)[0]?.mesh ?? undefined;
}

const upPeers = (s: MeshStatus | undefined): string[] => (s?.peers ?? []).filter((x) => x.state === "up").map((x) => x.peer);

async function ping(a: Agent, node: string): Promise<{ node: string; rttMs: number; path: string; remote: string }> {
  const r = await exec(agentBin, ["mesh", "ping", node, "--output", "json", "--state-dir", a.dir], { encoding: "utf8", env: agentEnv() });
  return JSON.parse(r.stdout) as { node: string; rttMs: number; path: string; remote: string };
}

/** Sends `data` to host:port, half-closes, returns what came back. */
async function roundTrip(host: string, port: number, data: Buffer): Promise<Buffer> {
  const sock = net.connect({ host, port, allowHalfOpen: true });
  const chunks: Buffer[] = [];
  sock.on("data", (c: Buffer) => chunks.push(c));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => sock.destroy(new Error("round trip not done within 60 s")), 60_000);
    sock.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.once("connect", () => sock.end(data));
    sock.once("close", () => {
      clearTimeout(timer);
      resolve();
    });
  });
  return Buffer.concat(chunks);
}

const sha = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

describe("e2e: mesh relays and TCP forwarding with real agents in network namespaces", function () {
  this.timeout(600_000);
  let lab: NetnsLab;
  let cp: ControlPlane;
  let cpDir = "";
  let kubeconfig = "";
  const agents: Agent[] = [];
  let forwardChild: ChildProcess | undefined;
  let forwardListen = "";
  const byShort = (s: string): Agent => {
    const a = agents.find((x) => x.short === s);
    assert.ok(a, s);
    return a;
  };
  const apply = async (obj: Record<string, unknown>): Promise<void> => {
    const r = await kubectl(kubeconfig, ["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "accessfabric.io/v1alpha1", ...obj }) });
    assert.equal(r.code, 0, r.stderr);
  };
  const dump = (): string => agents.map((a) => `--- ${a.name}\n${a.out.slice(-4000)}`).join("\n");
  /** Link changes the agents logged (why a path went away), for failure messages. */
  const linkEvents = (): string =>
    agents
      .flatMap((a) => a.out.split("\n").filter((l) => /"mesh (link down|disconnecting|peer quarantined|relay path failed|forward connection refused|stream failed)"/.test(l)).map((l) => `${a.short}: ${l.slice(0, 400)}`))
      .join("\n");
  afterEach(function () {
    if (this.currentTest?.state === "failed") console.log(`      link events:\n${linkEvents()}\n${agents.map((x) => `--- ${x.short}\n${x.out.split("\n").filter((l) => !/mesh (connecting|dial failed|peer quarantined)/.test(l)).slice(-25).join("\n")}`).join("\n")}`);
  });

  before(async () => {
    await cleanupBridge2();
    lab = await createLab(PREFIX);
    // The second bridge: B's, with the root's address .1 of a /24 next to the lab's.
    const [o1, o2, o3] = lab.subnet.split(".");
    const subnet2 = `${o1}.${o2}.${(Number(o3) + 128) % 256}`;
    await ip(["link", "add", BRIDGE2, "type", "bridge"]);
    await ip(["addr", "add", `${subnet2}.1/24`, "dev", BRIDGE2]);
    await ip(["link", "set", BRIDGE2, "up"]);
    let leg = 0;
    /** Gives a namespace a leg on the second bridge. */
    const secondLeg = async (netns: string): Promise<string> => {
      leg += 1;
      const outer = `afrz${leg}a`;
      const inner = `afrz${leg}b`;
      const address = `${subnet2}.${leg + 1}`;
      await ip(["link", "add", outer, "type", "veth", "peer", "name", inner, "netns", netns]);
      await ip(["link", "set", outer, "master", BRIDGE2, "up"]);
      await ip(["-n", netns, "addr", "add", `${address}/24`, "dev", inner]);
      await ip(["-n", netns, "link", "set", inner, "up"]);
      return address;
    };

    cpDir = tempStateDir("afr-cp-");
    cp = await runControlPlane({
      stateDir: cpDir,
      host: lab.rootAddress,
      port: 0,
      metricsPort: 0,
      fsync: false,
      log: logger("test-controlplane"),
      controllers: { identity: "test-relay", sweepIntervalMs: 1000 },
      agentPort: 0,
      agentApi: { rateLimit: { burst: 100_000, perSecond: 100_000 } },
    });
    kubeconfig = cp.api.kubeconfigPath;
    const server = cp.agentApi?.url ?? "";
    const caHash = cp.agentApi?.caHash ?? "";
    for (const c of [CLUSTER, OTHER]) {
      await apply({ kind: "FabricCluster", metadata: { name: c }, spec: { enrollmentPolicy: { approval: "TokenAutoApprove" } } });
      const w = await kubectl(kubeconfig, ["wait", "--for=condition=Ready", `fabriccluster/${c}`, "--timeout=60s"]);
      assert.equal(w.code, 0, w.stderr);
    }
    const tokens = new Map<string, string>();
    for (const c of [CLUSTER, OTHER]) tokens.set(c, await createToken(kubeconfig, `${c}-join`, { cluster: c, maxUses: 10, autoApprove: true }));

    const plan: Array<{ short: string; cluster: string; bridges: 1 | 2 | 12 }> = [
      { short: "a", cluster: CLUSTER, bridges: 1 },
      { short: "r1", cluster: CLUSTER, bridges: 12 },
      { short: "r2", cluster: CLUSTER, bridges: 12 },
      { short: "o", cluster: OTHER, bridges: 1 },
      { short: "b", cluster: CLUSTER, bridges: 2 },
    ];
    for (const p of plan) {
      const host = await lab.addHost(p.short);
      const addresses: string[] = [];
      if (p.bridges === 2) {
        // B leaves the first bridge at once (the harness put it there): only its second leg stays.
        await ip(["link", "del", host.hostVeth]);
        const address = await secondLeg(host.netns);
        await ip(["-n", host.netns, "route", "add", `${lab.rootAddress}/32`, "via", `${subnet2}.1`]);
        addresses.push(address);
      } else {
        addresses.push(host.address);
        if (p.bridges === 12) addresses.push(await secondLeg(host.netns));
      }
      const dir = tempStateDir("afr-agent-");
      await join({ server, token: tokens.get(p.cluster) ?? "", caHash, stateDir: dir, nodeName: p.short, cluster: p.cluster, capabilities: CAPS.split(","), pollIntervalMs: 200, timeoutMs: 60_000 });
      agents.push({ short: p.short, name: `${p.cluster}.${p.short}`, cluster: p.cluster, host, addresses, dir, out: "" });
    }
    await apply({ kind: "RoleAssignment", metadata: { name: "afr-entry" }, spec: { cluster: CLUSTER, role: "entry-node", nodeNames: [`${CLUSTER}.a`, `${CLUSTER}.b`] } });
    await apply({ kind: "RoleAssignment", metadata: { name: "afr-relay" }, spec: { cluster: CLUSTER, role: "relay-node", nodeNames: [`${CLUSTER}.r1`, `${CLUSTER}.r2`] } });
    await apply({ kind: "RoleAssignment", metadata: { name: "afr-echo" }, spec: { cluster: CLUSTER, role: "echo-server", nodeNames: [`${CLUSTER}.b`] } });
    await apply({ kind: "RoleAssignment", metadata: { name: "afr-other" }, spec: { cluster: OTHER, role: "entry-node", nodeNames: [`${OTHER}.o`] } });
    await apply({ kind: "ServiceWorkload", metadata: { name: "afr-echo" }, spec: { cluster: CLUSTER, role: "echo-server", command: [process.execPath, "-e", ECHO_SCRIPT], meshPorts: [{ name: "echo", port: ECHO_PORT }] } });
    // The same port on the other cluster's node: reachable there, but never from cluster afr-c.
    await apply({ kind: "RoleAssignment", metadata: { name: "afr-other-echo" }, spec: { cluster: OTHER, role: "echo-server", nodeNames: [`${OTHER}.o`] } });
    await apply({ kind: "ServiceWorkload", metadata: { name: "afr-other-echo" }, spec: { cluster: OTHER, role: "echo-server", command: [process.execPath, "-e", ECHO_SCRIPT], meshPorts: [{ name: "echo", port: ECHO_PORT }] } });

    for (const a of agents) {
      const advertise = a.addresses.map((x) => `${x}:${MESH_PORT}`).join(",");
      const child = a.host.spawn(
        agentBin,
        ["run", "--state-dir", a.dir, "--capabilities", CAPS, "--heartbeat-interval", "1s", "--backoff-cap", "1s", "--mesh-port", String(MESH_PORT), "--mesh-advertise", advertise, "--mesh-evaluate-interval", "1s"],
        { stdio: ["ignore", "pipe", "pipe"], env: agentEnv() },
      );
      child.stdout?.on("data", (b: Buffer) => (a.out += b.toString()));
      child.stderr?.on("data", (b: Buffer) => (a.out += b.toString()));
      a.child = child;
    }
  });

  after(async () => {
    if (forwardChild !== undefined && forwardChild.exitCode === null) forwardChild.kill("SIGTERM");
    for (const a of agents) {
      const c = a.child;
      if (c !== undefined && c.exitCode === null && c.signalCode === null) {
        const exited = new Promise((r) => c.once("exit", r));
        c.kill("SIGTERM");
        await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
        if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
      }
    }
    killWorkloads();
    await cp?.stop();
    await lab?.destroy();
    await cleanupBridge2();
    for (const a of agents) rmSync(a.dir, { recursive: true, force: true });
    if (cpDir !== "") rmSync(cpDir, { recursive: true, force: true });
  });

  let used = "";

  it("A reaches B only through a relay: mesh ping answers `relay via R`", async () => {
    const a = byShort("a");
    const b = byShort("b");
    // A links to both relays, never to B (no route between the bridges).
    await eventually(async () => {
      const s = await meshStatus(a);
      const up = upPeers(s);
      return up.includes(`${CLUSTER}.r1`) && up.includes(`${CLUSTER}.r2`) && s?.candidates.includes(b.name) ? s : undefined;
    }, 120_000, 1000).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n${dump()}`);
    });
    const p = await eventually(async () => {
      try {
        return await ping(a, "b");
      } catch {
        return undefined;
      }
    }, 60_000, 1000).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n${dump()}`);
    });
    assert.equal(p.node, b.name);
    assert.match(p.path, new RegExp(`^relay via ${CLUSTER}\\.r[12]$`));
    assert.ok(p.rttMs > 0);
    used = p.path.slice("relay via ".length);
    assert.ok(!upPeers(await meshStatus(a)).includes(b.name), "no direct link between A and B");
    const text = await exec(agentBin, ["mesh", "ping", b.name, "--state-dir", a.dir], { encoding: "utf8", env: agentEnv() });
    assert.match(text.stdout, new RegExp(`^${b.name.replace(/\./g, "\\.")}: rtt \\d+\\.\\d{3} ms, path relay via ${CLUSTER}\\.r[12] `));
    console.log(`      ${text.stdout.trim()}`);
  });

  it("mesh forward carries 1 MiB end to end to B's declared echo port, through the relay", async () => {
    const a = byShort("a");
    forwardChild = a.host.spawn(agentBin, ["mesh", "forward", "--listen", `${a.addresses[0]}:0`, `b:${ECHO_PORT}`, "--output", "json", "--state-dir", a.dir], { stdio: ["ignore", "pipe", "pipe"], env: agentEnv() });
    let out = "";
    let err = "";
    forwardChild.stderr?.on("data", (x: Buffer) => (err += x.toString()));
    forwardListen = await new Promise<string>((resolve, reject) => {
      forwardChild?.stdout?.on("data", (x: Buffer) => {
        out += x.toString();
        if (out.includes("\n")) resolve((JSON.parse(out.split("\n")[0] ?? "") as { listen: string }).listen);
      });
      forwardChild?.once("exit", (code) => reject(new Error(`mesh forward exited ${String(code)}: ${err}`)));
    });
    const first = JSON.parse(out.split("\n")[0] ?? "") as { node: string; port: number; path: string };
    assert.equal(first.node, `${CLUSTER}.b`);
    assert.equal(first.path, `relay via ${used}`);
    const [host, port] = [forwardListen.slice(0, forwardListen.lastIndexOf(":")), Number(forwardListen.slice(forwardListen.lastIndexOf(":") + 1))];
    const data = randomBytes(1024 * 1024);
    // Each connection takes its path when it opens (docs/mesh.md): usually the relay the check took, but another one
    // if that relay's link or advertisement lapsed meanwhile. The proof follows the connection's own path.
    const relays = [byShort("r1"), byShort("r2")];
    const relayed = async (): Promise<number[]> => Promise.all(relays.map(async (r) => (await meshStatus(r))?.streams?.relayedBytes ?? 0));
    const before = await relayed();
    const t0 = Date.now();
    const back = await roundTrip(host, port, data);
    assert.equal(back.length, data.length);
    assert.equal(sha(back), sha(data));
    const took = Date.now() - t0;
    const connectionPath = new RegExp(`"mesh forward connection".*"target":"${CLUSTER}\\.b:${ECHO_PORT}".*"path":"(relay via ${CLUSTER}\\.r[12]|direct)"`);
    const path = await eventually(() => connectionPath.exec(a.out)?.[1], 30_000, 200);
    assert.match(path, /^relay via /, "A and B have no direct path");
    if (path !== first.path) console.log(`      the connection took ${path}, the check ${first.path}`);
    used = path.slice("relay via ".length);
    console.log(`      1 MiB echoed through ${used} in ${took} ms`);
    // That relay's status counts what it spliced (both ways, as it passes); the other relay carried none of it.
    const carried = await eventually(async () => {
      const now = await relayed();
      const grown = now.map((n, i) => n - (before[i] ?? 0));
      return grown[relays.findIndex((r) => r.name === used)]! >= 2 * data.length ? grown : undefined;
    }, 90_000, 500).catch(async (err: unknown) => {
      throw new Error(`${(err as Error).message}: relayed bytes before ${before.join(", ")}, now ${(await relayed()).join(", ")} (r1, r2)`);
    });
    assert.ok(carried[relays.findIndex((r) => r.name !== used)]! < data.length, `relayed bytes grew by ${carried.join(", ")} (r1, r2)`);
    // Advertisements are refreshed every 5 s with a 15 s TTL: under load one
    // may lapse for a moment, so wait for both rather than read one instant.
    const reachingB = async () => (await meshStatus(byShort("a")))?.relays?.filter((r) => r.reaches.includes(`${CLUSTER}.b`)).map((r) => r.relay) ?? [];
    await eventually(async () => (await reachingB()).length === 2, 60_000, 500);
    assert.deepEqual(await reachingB(), [`${CLUSTER}.r1`, `${CLUSTER}.r2`]);
  });

  it("cutting the relay in use fails over to the other relay", async () => {
    const a = byShort("a");
    const relay = agents.find((x) => x.name === used);
    assert.ok(relay);
    const other = used.endsWith("r1") ? `${CLUSTER}.r2` : `${CLUSTER}.r1`;
    // Both legs down: the relay is gone for A and for B.
    await relay.host.cut();
    await ip(["-n", relay.host.netns, "link", "set", relay.host.innerVeth, "down"]).catch(() => undefined);
    for (const l of (await ip(["-n", relay.host.netns, "-o", "link", "show"])).split("\n")) {
      const name = /^\d+:\s+([^:@\s]+)/.exec(l)?.[1];
      if (name !== undefined && name.startsWith("afrz")) await ip(["-n", relay.host.netns, "link", "set", name, "down"]);
    }
    const cutAt = Date.now();
    const p = await eventually(async () => {
      try {
        const r = await ping(a, "b");
        return r.path === `relay via ${other}` ? r : undefined;
      } catch {
        return undefined;
      }
    }, 60_000, 500).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n${dump()}`);
    });
    console.log(`      failover to ${other} answered ${Date.now() - cutAt} ms after the cut (rtt ${p.rttMs.toFixed(3)} ms)`);
    const data = randomBytes(1024 * 1024);
    const [host, port] = [forwardListen.slice(0, forwardListen.lastIndexOf(":")), Number(forwardListen.slice(forwardListen.lastIndexOf(":") + 1))];
    const back = await roundTrip(host, port, data);
    assert.equal(sha(back), sha(data));
  });

  it("refuses a forward to an undeclared port and to a node of another cluster, with the reason", async () => {
    const a = byShort("a");
    const fail = async (target: string, code = 1): Promise<string> => {
      try {
        await exec(agentBin, ["mesh", "forward", "--listen", "127.0.0.1:0", target, "--state-dir", a.dir], { encoding: "utf8", env: agentEnv(), timeout: 60_000 });
      } catch (err) {
        const e = err as { code?: number; stderr?: string };
        assert.equal(e.code, code, e.stderr);
        return e.stderr ?? "";
      }
      throw new Error(`mesh forward ${target} was accepted`);
    };
    assert.match(await fail(`b:${ECHO_PORT + 1}`), /PortNotDeclared: port 7001 on node afr-c\.b is not declared as a mesh port/);
    assert.match(await fail(`${OTHER}.o:${ECHO_PORT}`), /node afr-o\.o is not a mesh candidate in this node's verified snapshot/);
    assert.match(await fail(`b:0`, 2), /mesh forward needs NODE:PORT/);

    // The API server refuses hostile mesh ports (schema): nothing stored, the agents keep the declared set.
    const bad: Array<[unknown, RegExp]> = [
      [[{ name: "echo", port: 70000 }], /meshPorts\[0\]\.port/],
      [[{ name: "echo", port: 0 }], /meshPorts\[0\]\.port/],
      [[{ name: "echo", port: 7000, protocol: "UDP" }], /meshPorts\[0\]\.protocol/],
      [[{ name: "Bad Name", port: 7000 }], /meshPorts\[0\]\.name/],
      [[{ name: "a", port: 7000 }, { name: "b", port: 7000 }], /meshPorts\[1\]: Duplicate value/],
      [Array.from({ length: 17 }, (_, i) => ({ name: `p${i}`, port: 8000 + i })), /meshPorts: Too many/],
      [[{ name: "echo", port: "7000" }], /meshPorts\[0\]\.port/],
      ["7000", /meshPorts/],
    ];
    for (const [meshPorts, want] of bad) {
      const r = await kubectl(kubeconfig, ["apply", "-f", "-"], {
        input: JSON.stringify({ apiVersion: "accessfabric.io/v1alpha1", kind: "ServiceWorkload", metadata: { name: "afr-bad" }, spec: { cluster: CLUSTER, role: "echo-server", command: ["/bin/true"], meshPorts } }),
      });
      assert.notEqual(r.code, 0, `accepted ${JSON.stringify(meshPorts).slice(0, 80)}`);
      assert.match(r.stderr, want);
      assert.doesNotMatch(r.stderr, /Internal|500/);
    }
    const gone = await kubectl(kubeconfig, ["get", "serviceworkload", "afr-bad"]);
    assert.notEqual(gone.code, 0, "nothing stored");
    assert.match(await fail(`b:70000`, 2), /mesh forward needs NODE:PORT/);
  });
});
