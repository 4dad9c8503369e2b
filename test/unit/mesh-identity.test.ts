/**
 * Mesh peer identity (agent/mesh/transport/peer-identity.ts) over real QUIC
 * on loopback with real cluster-issued certificates: authorisation is
 * symmetric (a node accepts a dialler that only the dialler's set lists,
 * through meshInbound), the SPKI pin of the snapshot entry is checked on
 * both sides beside the chain to the cluster CA, a renewed certificate is
 * refused until the snapshot pins its key and accepted after, and a node
 * dropped from the snapshot (revoked) is disconnected on the next one.
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { PeerRefused, peerGrantsOf, revalidate, verifyPeerCertificate } from "../../agent/mesh/transport/peer-identity.js";
import { PeerLinks } from "../../agent/mesh/transport/peer-links.js";
import type { CertBundle } from "../../lib/crypto/pki.js";
import { publicKeyFingerprint } from "../../lib/crypto/x509.js";
import type { SnapshotMeshInbound, SnapshotMeshPeer, SnapshotPayload } from "../../lib/snapshot/format.js";
import { clusterCa, nodeCreds, type NodeCreds } from "../support/mesh-certs.js";

const CLUSTER = "c1";
type MeshPart = Pick<SnapshotPayload, "meshPeers" | "meshInbound">;

const pinOf = (c: NodeCreds): string => publicKeyFingerprint(new X509Certificate(c.certPem).publicKey);
const peer = (c: NodeCreds, port = 1): SnapshotMeshPeer => ({ node: c.node, endpoints: [`127.0.0.1:${port}`], serverName: `${c.node}.${CLUSTER}.fabric.internal`, certificateFingerprint: pinOf(c), nodeClass: "standard", roles: ["entry-node"] });
const inbound = (c: NodeCreds): SnapshotMeshInbound => ({ node: c.node, certificateFingerprint: pinOf(c) });

async function until(check: () => boolean, ms = 8000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error("condition not reached in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("mesh peer identity: symmetric authorisation and the SPKI pin", function () {
  this.timeout(30_000);
  let ca: CertBundle;
  const started: PeerLinks[] = [];
  before(() => {
    ca = clusterCa(CLUSTER);
  });
  afterEach(async () => {
    await Promise.allSettled(started.splice(0).map((l) => l.stop()));
  });

  /** An agent whose authoriser answers from its current snapshot part, as the mesh loop does. */
  async function agent(creds: NodeCreds, snap: { part: MeshPart }): Promise<{ links: PeerLinks; refused: string[] }> {
    const links = await PeerLinks.start({
      cluster: CLUSTER,
      node: creds.node,
      keyPem: creds.keyPem,
      certPem: creds.certPem,
      caPem: ca.certPem,
      authorised: (n) => peerGrantsOf(snap.part).get(n) ?? false,
      host: "127.0.0.1",
      probeIntervalMs: 200,
      connectTimeoutMs: 2500,
    });
    started.push(links);
    const refused: string[] = [];
    links.on("refused", (r) => refused.push(r.reason));
    return { links, refused };
  }

  it("grants carry the pins of meshPeers and meshInbound; entries without a pin authorise nothing", () => {
    const a = nodeCreds(ca, CLUSTER, "a");
    const b = nodeCreds(ca, CLUSTER, "b");
    const g = peerGrantsOf({ meshPeers: [peer(a), { ...peer(nodeCreds(ca, CLUSTER, "x")), certificateFingerprint: "" }], meshInbound: [inbound(b)] });
    assert.deepEqual([...g.keys()].sort(), ["a", "b"]);
    assert.equal(g.get("a")?.certificateFingerprint, pinOf(a));
    assert.equal(g.get("b")?.certificateFingerprint, pinOf(b));
    const caX = new X509Certificate(ca.certPem);
    const der = new X509Certificate(a.certPem).raw;
    const grants = (n: string): false | { certificateFingerprint: string } => g.get(n) ?? false;
    assert.equal(verifyPeerCertificate(der, caX, CLUSTER, grants, new Date()).publicKeyFingerprint, pinOf(a));
    // Same name, same CA, another key: the pin refuses it.
    const other = nodeCreds(ca, CLUSTER, "a");
    assert.throws(() => verifyPeerCertificate(new X509Certificate(other.certPem).raw, caX, CLUSTER, grants, new Date()), (e: unknown) => e instanceof PeerRefused && e.reason === "PinMismatch");
    const id = verifyPeerCertificate(der, caX, CLUSTER, grants, new Date());
    assert.equal(revalidate(id, grants), undefined);
    assert.equal(revalidate(id, () => ({ certificateFingerprint: pinOf(other) })), "PinMismatch");
    assert.equal(revalidate(id, () => false), "NotAuthorised");
  });

  it("a node listed only in the dialler's set accepts the dialler through meshInbound; without it, it refuses", async () => {
    const ac = nodeCreds(ca, CLUSTER, "a");
    const bc = nodeCreds(ca, CLUSTER, "b");
    const bSnap = { part: { meshPeers: [], meshInbound: [] } as MeshPart };
    const b = await agent(bc, bSnap);
    const a = await agent(ac, { part: { meshPeers: [peer(bc, b.links.port)] } });
    // One-sided (what a snapshot without meshInbound gives): b refuses a.
    await assert.rejects(a.links.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: b.links.port }] }));
    await until(() => b.refused.length > 0);
    assert.equal(b.refused[0], "NotAuthorised");
    // b's next snapshot lists a as inbound: accepted, link up on both ends.
    bSnap.part = { meshPeers: [], meshInbound: [inbound(ac)] };
    const info = await a.links.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: b.links.port }] });
    assert.equal(info.node, "b");
    await until(() => b.links.links().some((l) => l.node === "a" && l.direction === "inbound"));
    assert.deepEqual(await b.links.reauthorise(), []);
  });

  it("still refuses a node of another cluster, even one issued by the same CA and named in the snapshot", async () => {
    const bc = nodeCreds(ca, CLUSTER, "b");
    const foreign = nodeCreds(ca, "c2", "a");
    const b = await agent(bc, { part: { meshPeers: [], meshInbound: [inbound(foreign)] } });
    const a = await agent(foreign, { part: { meshPeers: [peer(bc, b.links.port)] } });
    await assert.rejects(a.links.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: b.links.port }] }));
    await until(() => b.refused.length > 0 || a.refused.length > 0);
    assert.deepEqual([...b.refused, ...a.refused].includes("OtherCluster"), true, `${b.refused} / ${a.refused}`);
    assert.equal(b.links.links().length, 0);
  });

  it("checks the pin on both sides: a dialler and a server presenting an unpinned key of the right name are refused", async () => {
    const ac = nodeCreds(ca, CLUSTER, "a");
    const bc = nodeCreds(ca, CLUSTER, "b");
    const aPinned = nodeCreds(ca, CLUSTER, "a"); // the key the snapshot pins for a
    const bPinned = nodeCreds(ca, CLUSTER, "b");
    // Server side: b pins another key for a.
    const b = await agent(bc, { part: { meshPeers: [], meshInbound: [inbound(aPinned)] } });
    const a = await agent(ac, { part: { meshPeers: [peer(bc, b.links.port)] } });
    await assert.rejects(a.links.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: b.links.port }] }));
    await until(() => b.refused.length > 0);
    assert.equal(b.refused[0], "PinMismatch");
    // Dialling side: a pins another key for b.
    const b2 = await agent(bc, { part: { meshPeers: [], meshInbound: [inbound(ac)] } });
    const a2 = await agent(ac, { part: { meshPeers: [peer(bPinned, b2.links.port)] } });
    await assert.rejects(a2.links.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: b2.links.port }] }));
    await until(() => a2.refused.length > 0);
    assert.equal(a2.refused[0], "PinMismatch");
    // b2 accepted a2 (a2's key is the one it pins) and may hold the connection until a2's refusal closes it.
    await until(() => b2.links.links().length === 0 && a2.links.links().length === 0);
  });

  it("after a renewal the old link closes once the snapshot pins the new key, and the renewed node links again", async () => {
    const ac = nodeCreds(ca, CLUSTER, "a");
    const bc = nodeCreds(ca, CLUSTER, "b");
    const bSnap = { part: { meshPeers: [], meshInbound: [inbound(ac)] } as MeshPart };
    const b = await agent(bc, bSnap);
    const a = await agent(ac, { part: { meshPeers: [peer(bc, b.links.port)] } });
    await a.links.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: b.links.port }] });
    await until(() => b.links.links().length === 1);
    // a renews (new key); the directory publishes its new fingerprint in b's next snapshot.
    const renewed = nodeCreds(ca, CLUSTER, "a");
    bSnap.part = { meshPeers: [], meshInbound: [inbound(renewed)] };
    assert.deepEqual(await b.links.reauthorise(), ["a"]);
    await until(() => a.links.links().length === 0);
    // a's agent restarts its links with the renewed certificate (as the mesh loop does) and is accepted.
    await a.links.stop();
    const a2 = await agent(renewed, { part: { meshPeers: [peer(bc, b.links.port)] } });
    await a2.links.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: b.links.port }] });
    await until(() => b.links.links().some((l) => l.node === "a"));
    // The old certificate is refused now.
    const stale = await agent(ac, { part: { meshPeers: [peer(bc, b.links.port)] } });
    b.refused.length = 0;
    await b.links.close("a");
    await assert.rejects(stale.links.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: b.links.port }] }));
    await until(() => b.refused.length > 0);
    assert.equal(b.refused[0], "PinMismatch");
  });

  it("disconnects a revoked node at the next snapshot, on the side that only accepted it too", async () => {
    const ac = nodeCreds(ca, CLUSTER, "a");
    const bc = nodeCreds(ca, CLUSTER, "b");
    const bSnap = { part: { meshPeers: [], meshInbound: [inbound(ac)] } as MeshPart };
    const b = await agent(bc, bSnap);
    const a = await agent(ac, { part: { meshPeers: [peer(bc, b.links.port)] } });
    await a.links.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: b.links.port }] });
    await until(() => b.links.links().length === 1);
    // a is revoked: the directory drops it from every set, so b's next snapshot lists it nowhere.
    bSnap.part = { meshPeers: [], meshInbound: [] };
    assert.deepEqual(await b.links.reauthorise(), ["a"]);
    await until(() => a.links.links().length === 0);
    await assert.rejects(a.links.connect({ node: "b", endpoints: [{ host: "127.0.0.1", port: b.links.port }] }));
  });
});
