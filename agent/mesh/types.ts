/**
 * The shapes the mesh's pure decisions (scoring, peer manager, routing) read
 * and write. They are deliberately independent of the snapshot's wire types
 * and of the transport: the agent's mesh loop maps the verified snapshot's
 * candidate set and the transport's link table onto these, so the decisions
 * can be table-tested without either, and keep working from a checkpointed
 * snapshot (they only see whatever candidate set they are handed).
 *
 * Times are milliseconds on the caller's clock (monotonic in the agent,
 * injected in tests); nothing here reads a clock itself.
 */

/** Milliseconds; the mesh loop's only time source, injectable in tests. */
export interface MeshClock {
  now(): number;
}

/** Mesh node classes; the class bounds how many active peers a node keeps. */
export type MeshNodeClass = "core" | "relay" | "standard" | "thin";

/** This node, as the decisions need it. */
export interface MeshSelf {
  node: string;
  cluster: string;
  nodeClass: MeshNodeClass;
  region?: string;
  zone?: string;
  /** Whether other nodes can open a connection to this node (a public or routable endpoint). */
  directlyReachable: boolean;
}

/** One peer candidate from the node's current verified (or checkpointed) snapshot. */
export interface MeshCandidate {
  node: string;
  cluster: string;
  nodeClass: MeshNodeClass;
  /** host:port endpoints, preferred first (used by the transport, carried through). */
  endpoints: readonly string[];
  region?: string;
  zone?: string;
  roles: readonly string[];
  /** Whether the peer forwards between two of its peers (relay role and capability). */
  relayCapable: boolean;
  /** Whether the peer accepts direct connections. */
  directlyReachable: boolean;
  /** Last reported load in [0, 1] (from the directory); absent counts as 0.5. */
  load?: number;
}

/** Active and warm peer counts for one node class. */
export interface ClassBounds {
  min: number;
  max: number;
  /** Warm candidates probed (every minute by the transport) besides the active set. */
  warm: number;
}

/**
 * The state of one link as the transport reports it:
 * - `connecting`: a connection is being opened (counts toward the active set);
 * - `active`: a live connection with keepalive probes;
 * - `warm`: a candidate probed now and then, no long-lived connection;
 * - `failed`: the connection failed or errored (the transport closed it).
 */
export type LinkState = "connecting" | "active" | "warm" | "failed";

/** What the transport knows of one peer. */
export interface LinkObservation {
  node: string;
  state: LinkState;
  /** RTT EWMA (alpha 0.2) in ms; absent until the first probe answers. */
  rttEwmaMs?: number;
  /** Mean absolute deviation of RTT samples in ms. */
  jitterMs?: number;
  /** Fraction of probes lost over the recent window, in [0, 1]. */
  loss?: number;
  /** When the peer was last heard from (any packet). */
  lastHeardMs?: number;
  /** Consecutive connection or probe failures; reset to 0 by a success. */
  failures: number;
  /** When the last failure happened (for the failure decay). */
  lastFailureMs?: number;
  /** When the link entered its current state. */
  sinceMs: number;
}
