/**
 * Deterministic sample snapshots for tests and benchmarks (not used by the
 * product). Shaped like what the snapshot builder will emit for a typical
 * service node: ~5 workloads, ~5 mesh peers, 1 VPN assignment, 2 updates.
 * Everything derives from the node index, so the same index gives the same
 * bytes.
 */
import { sign as edSign, type KeyObject } from "node:crypto";
import { canonicalize } from "./canonical-json.js";
import {
  SIGNATURE_DOMAIN,
  type SnapshotHeader,
  type SnapshotMeshPeer,
  type SnapshotPayload,
  type SnapshotUpdate,
  type SnapshotWorkload,
} from "./format.js";

/** Options for {@link sampleHeader}. */
export interface SampleHeaderOptions {
  cluster?: string;
  node?: string;
  serial?: number;
  authorityTerm?: number;
  issuedAt?: Date;
  /** Lifetime in ms; default 24 h. */
  lifetimeMs?: number;
  keyId: string;
}

/** A v1 header; defaults: cluster "eu-1", node "node-0001", serial 1, term 1, issued 2025-01-01T00:00:00Z. */
export function sampleHeader(o: SampleHeaderOptions): SnapshotHeader {
  const issuedAt = o.issuedAt ?? new Date("2025-01-01T00:00:00.000Z");
  return {
    formatVersion: 1,
    cluster: o.cluster ?? "eu-1",
    node: o.node ?? "node-0001",
    serial: o.serial ?? 1,
    authorityTerm: o.authorityTerm ?? 1,
    issuedAt: issuedAt.toISOString(),
    expiresAt: new Date(issuedAt.getTime() + (o.lifetimeMs ?? 24 * 3600_000)).toISOString(),
    keyId: o.keyId,
  };
}

function hex(seed: number, len: number): string {
  let out = "";
  let x = (seed * 2654435761) >>> 0;
  while (out.length < len) {
    x = (x * 1103515245 + 12345) >>> 0;
    out += x.toString(16).padStart(8, "0");
  }
  return out.slice(0, len);
}

/** Node name for an index: node-0001, node-0002, ... */
export function sampleNodeName(i: number): string {
  return `node-${String(i).padStart(4, "0")}`;
}

function workload(i: number, w: number): SnapshotWorkload {
  const container = w % 2 === 1;
  const name = ["ingress-proxy", "session-broker", "metrics-agent", "rdp-gateway", "log-shipper", "vnc-relay"][w % 6] ?? "svc";
  return {
    name: `${name}-${w}`,
    generation: 1 + ((i + w) % 7),
    role: ["ingress", "service", "observability", "egress", "observability", "service"][w % 6] ?? "service",
    runtime: container ? "container" : "native",
    ...(container ? { containerEngine: w % 4 === 1 ? ("podman" as const) : ("docker" as const), image: `registry.example.internal/fabric/${name}:1.${w}.${i % 10}` } : {}),
    command: container ? [] : [`/opt/accessfabric/bin/${name}`],
    args: ["--listen", `127.0.0.1:${9000 + w}`, "--cluster", "eu-1", "--log-format", "json"],
    env: { FABRIC_NODE: sampleNodeName(i), FABRIC_REGION: "eu-west", LOG_LEVEL: "info", MAX_SESSIONS: String(100 + w * 50) },
    restartPolicy: "Always",
    healthProbe:
      w % 3 === 0
        ? { kind: "http", url: `http://127.0.0.1:${9000 + w}/healthz`, periodSeconds: 10, timeoutSeconds: 2, failureThreshold: 3 }
        : { kind: "tcp", port: 9000 + w, periodSeconds: 15, timeoutSeconds: 3, failureThreshold: 3 },
    release: { component: name, version: `1.${w}.${i % 10}` },
  };
}

function meshPeer(i: number, p: number): SnapshotMeshPeer {
  const peer = ((i * 7 + p * 13) % 5000) + 1;
  const name = sampleNodeName(peer);
  return {
    node: name,
    endpoints: [`10.${(peer >> 8) & 255}.${peer & 255}.${10 + p}:7443`, `[fd00::${peer.toString(16)}]:7443`],
    serverName: `${name}.eu-1.nodes.accessfabric.internal`,
    certificateFingerprint: `sha256:${hex(peer, 64)}`,
    nodeClass: p === 0 ? "core" : p === 1 ? "relay" : "standard",
    region: ["eu-west", "eu-central", "eu-north"][p % 3],
    roles: p === 0 ? ["mesh-core", "relay"] : ["mesh"],
  };
}

function update(i: number, component: string, u: number): SnapshotUpdate {
  return {
    component,
    channel: "stable",
    version: `2.${u + 3}.${i % 5}`,
    ring: `ring-${i % 3}`,
    artifact: {
      os: "linux",
      arch: "amd64",
      url: `https://releases.accessfabric.internal/${component}/2.${u + 3}.${i % 5}/${component}-linux-amd64.tar.gz`,
      sha256: hex(i * 31 + u, 64),
      size: 18_000_000 + u * 1_000_000 + (i % 1000),
    },
    releaseSignature: Buffer.from(hex(i * 17 + u, 128), "hex").toString("base64"),
  };
}

/** Options for {@link samplePayload}. Defaults give the "typical node" of the module comment (~5.8 KB signed). */
export interface SamplePayloadOptions {
  node?: string;
  workloads?: number;
  meshPeers?: number;
  vpnAssignments?: number;
}

/** A payload for node index `i`. */
export function samplePayload(i: number, o: SamplePayloadOptions = {}): SnapshotPayload {
  const node = o.node ?? sampleNodeName(i);
  return {
    identity: {
      name: node,
      hostFingerprint: `sha256:${hex(i, 64)}`,
      certificateSerial: `4${hex(i + 1, 31)}`,
      certificateNotAfter: "2026-01-01T00:00:00.000Z",
      group: `rack-${i % 40}`,
      membership: "Active",
    },
    roles: [
      { role: "mesh", assignment: "all-nodes-mesh" },
      { role: "service", assignment: "service-pool", organization: `org-${i % 20}` },
    ],
    workloads: Array.from({ length: o.workloads ?? 5 }, (_, w) => workload(i, w)),
    meshPeers: Array.from({ length: o.meshPeers ?? 5 }, (_, p) => meshPeer(i, p)),
    vpnAssignments: Array.from({ length: o.vpnAssignments ?? 1 }, (_, v) => ({
      connection: `site-to-site-${(i + v) % 50}`,
      organization: `org-${i % 20}`,
      enabled: true,
      routes: ["10.20.0.0/16", `192.168.${(i + v) % 255}.0/24`],
      hasCredentialRef: true,
    })),
    updates: [update(i, "fabric-agent", 0), update(i, "ingress-proxy", 1)],
  };
}

/**
 * Encoded snapshot bytes, validly signed by `privateKey`, whose payload
 * carries one more member, `zzNested` (it sorts last, so the canonical text
 * is the signed body with the member spliced in), holding `depth` nested
 * arrays. Hostile input for the verifier's depth limit: a control plane's
 * signing key in the wrong hands. Built as text so that nothing here walks
 * the nesting; the header's keyId must be the key's id.
 */
export function signedSnapshotWithNesting(header: SnapshotHeader, payload: SnapshotPayload, privateKey: KeyObject, depth: number): Buffer {
  const nested = "[".repeat(depth) + "]".repeat(depth);
  const plain = canonicalize({ header, payload });
  // `{"header":{..},"payload":{..}}`: insert before the payload's closing brace.
  const body = `${plain.slice(0, -2)},"zzNested":${nested}}}`;
  const signature = edSign(null, Buffer.from(SIGNATURE_DOMAIN + body, "utf8"), privateKey).toString("base64");
  return Buffer.from(`${body.slice(0, -1)},"signature":${JSON.stringify(signature)}}`, "utf8");
}
