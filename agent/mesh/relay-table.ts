/**
 * Relay advertisements: a relay tells each of its linked peers which nodes it
 * holds live links to (one-way message `relay.reaches`, at most
 * {@link MAX_REACHES} names, sent when its link set changes and every
 * {@link ADVERT_INTERVAL_MS}). Receivers keep the latest advertisement per
 * relay, accept one only from a peer their own snapshot lists as
 * relay-capable, forget it when the link to the relay goes down or after
 * {@link ADVERT_TTL_MS} without a refresh, and hand the live ones to
 * `chooseRoute`. No I/O: the mesh loop sends and receives, this keeps state.
 */
import type { RelayAdvertisement } from "./routing.js";

/** One-way message method of an advertisement. */
export const RELAY_ADVERT_METHOD = "relay.reaches";
/** Refresh period of advertisements. */
export const ADVERT_INTERVAL_MS = 5000;
/** An advertisement not refreshed for this long is dropped (three periods). */
export const ADVERT_TTL_MS = 3 * ADVERT_INTERVAL_MS;
/** Most names in one advertisement (a relay keeps at most 20 active peers by default). */
export const MAX_REACHES = 256;

/** The wire payload of an advertisement. */
export interface AdvertPayload {
  reaches: string[];
}

/** What a relay advertises to `recipient`: its live links, the recipient itself left out, sorted, bounded. */
export function advertisementFor(liveLinks: readonly string[], recipient: string): AdvertPayload {
  return { reaches: [...new Set(liveLinks)].filter((n) => n !== recipient).sort().slice(0, MAX_REACHES) };
}

/** Checks a received payload; undefined when malformed or oversized. */
export function parseAdvertisement(p: unknown): AdvertPayload | undefined {
  if (typeof p !== "object" || p === null || Array.isArray(p)) return undefined;
  const reaches = (p as Record<string, unknown>)["reaches"];
  if (!Array.isArray(reaches) || reaches.length > MAX_REACHES) return undefined;
  if (!reaches.every((n) => typeof n === "string" && n.length > 0 && n.length <= 253)) return undefined;
  return { reaches: [...new Set(reaches as string[])].sort() };
}

/** The advertisements a node holds, by relay. */
export class RelayTable {
  private readonly ads = new Map<string, { reaches: string[]; atMs: number }>();

  constructor(private readonly cluster: string) {}

  /**
   * Stores an advertisement from `relay` when the sender is listed
   * relay-capable (`isRelay`) and the payload is well formed; returns
   * whether it was kept.
   */
  accept(relay: string, payload: unknown, isRelay: boolean, nowMs: number): boolean {
    if (!isRelay) return false;
    const ad = parseAdvertisement(payload);
    if (ad === undefined) return false;
    this.ads.set(relay, { reaches: ad.reaches, atMs: nowMs });
    return true;
  }

  /** Forgets a relay (its link went down, or it left the snapshot). */
  drop(relay: string): void {
    this.ads.delete(relay);
  }

  /** Keeps only the relays `keep` answers yes for. */
  retain(keep: (relay: string) => boolean): void {
    for (const relay of [...this.ads.keys()]) if (!keep(relay)) this.ads.delete(relay);
  }

  /** The advertisements younger than the TTL, for `chooseRoute`. */
  current(nowMs: number): RelayAdvertisement[] {
    const out: RelayAdvertisement[] = [];
    for (const [relay, ad] of this.ads) {
      if (nowMs - ad.atMs <= ADVERT_TTL_MS) out.push({ relay, cluster: this.cluster, reaches: ad.reaches });
    }
    return out.sort((a, b) => (a.relay < b.relay ? -1 : a.relay > b.relay ? 1 : 0));
  }
}
