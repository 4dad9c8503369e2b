/**
 * Watch: a chunked stream of JSON watch events (or Table rows for kubectl).
 *
 * The stream subscribes to the hub first and buffers what it hears, then
 * replays the starting state: the current list as ADDED events when the
 * client gives no resourceVersion, else the stored events after the given
 * one (410 ERROR when that revision was compacted). It then drains the
 * buffer and goes live; events at or below the last revision sent are
 * dropped, so the overlap between replay and buffer is sent once. Bookmarks,
 * when asked for, tell the client the revision it has seen.
 */
import type Koa from "koa";
import { PassThrough } from "node:stream";
import { gone, StatusError } from "../errors.js";
import type { KubeObject } from "../object.js";
import { groupVersion, type ResourceDef } from "../registry.js";
import { matchesFields, matchesLabels } from "../../lib/kube/selectors.js";
import type { StoredEvent } from "../store.js";
import { tableVersion } from "../table.js";
import { boolParam, invalidOptions, resourceVersionMatchParam, resourceVersionParam, tooLargeResourceVersion, watchTimeoutMs } from "./params.js";
import { requestSelectors, tableOf, type Selectors } from "./read.js";
import { queryOf, withTypeMeta, type Query, type ResourceRequest, type RestEnv } from "./request.js";

/** How many stored events one query reads when resuming from a resourceVersion. */
const resumeBatch = 5000;

/** GET with watch=true, or the legacy /watch/ path. */
export async function watchObjects(env: RestEnv, ctx: Koa.Context, req: ResourceRequest): Promise<void> {
  const q = queryOf(ctx);
  const def = req.def;
  const sel = watchSelectors(q, req);
  const namespace = def.namespaced ? req.namespace : undefined;
  const tv = tableVersion(ctx.get("accept"));
  const bookmarks = boolParam(q, "allowWatchBookmarks");
  const timeoutMs = watchTimeoutMs(q, env.opts.watchTimeoutMs);
  if (boolParam(q, "sendInitialEvents")) {
    // Streaming lists (the WatchList feature) are not served; client-go falls back to list+watch on this answer.
    throw invalidOptions("ListOptions", [
      { reason: "FieldValueForbidden", field: "sendInitialEvents", message: "Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled" },
    ]);
  }
  resourceVersionMatchParam(q, true);
  const from = resourceVersionParam(q);

  const stream = openEventStream(ctx);
  const watch = new WatchStream(env, ctx, def, stream, { namespace, sel, tv, bookmarks });
  watch.open(timeoutMs);
  try {
    const start = env.hub.lastRv;
    if (from === undefined) {
      await watch.replayList(start);
    } else {
      const { rv: current, compactedRv } = await env.store.revision();
      if (from > BigInt(current)) {
        // kube-apiserver waits briefly for the revision, then answers this.
        watch.fail(tooLargeResourceVersion(from, current));
        return;
      }
      if (from < BigInt(compactedRv)) {
        watch.fail(gone(`too old resource version: ${from.toString()} (${String(compactedRv)})`));
        return;
      }
      await watch.replayFrom(Number(from), start);
    }
    watch.goLive();
  } catch (err) {
    if (err instanceof StatusError) {
      watch.fail(err);
      return;
    }
    watch.fail(new StatusError(500, "InternalError", "Internal error occurred: watch failed"));
    // The server's error middleware logs it and counts the 500.
    throw err;
  }
}

/**
 * The request's selectors; a watch on one object (its path, or the legacy
 * /watch/.../name form) adds a requirement on the name, built as a term
 * rather than parsed, so any name is matched literally.
 */
function watchSelectors(q: Query, req: ResourceRequest): Selectors {
  const sel = requestSelectors(q, req.def);
  if (req.name !== undefined) {
    sel.fields = { requirements: [{ field: "metadata.name", operator: "=", value: req.name }, ...(sel.fields?.requirements ?? [])] };
  }
  return sel;
}

/** Answers 200 with a chunked JSON stream and sends the headers now: clients treat the watch as established once they arrive. */
function openEventStream(ctx: Koa.Context): PassThrough {
  const stream = new PassThrough();
  ctx.status = 200;
  ctx.type = "application/json";
  ctx.set("Cache-Control", "no-cache, private");
  ctx.set("Transfer-Encoding", "chunked");
  ctx.body = stream;
  ctx.flushHeaders();
  return stream;
}

/** What a watch selects and how it answers. */
interface WatchFilter {
  namespace: string | undefined;
  sel: Selectors;
  /** The Table version to send rows as, when the client asked for Tables. */
  tv: "v1" | "v1beta1" | undefined;
  bookmarks: boolean;
}

/** One open watch: its subscription, its timers and what it has sent. */
class WatchStream {
  /** The revision of the last event sent (or skipped as already seen). */
  private lastSent = 0;
  private closed = false;
  /** False while the starting state is replayed; hub events are buffered until then. */
  private live = false;
  private readonly buffered: StoredEvent[] = [];
  /**
   * With a label or field selector, an object can start or stop matching:
   * like kube-apiserver, turn that change into ADDED or DELETED (client
   * caches would otherwise keep an object that no longer matches). The
   * watch tracks which keys its client holds to tell.
   */
  private held: Set<string> | undefined;
  private firstTable = true;
  private unsubscribe: () => void = () => undefined;
  private timeoutTimer: NodeJS.Timeout | undefined;
  private bookmarkTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly env: RestEnv,
    private readonly ctx: Koa.Context,
    private readonly def: ResourceDef,
    private readonly stream: PassThrough,
    private readonly filter: WatchFilter,
  ) {
    const filtered = filter.sel.labels !== undefined || filter.sel.fields !== undefined;
    this.held = filtered ? new Set() : undefined;
  }

  /** Subscribes to the hub and starts the timeout and bookmark timers; the stream closes with the client. */
  open(timeoutMs: number): void {
    this.unsubscribe = this.env.hub.subscribe(this.def.group, this.def.plural, (ev) => {
      if (this.closed) return;
      if (!this.live) {
        this.buffered.push(ev);
        return;
      }
      try {
        this.deliver(ev);
      } catch {
        // One broken watch must not break the hub's fan-out to the others.
        this.fail(new StatusError(500, "InternalError", "Internal error occurred: watch failed"));
      }
    });
    this.env.onWatchChange(1);
    this.ctx.req.on("close", this.close);
    this.stream.on("error", this.close);
    this.timeoutTimer = setTimeout(this.close, timeoutMs);
    this.bookmarkTimer = setInterval(() => {
      if (!this.live || !this.filter.bookmarks) return;
      this.sendBookmark(Math.max(this.lastSent, this.env.hub.lastRv));
    }, this.env.opts.bookmarkIntervalMs);
  }

  /** Sends the current list as ADDED events, then the events from the list's revision through `start` (or what the hub has seen since). */
  async replayList(start: number): Promise<void> {
    const { store, hub } = this.env;
    const list = await store.list(this.def.group, this.def.plural, { namespace: this.filter.namespace });
    for (const o of list.items) {
      if (!this.matches(o)) continue;
      this.held?.add(keyOf(o));
      this.send("ADDED", o);
    }
    this.lastSent = list.rv;
    const upto = Math.max(start, hub.lastRv);
    if (upto > list.rv) for (const ev of await store.events(list.rv, upto, this.def)) this.deliver(ev);
  }

  /** Sends the stored events after revision `from` through `start` (or what the hub has seen since), in batches. */
  async replayFrom(from: number, start: number): Promise<void> {
    const { store, hub } = this.env;
    if (this.held !== undefined) {
      // The keys the client holds are those that matched at its revision.
      this.held = await store.keysMatchingAt(this.def.group, this.def.plural, this.filter.namespace, from, (o) => this.matches(o));
    }
    this.lastSent = from;
    let cursor = from;
    const upto = Math.max(start, hub.lastRv);
    for (;;) {
      const evs = await store.events(cursor, upto, this.def, resumeBatch);
      for (const ev of evs) this.deliver(ev);
      if (evs.length < resumeBatch) break;
      cursor = evs[evs.length - 1]?.rv ?? upto;
    }
    if (this.lastSent < upto) this.lastSent = Math.max(this.lastSent, from);
  }

  /** Sends what the hub buffered during the replay and streams hub events from now on. */
  goLive(): void {
    for (const ev of this.buffered) this.deliver(ev);
    this.buffered.length = 0;
    this.live = true;
    if (this.filter.bookmarks) {
      // An early bookmark tells informers the stream is established.
      this.sendBookmark(Math.max(this.lastSent, this.env.hub.lastRv));
    }
  }

  /** Sends an ERROR event carrying `err`'s Status and closes the stream. */
  fail(err: StatusError): void {
    if (this.closed) return;
    this.stream.write(JSON.stringify({ type: "ERROR", object: err.toStatus() }) + "\n");
    this.close();
  }

  /** Ends the stream and releases the subscription and timers; safe to call more than once. */
  readonly close = (): void => {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe();
    clearInterval(this.bookmarkTimer);
    clearTimeout(this.timeoutTimer);
    this.env.onWatchChange(-1);
    this.stream.end();
  };

  private matches(o: KubeObject): boolean {
    const { namespace, sel } = this.filter;
    return (
      (namespace === undefined || o.metadata.namespace === namespace) &&
      (!sel.labels || matchesLabels(sel.labels, o.metadata.labels)) &&
      (!sel.fields || matchesFields(sel.fields, o, sel.fieldValue))
    );
  }

  /** Sends one stored event unless it was sent already, as ADDED or DELETED when it moves the object into or out of the selection. */
  private deliver(ev: StoredEvent): void {
    if (ev.rv <= this.lastSent) return;
    this.lastSent = ev.rv;
    const held = this.held;
    if (held === undefined) {
      if (this.matches(ev.object)) this.send(ev.type, ev.object);
      return;
    }
    const k = keyOf(ev.object);
    const had = held.has(k);
    if (ev.type === "DELETED") {
      if (had || this.matches(ev.object)) this.send("DELETED", ev.object);
      held.delete(k);
    } else if (this.matches(ev.object)) {
      held.add(k);
      this.send(had ? ev.type : "ADDED", ev.object);
    } else if (had) {
      held.delete(k);
      this.send("DELETED", ev.object);
    }
  }

  private sendBookmark(rv: number): void {
    this.send("BOOKMARK", { apiVersion: groupVersion(this.def), kind: this.def.kind, metadata: { resourceVersion: String(rv) } });
  }

  /** Writes one watch event line; objects become Table rows when the client asked for Tables (column headers only in the first). */
  private send(type: string, obj: KubeObject): void {
    const tv = this.filter.tv;
    let payload: unknown = withTypeMeta(this.def, obj);
    if (tv && type !== "BOOKMARK" && type !== "ERROR") {
      payload = tableOf(this.def, [obj], { resourceVersion: obj.metadata.resourceVersion }, this.ctx, tv, !this.firstTable);
      this.firstTable = false;
    }
    this.stream.write(JSON.stringify({ type, object: payload }) + "\n");
  }
}

function keyOf(o: KubeObject): string {
  return `${o.metadata.namespace ?? ""}/${o.metadata.name}`;
}
