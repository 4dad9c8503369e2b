/**
 * An index over the NodeGroup cache: children by parent name and groups by
 * cluster, kept current by informer handlers. It turns one change into the
 * groups whose validity or status depends on it (descendants, parent,
 * members of a cluster).
 */
import type { NodeGroupObject as NodeGroup } from "../objects.js";
import type { Informer } from "../runtime/index.js";

function addTo(m: Map<string, Set<string>>, k: string, v: string): void {
  let s = m.get(k);
  if (s === undefined) m.set(k, (s = new Set()));
  s.add(v);
}

function removeFrom(m: Map<string, Set<string>>, k: string, v: string): void {
  const s = m.get(k);
  if (s === undefined) return;
  s.delete(v);
  if (s.size === 0) m.delete(k);
}

/** See the module comment. */
export class GroupTree {
  private readonly children = new Map<string, Set<string>>();
  private readonly byCluster = new Map<string, Set<string>>();

  /** Subscribe before any other handler of the informer, so mappings see the updated index. */
  constructor(informer: Informer<NodeGroup>) {
    informer.addHandlers({
      onAdd: (g) => this.index(g),
      onUpdate: (o, n) => {
        this.unindex(o);
        this.index(n);
      },
      onDelete: (g) => this.unindex(g),
    });
  }

  private index(g: NodeGroup): void {
    const name = g.metadata.name;
    if (name === undefined) return;
    if (g.spec.parent) addTo(this.children, g.spec.parent, name);
    addTo(this.byCluster, g.spec.cluster, name);
  }

  private unindex(g: NodeGroup): void {
    const name = g.metadata.name;
    if (name === undefined) return;
    if (g.spec.parent) removeFrom(this.children, g.spec.parent, name);
    removeFrom(this.byCluster, g.spec.cluster, name);
  }

  /** Number of groups naming `name` as parent. */
  childCount(name: string): number {
    return this.children.get(name)?.size ?? 0;
  }

  /** Every group below `name` (cycles terminate; `name` itself excluded unless in a cycle). */
  descendants(name: string): string[] {
    const seen = new Set<string>();
    const todo = [name];
    for (let n = todo.pop(); n !== undefined; n = todo.pop()) {
      for (const c of this.children.get(n) ?? []) {
        if (!seen.has(c)) {
          seen.add(c);
          todo.push(c);
        }
      }
    }
    return [...seen];
  }

  /** Groups that name `cluster`. */
  inCluster(cluster: string): string[] {
    return [...(this.byCluster.get(cluster) ?? [])];
  }
}
