/**
 * Wakes the Release controller when the version store indexes an artifact:
 * the insert into `artifacts` sends `pg_notify('artifact_stored', <sha256>)`
 * (trigger in migrations/028_artifact_stored_notify.sql), whichever API
 * server stored it, and every Release not verified yet whose status lists
 * that artifact (or has no artifact list yet) is reconciled again, so
 * `ArtifactMissing` clears right after `fabricctl release push`. After a
 * reconnection every unverified Release is reconciled (uploads committed
 * meanwhile were announced to nobody); the periodic recheck
 * (ARTIFACT_RECHECK_MS, plan.ts) stays as the safety net.
 */
import type pg from "pg";
import { PgListener } from "../../lib/db/listener.js";
import type { Logger } from "../../lib/log.js";
import type { ReleaseObject } from "./reconciler.js";

/** Channel of artifact notifications. */
export const ARTIFACT_STORED_CHANNEL = "artifact_stored";

/** Names of the releases to reconcile when `sha256` was stored (undefined: any artifact). */
export function releasesWaitingFor(releases: readonly ReleaseObject[], sha256: string | undefined): string[] {
  return releases
    .filter((r) => r.status?.verified !== true)
    .filter((r) => sha256 === undefined || r.status?.artifacts === undefined || r.status.artifacts.some((a) => a.sha256 === sha256))
    .map((r) => r.metadata.name ?? "")
    .filter((n) => n !== "");
}

/** Listens until signal aborts; calls onStored with each stored sha256 (undefined after a reconnection). */
export async function listenForArtifacts(pool: pg.Pool, onStored: (sha256: string | undefined) => void, log: Logger, signal: AbortSignal): Promise<void> {
  let reconnecting = false;
  const listener = new PgListener({
    connection: pool,
    channels: [ARTIFACT_STORED_CHANNEL],
    onNotification: (n) => {
      if (n.channel === ARTIFACT_STORED_CHANNEL && n.payload !== undefined && /^[a-f0-9]{64}$/.test(n.payload)) onStored(n.payload);
    },
    onConnect: () => {
      // Not on the first connection: the controller's start lists everything anyway.
      if (reconnecting) onStored(undefined);
      reconnecting = true;
    },
    meanwhile: "periodic rechecks only",
    log: log.with({ part: "artifact-listener" }),
    retryMs: 1000,
  });
  await listener.run(signal);
}
