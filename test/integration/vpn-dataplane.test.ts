/**
 * The VPN data plane against real userspace WireGuard: wireguard-go, wg and
 * ip in two network namespaces made here, the holder side (afw-dp-h, driven
 * by WireGuardDataPlane) and a remote site (afw-dp-r) that holds the peer's
 * half of the connection's credential and a UDP echo server on an address
 * behind it. Needs root and hack/wireguard.sh's tools (the test fails, never
 * skips, without them).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { logger } from "../../lib/log.js";
import { parseCredential } from "../../agent/vpn/credential.js";
import { WireGuardDataPlane } from "../../agent/vpn/wireguard.js";
import type { VpnRoutePolicy } from "../../agent/vpn/types.js";
import { processesWith } from "../support/processes.js";
import { NetnsLab, inNs, udpProbe, waitFor, wgKeys } from "../support/vpn-netns.js";

const HOLDER = "afw-dp-h";
const REMOTE = "afw-dp-r";
const IFNAME = "afwdph0";
const BEHIND = "10.20.0.1";
const ROUTES: VpnRoutePolicy[] = [
  { destination: "10.20.0.0/16", action: "Route", metric: 10 },
  { destination: "10.20.5.0/24", action: "Exclude", metric: 5 },
];

function routeDev(ns: string, addr: string): string | undefined {
  try {
    const [r] = JSON.parse(inNs(ns, "ip", ["-j", "route", "get", addr])) as { dev?: string }[];
    return r?.dev;
  } catch {
    return undefined;
  }
}

function linkExists(ns: string, dev: string): boolean {
  try {
    inNs(ns, "ip", ["link", "show", dev]);
    return true;
  } catch {
    return false;
  }
}

describe("VPN data plane: userspace WireGuard between two namespaces", function () {
  this.timeout(120_000);
  const lab = new NetnsLab();
  let dir: string;
  let hookLog: string;
  let credential: string;
  let echo: { senders: string[] };
  let dp: WireGuardDataPlane;

  before(async () => {
    for (const tool of ["wireguard-go", "wg", "ip"]) {
      try {
        execFileSync("sh", ["-c", `command -v ${tool}`]);
      } catch {
        throw new Error(`${tool} is missing: run hack/wireguard.sh (hack/test.sh does) as root`);
      }
    }
    dir = mkdtempSync(join(tmpdir(), "afw-dp-"));
    hookLog = join(dir, "hook.log");
    const hook = join(dir, "hook.sh");
    writeFileSync(hook, `#!/bin/sh\necho "$FABRIC_VPN_EVENT $FABRIC_VPN_CONNECTION $FABRIC_VPN_TOKEN $FABRIC_VPN_INTERFACE" >> ${hookLog}\n`);
    chmodSync(hook, 0o755);
    lab.ns(HOLDER);
    lab.ns(REMOTE);
    lab.link({ ns: HOLDER, dev: "afwdpv0", addr: "10.88.0.1/24" }, { ns: REMOTE, dev: "afwdpv1", addr: "10.88.0.2/24" });
    const holder = wgKeys();
    const remote = wgKeys();
    await lab.remoteSite({ ns: REMOTE, ifname: "afwdpr0", keys: remote, listenPort: 51820, address: "10.99.0.1/32", peerPublicKey: holder.publicKey, peerAllowed: "10.99.0.2/32", behind: `${BEHIND}/32` });
    echo = await lab.echoServer(REMOTE, BEHIND, 7007);
    // The 10.20.5.0/24 Exclude must still reach the remote site the old way: give the holder a route there over the veth.
    inNs(HOLDER, "ip", ["route", "add", "10.20.0.0/16", "via", "10.88.0.2", "metric", "100"]);
    credential = `[Interface]\nPrivateKey = ${holder.privateKey}\nAddress = 10.99.0.2/32\n[Peer]\nPublicKey = ${remote.publicKey}\nEndpoint = 10.88.0.2:51820\nAllowedIPs = 10.20.0.0/16\nPersistentKeepalive = 5\n`;
    dp = new WireGuardDataPlane({ log: logger("vpn-dataplane-test"), netns: HOLDER, hook });
  });

  after(async () => {
    await dp?.downAll("test over").catch(() => undefined);
    lab.cleanup();
    rmSync(`/var/run/wireguard/${IFNAME}.sock`, { force: true });
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it("reports the tools as available here, and blocked with a reason when they are not on PATH", () => {
    assert.deepEqual(dp.available(), { ok: true });
    const none = new WireGuardDataPlane({ log: logger("vpn-dataplane-test"), path: join(dir, "empty") });
    const a = none.available();
    assert.equal(a.ok, false);
    assert.match(a.ok ? "" : a.reason, /wireguard-go .*wg .*ip .*not found/);
  });

  it("brings the tunnel up: packets to a Route destination arrive at the remote site through it; Exclude stays out; the hook gets the token", async () => {
    // Before: nothing answers through a tunnel (the veth route reaches the remote, but from the veth address).
    const crashes: string[] = [];
    await dp.up({ connection: "org-a/exit", token: 7, ifname: IFNAME, credential: parseCredential(credential), routes: ROUTES }, (r) => crashes.push(r));
    assert.equal(dp.isUp(IFNAME), true);
    assert.equal(routeDev(HOLDER, BEHIND), IFNAME, "the Route destination goes via the tunnel");
    assert.equal(routeDev(HOLDER, "10.20.5.9"), "afwdpv0", "the Exclude destination keeps its route outside the tunnel");
    assert.equal(routeDev(HOLDER, "10.88.0.2"), "afwdpv0", "the peer endpoint stays outside the tunnel");
    await waitFor(() => udpProbe(HOLDER, BEHIND, 7007), 20_000);
    assert.ok(echo.senders.includes("10.99.0.2"), `the remote site saw the tunnel address as sender (saw ${echo.senders.join(",")})`);
    // wg setconf applied the credential (its key went through a 0600 file, never argv).
    const wgShow = inNs(HOLDER, "wg", ["show", IFNAME, "private-key"]).trim();
    assert.ok(credential.includes(wgShow), "wg setconf applied the credential's key");
    await waitFor(() => existsSync(hookLog) && readFileSync(hookLog, "utf8").includes(`up org-a/exit 7 ${IFNAME}`), 10_000);
    assert.deepEqual(crashes, []);
  });

  it("tears the tunnel down idempotently: nothing passes through it any more, and the hook gets the token", async () => {
    const before = echo.senders.length;
    await dp.down({ connection: "org-a/exit", token: 7, ifname: IFNAME }, "released");
    await dp.down({ connection: "org-a/exit", token: 7, ifname: IFNAME }, "released again");
    assert.equal(linkExists(HOLDER, IFNAME), false);
    assert.equal(existsSync(`/var/run/wireguard/${IFNAME}.sock`), false);
    assert.equal(routeDev(HOLDER, "10.20.5.9"), "afwdpv0");
    assert.notEqual(routeDev(HOLDER, BEHIND), IFNAME);
    // Without the tunnel the probe leaves over the veth (a plain route) and comes back from the veth address, never the tunnel one.
    await udpProbe(HOLDER, BEHIND, 7007);
    assert.ok(echo.senders.slice(before).every((s) => s !== "10.99.0.2"), "no packet came through the tunnel after teardown");
    const downs = readFileSync(hookLog, "utf8").split("\n").filter((l) => l.startsWith("down "));
    assert.deepEqual(downs, [`down org-a/exit 7 ${IFNAME}`], "one down hook call, with the token");
  });

  it("notices a crash of wireguard-go and cleans the interface up", async () => {
    const crashes: string[] = [];
    await dp.up({ connection: "org-a/exit", token: 8, ifname: IFNAME, credential: parseCredential(credential), routes: ROUTES }, (r) => crashes.push(r));
    await waitFor(() => udpProbe(HOLDER, BEHIND, 7007), 20_000);
    const pids = processesWith(IFNAME).filter((p) => readFileSync(`/proc/${p}/cmdline`, "utf8").split("\0").some((a) => a.endsWith("wireguard-go")));
    assert.equal(pids.length, 1, "one wireguard-go for the interface");
    process.kill(pids[0] as number, "SIGKILL");
    await waitFor(() => crashes.length === 1, 10_000);
    assert.match(crashes[0] ?? "", /wireguard-go of afwdph0 exited \(signal SIGKILL\)/);
    assert.equal(dp.isUp(IFNAME), false);
    await waitFor(() => !linkExists(HOLDER, IFNAME), 10_000);
    assert.equal(routeDev(HOLDER, "10.20.5.9"), "afwdpv0");
    await waitFor(() => readFileSync(hookLog, "utf8").includes(`down org-a/exit 8 ${IFNAME}`), 10_000);
  });

  it("never takes over a host route of the same destination and metric: the bring-up fails with that reason and the host route survives", async () => {
    const clash: VpnRoutePolicy[] = [{ destination: "10.20.0.0/16", action: "Route", metric: 100 }];
    await assert.rejects(dp.up({ connection: "org-a/exit", token: 10, ifname: IFNAME, credential: parseCredential(credential), routes: clash }, () => undefined), /route 10\.20\.0\.0\/16 metric 100 already exists on this host/);
    assert.equal(linkExists(HOLDER, IFNAME), false);
    assert.match(inNs(HOLDER, "ip", ["route", "show", "exact", "10.20.0.0/16"]), /via 10\.88\.0\.2 dev afwdpv0 metric 100/);
  });

  it("undoes a failed bring-up (a credential wg refuses) and leaves nothing behind", async () => {
    const bad = parseCredential(credential.replace(/PublicKey = .*/, "PublicKey = notakey"));
    await assert.rejects(dp.up({ connection: "org-a/exit", token: 9, ifname: IFNAME, credential: bad, routes: ROUTES }, () => undefined), /wg setconf/);
    assert.equal(dp.isUp(IFNAME), false);
    assert.equal(linkExists(HOLDER, IFNAME), false);
    assert.equal(processesWith(IFNAME).length, 0);
  });
});
