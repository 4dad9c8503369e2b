/** Mocha root hooks: stop the shared control plane after the run. */
import { stopSharedControlPlane } from "./controlplane.js";

export const mochaHooks = {
  async afterAll(this: Mocha.Context) {
    this.timeout(60_000);
    await stopSharedControlPlane();
  },
};
