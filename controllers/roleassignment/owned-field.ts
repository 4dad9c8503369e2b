/**
 * Writes one status field of ANOTHER kind's objects that this controller
 * owns (FabricNode status.assignedRoles and status.workloads, FabricCluster
 * status.roleCoverage). Several workers of several reconcilers may compute
 * the field for the same object, so per object: one write at a time, the
 * value computed inside the lock from PostgreSQL (after the caller's
 * commit), and compared with what this instance last wrote rather than with
 * a possibly stale cache. The merge patch names only this field, so fields
 * and conditions owned by the kind's own controller are never touched.
 */
import type { CustomObjectsApi } from "@kubernetes/client-node";
import { jsonEqual, patchStatusIfChanged } from "../runtime/index.js";

/** See the module comment. */
export class OwnedStatusField<T> {
  private readonly locks = new Map<string, Promise<void>>();
  private readonly written = new Map<string, T | undefined>();

  constructor(
    private readonly api: CustomObjectsApi,
    private readonly res: { group: string; version: string; plural: string },
    private readonly field: string,
  ) {}

  /**
   * Computes the value (inside the object's lock) and patches it when it
   * differs from the last written one (or, first, from `cached`). A value of
   * undefined removes the field.
   */
  async write(name: string, cached: T | undefined, compute: () => Promise<T | undefined>): Promise<boolean> {
    const prev = this.locks.get(name) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const chained = prev.then(() => mine);
    this.locks.set(name, chained);
    await prev;
    try {
      const value = await compute();
      const last = this.written.has(name) ? this.written.get(name) : cached;
      if (jsonEqual(last, value)) return false;
      await patchStatusIfChanged(this.api, { ...this.res, name }, { [this.field]: last }, { [this.field]: value });
      this.written.set(name, value);
      return true;
    } catch (err) {
      this.written.delete(name); // unknown server state: compare with the cache next time
      throw err;
    } finally {
      release();
      if (this.locks.get(name) === chained) this.locks.delete(name);
    }
  }

  /** Forgets an object (deleted). */
  forget(name: string): void {
    this.written.delete(name);
  }
}
