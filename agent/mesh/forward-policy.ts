/**
 * The decisions behind mesh data streams, pure: what a stream header may
 * say, which ports a node exposes on the mesh, and whether a node accepts a
 * stream (as target, as relay, or inside a relayed stream). No I/O: the
 * stream service (forward.ts) reads headers, asks here, and answers.
 *
 * Stream kinds (the first frame of a data stream, docs/mesh.md "Forwarding"):
 * - `tcp {port, check?}`: connect to 127.0.0.1:port on the target (`check`
 *   only asks whether the port is declared, without connecting).
 * - `ping`: answered at once (a relayed ping's round trip).
 * - `relay {target}`: to a relay, "forward this stream to target".
 * - `relayed {source}`: from a relay to the target, "source asks for you";
 *   what follows is a TLS handshake with the source (end-to-end
 *   authentication), then an inner `tcp` or `ping` header.
 */
import type { SnapshotPayload } from "../../lib/snapshot/format.js";
import { mayForward, type ForwardRefusalReason } from "./routing.js";

/** Largest stream header or answer, bytes. */
export const MAX_HEADER_BYTES = 4096;
/** Longest node name in a header. */
const MAX_NODE_NAME = 253;
/** Roles that make a node a relay. */
export const RELAY_ROLES: readonly string[] = ["relay-node", "core-node"];

/** The first frame of a data stream. */
export type StreamOpen =
  | { kind: "tcp"; port: number; check?: boolean }
  | { kind: "ping" }
  | { kind: "relay"; target: string }
  | { kind: "relayed"; source: string };

/** Why a stream is refused (sent to the source as `<reason>: <detail>`). */
export type StreamRefusalReason =
  | "BadHeader"
  | "NotInSnapshot"
  | "PortNotDeclared"
  | "NotARelay"
  | "NoRelayChain"
  | "TargetUnreachable"
  | ForwardRefusalReason;

/** A decision on a stream header. */
export type StreamDecision = { ok: true } | { ok: false; reason: StreamRefusalReason; message: string };

function isName(v: unknown): v is string {
  return typeof v === "string" && v.length > 0 && v.length <= MAX_NODE_NAME;
}

/** Checks a parsed header; undefined when it is not one of the stream kinds (extra members refused too). */
export function parseStreamOpen(v: unknown): StreamOpen | undefined {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o).sort().join(",");
  switch (o["kind"]) {
    case "tcp": {
      const port = o["port"];
      if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) return undefined;
      if (keys === "kind,port") return { kind: "tcp", port };
      if (keys === "check,kind,port" && typeof o["check"] === "boolean") return { kind: "tcp", port, check: o["check"] };
      return undefined;
    }
    case "ping":
      return keys === "kind" ? { kind: "ping" } : undefined;
    case "relay":
      return keys === "kind,target" && isName(o["target"]) ? { kind: "relay", target: o["target"] } : undefined;
    case "relayed":
      return keys === "kind,source" && isName(o["source"]) ? { kind: "relayed", source: o["source"] } : undefined;
    default:
      return undefined;
  }
}

/** A port a ServiceWorkload exposes on the mesh, as it travels in the node's snapshot. */
export interface MeshPort {
  workload: string;
  name: string;
  port: number;
  protocol: "tcp";
}

/**
 * The mesh ports declared by the ServiceWorkloads the node's own verified
 * snapshot places on it (`workloads[].meshPorts`). Entries of the wrong
 * shape are skipped: the snapshot is signed, but the agent still never
 * trusts a member it cannot read.
 */
export function declaredMeshPorts(payload: Pick<SnapshotPayload, "workloads">): MeshPort[] {
  const out: MeshPort[] = [];
  for (const w of payload.workloads) {
    const ports = (w as unknown as Record<string, unknown>)["meshPorts"];
    if (!Array.isArray(ports)) continue;
    for (const p of ports as unknown[]) {
      if (typeof p !== "object" || p === null) continue;
      const e = p as Record<string, unknown>;
      const port = e["port"];
      if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) continue;
      if (e["protocol"] !== "tcp" || typeof e["name"] !== "string") continue;
      out.push({ workload: w.name, name: e["name"], port, protocol: "tcp" });
    }
  }
  return out.sort((a, b) => a.port - b.port || (a.workload < b.workload ? -1 : 1));
}

/** Whether the node's own roles make it a relay. */
export function isRelayNode(payload: Pick<SnapshotPayload, "roles">): boolean {
  return payload.roles.some((r) => RELAY_ROLES.includes(r.role));
}

/** What a node knows when it judges a stream: its own verified snapshot, reduced. */
export interface StreamView {
  self: string;
  cluster: string;
  /** Nodes of the snapshot's meshPeers, with whether each is listed relay-capable. */
  peers: ReadonlyMap<string, { relayCapable: boolean }>;
  /** This node holds a relay role. */
  relay: boolean;
  /** TCP ports declared on this node. */
  ports: ReadonlySet<number>;
}

/** The stream view of a verified snapshot's payload. */
export function streamViewOf(payload: Pick<SnapshotPayload, "meshPeers" | "roles" | "workloads">, self: string, cluster: string): StreamView {
  return {
    self,
    cluster,
    peers: new Map(payload.meshPeers.map((p) => [p.node, { relayCapable: p.relayCapable === true }])),
    relay: isRelayNode(payload),
    ports: new Set(declaredMeshPorts(payload).map((p) => p.port)),
  };
}

/** How a header reached this node. */
export type StreamOrigin =
  /** On a direct link from `from` (already verified at the QUIC handshake). */
  | { via: "link"; from: string }
  /** Inside a relayed stream, from the TLS-verified `source`. */
  | { via: "relayed"; source: string };

function refuse(reason: StreamRefusalReason, message: string): StreamDecision {
  return { ok: false, reason, message };
}

/**
 * Whether this node accepts a stream header. `liveLinks` answers whether
 * this node holds a live link to a node (the relay needs one to the target).
 */
export function decideStream(open: StreamOpen, origin: StreamOrigin, view: StreamView, liveLinks: (node: string) => boolean): StreamDecision {
  const from = origin.via === "link" ? origin.from : origin.source;
  if (!view.peers.has(from)) return refuse("NotInSnapshot", `node ${from} is not in node ${view.self}'s verified snapshot`);
  switch (open.kind) {
    case "ping":
      return { ok: true };
    case "tcp":
      if (!view.ports.has(open.port)) {
        return refuse("PortNotDeclared", `port ${open.port} on node ${view.self} is not declared as a mesh port by a ServiceWorkload placed on it`);
      }
      return { ok: true };
    case "relay": {
      if (origin.via === "relayed") return refuse("NoRelayChain", "a relayed stream cannot ask for another relay hop");
      if (!view.relay) return refuse("NotARelay", `node ${view.self} holds no relay role`);
      const d = mayForward(from, open.target, {
        relay: { node: view.self, cluster: view.cluster },
        peers: [...view.peers.keys()].map((node) => ({ node, cluster: view.cluster })),
      });
      if (!d.allowed) return refuse(d.reason, `relay ${view.self} may not forward from ${from} to ${open.target} (${d.reason})`);
      if (!liveLinks(open.target)) return refuse("TargetUnreachable", `relay ${view.self} holds no live link to node ${open.target}`);
      return { ok: true };
    }
    case "relayed": {
      if (origin.via === "relayed") return refuse("NoRelayChain", "a relayed stream cannot carry another relayed stream");
      if (view.peers.get(from)?.relayCapable !== true) return refuse("NotARelay", `node ${from} is not a relay in node ${view.self}'s snapshot`);
      if (open.source === view.self || open.source === from) return refuse("SameNode", `a relayed stream from ${open.source} through ${from} to ${view.self} is not a relay hop`);
      if (!view.peers.has(open.source)) return refuse("NotInSnapshot", `node ${open.source} is not in node ${view.self}'s verified snapshot`);
      return { ok: true };
    }
  }
}
