/**
 * The one shape in which a kind registers itself (controller-runtime's
 * SetupWithManager): a kind module takes the manager and the process's
 * shared dependencies, obtains its informers from `mgr.informerFor`, builds
 * its controller with its watches and adds it, and adds its side loops with
 * `mgr.addRunnable`. What else it hands back (`Out`, e.g. snapshot
 * contributors) is the composition root's business; the runtime knows
 * neither the kinds nor their dependencies.
 */
import type { Manager } from "./manager.js";

/** See the module comment. */
export interface KindModule<Deps, Out = void> {
  /** The kind reconciled (the Controller's kind, and the name `mgr.wake` finds it by). */
  readonly kind: string;
  /** Adds the kind's informers, controller and side loops to mgr. Called once, before mgr.start(). */
  setup(mgr: Manager, deps: Deps): Out;
}
