/**
 * Wires one membership's update cache (cache.ts) into the agent's snapshot
 * loop: every verified snapshot in force hands its `updateCache` part over
 * (absent: not a cache node, nothing listens). The mirror downloads with
 * the membership's mTLS identity; the endpoint goes out as status kind
 * `update-cache`.
 */
import { UPDATE_CACHE_STATUS_KIND } from "../../lib/agent-protocol.js";
import type { Logger } from "../../lib/log.js";
import { AgentApiClient } from "../http/client.js";
import { loadIdentity, type StoredIdentity } from "../enroll/identity-store.js";
import type { MembershipSync } from "../sync/snapshot-sync.js";
import { statusSender } from "../sync/status-sender.js";
import { UpdateCache } from "./cache.js";

export interface UpdateCacheFlags {
  port: number;
  host?: string;
  advertise?: string;
}

/** See the module comment. Resolves stop() once the server closed. */
export function runUpdateCache(sync: MembershipSync, o: UpdateCacheFlags & { log: Logger; identity: StoredIdentity }): { cache: UpdateCache; stop: () => Promise<void> } {
  const log = o.log.with({ cluster: sync.status.cluster, node: sync.status.node, part: "update-cache" });
  const sender = statusSender(sync.dir, o.identity, UPDATE_CACHE_STATUS_KIND);
  const cache = new UpdateCache({
    dir: sync.dir,
    identity: { cluster: o.identity.info.cluster, node: o.identity.info.node, caPem: o.identity.caPem, certPem: o.identity.certPem, keyPem: o.identity.keyPem },
    port: o.port,
    ...(o.host !== undefined ? { host: o.host } : {}),
    ...(o.advertise !== undefined ? { advertise: o.advertise } : {}),
    client: async () => {
      const id = await loadIdentity(sync.dir);
      return new AgentApiClient(id.info.server, { ca: id.serverCaPem, cert: id.certPem, key: id.keyPem }, { maxSockets: 1 });
    },
    send: sender.send,
    log,
  });
  let stopped = false;
  sync.subscribe((snapshot) => {
    if (stopped) return;
    cache.apply(snapshot.payload.updateCache).catch((err: unknown) => log.error("update cache could not apply the snapshot", { err }));
  });
  return {
    cache,
    async stop() {
      stopped = true;
      await cache.stop();
      sender.close();
    },
  };
}
