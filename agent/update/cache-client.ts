/**
 * The fetch client of one update-cache node (ArtifactClient of fetch.ts):
 * HTTPS with mutual TLS on the node's own certificate, the server accepted
 * only when its certificate chains to the cluster CA, names the expected
 * node of this cluster (URI SAN) and carries the public key the snapshot
 * pins for it (releaseUpdates.caches[].certificateFingerprint). Any non-2xx
 * answer is a CacheRefused; the fetcher then tries the next source. The
 * request itself is the agent API client's streamGet (agent/http/client.ts).
 */
import { X509Certificate } from "node:crypto";
import https from "node:https";
import type { IncomingMessage } from "node:http";
import type { PeerCertificate } from "node:tls";
import { claimedNode, publicKeyFingerprint } from "../../lib/crypto/x509.js";
import type { SnapshotUpdateCacheEndpoint } from "../../lib/snapshot/format.js";
import { streamGet, type StreamRequestOptions } from "../http/client.js";
import type { ArtifactClient } from "./fetch.js";

/** Idle timeout towards a cache, and its cap: short, the control plane is the fallback. */
const CACHE_TIMEOUT_MS = 5000;

/** A cache answered with a status other than 2xx. */
export class CacheRefused extends Error {
  override readonly name = "CacheRefused";
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** What the client needs of the membership's identity. */
export interface CacheClientIdentity {
  cluster: string;
  caPem: string;
  certPem: string;
  keyPem: string;
}

/** Why a cache's certificate is not the one the snapshot pins for it, or undefined when it is. */
export function cacheCertificateProblem(raw: Buffer, cache: Pick<SnapshotUpdateCacheEndpoint, "node" | "certificateFingerprint">, cluster: string): string | undefined {
  const cert = new X509Certificate(raw);
  const who = claimedNode(cert);
  if (who === undefined || who.cluster !== cluster || who.node !== cache.node) return `the cache's certificate names ${who === undefined ? "no node" : `${who.cluster}/${who.node}`}, not ${cluster}/${cache.node}`;
  if (publicKeyFingerprint(cert.publicKey) !== cache.certificateFingerprint) return "the cache's public key is not the one the snapshot pins";
  return undefined;
}

/** See the module comment. */
export class UpdateCacheClient implements ArtifactClient {
  private readonly agent: https.Agent;
  private readonly base: string;

  constructor(
    readonly cache: SnapshotUpdateCacheEndpoint,
    id: CacheClientIdentity,
  ) {
    this.base = `https://${cache.endpoint}`;
    this.agent = new https.Agent({
      ca: id.caPem,
      cert: id.certPem,
      key: id.keyPem,
      keepAlive: false,
      maxSockets: 1,
      checkServerIdentity: (_host: string, cert: PeerCertificate) => {
        const problem = cacheCertificateProblem(cert.raw, cache, id.cluster);
        return problem === undefined ? undefined : new Error(problem);
      },
    });
  }

  stream(path: string, headers: Record<string, string> = {}, o: StreamRequestOptions = {}): Promise<IncomingMessage> {
    return streamGet(this.agent, new URL(path, this.base), headers, {
      ...o,
      what: `${o.what ?? "request"} from update cache ${this.cache.node}`,
      defaultTimeoutMs: CACHE_TIMEOUT_MS,
      maxTimeoutMs: CACHE_TIMEOUT_MS,
      refused: (status) => new CacheRefused(status, `update cache ${this.cache.node} answered ${status}`),
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
