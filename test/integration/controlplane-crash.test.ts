/**
 * The control plane as a real process: SIGKILL during a burst of writes loses
 * no acknowledged write; the next start reuses the same database and leaves no
 * orphaned postgres behind; SIGTERM stops everything.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import { loadKubeConfig } from "../../lib/kube/kubeconfig.js";
import { spawnControlPlane, tempStateDir } from "../support/controlplane.js";

const group = "accessfabric.io";
const version = "v1alpha1";
const plural = "nodegroups";

/** PIDs of postgres postmasters serving a data directory. */
function postmastersFor(dataDir: string): number[] {
  const out = execFileSync("ps", ["-eo", "pid=,args="], { encoding: "utf8" });
  return out
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => /\/postgres -D /.test(l) && l.includes(`-D ${dataDir} `))
    .map((l) => Number.parseInt(l, 10));
}

function clientFor(kubeconfig: string): k8s.CustomObjectsApi {
  return loadKubeConfig(kubeconfig).makeApiClient(k8s.CustomObjectsApi);
}

/** Rejects when `p` takes longer than `ms`: a request that never answers is not acknowledged. */
function within<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(t);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

describe("control plane process", function () {
  this.timeout(180_000);
  const stateDir = tempStateDir("fabric-crash-");
  const dataDir = join(stateDir, "postgres");
  after(() => rmSync(stateDir, { recursive: true, force: true }));

  it("loses no acknowledged write when SIGKILLed mid-burst, and restarts on the same database", async () => {
    const first = await spawnControlPlane(stateDir);
    const api = clientFor(first.kubeconfig);
    const acked: string[] = [];
    let lastError = "";
    let stop = false;
    const writer = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const name = `burst-${w}-${i}`;
        try {
          await within(api.createClusterCustomObject({ group, version, plural, body: { apiVersion: `${group}/${version}`, kind: "NodeGroup", metadata: { name }, spec: { cluster: "crash" } } }), 15_000);
          acked.push(name);
        } catch (err) {
          lastError = String(err);
          return; // the server died mid-request: not acknowledged
        }
      }
    };
    let finished = 0;
    const writers = Array.from({ length: 8 }, (_, w) => writer(w).finally(() => finished++));
    while (acked.length < 150 && finished < writers.length) await new Promise((r) => setTimeout(r, 20));
    assert.ok(acked.length >= 150, `writers stopped after ${acked.length} writes, before the kill: ${lastError}\n${first.output()}`);
    first.child.kill("SIGKILL");
    await first.exited;
    stop = true;
    await Promise.all(writers);
    assert.ok(acked.length >= 150);

    const second = await spawnControlPlane(stateDir);
    try {
      assert.equal(postmastersFor(dataDir).length, 1, "expected exactly one postmaster for the data dir after restart");
      const api2 = clientFor(second.kubeconfig);
      const list = (await api2.listClusterCustomObject({ group, version, plural })) as { items: Array<{ metadata: { name: string } }> };
      const stored = new Set(list.items.map((i) => i.metadata.name));
      const lost = acked.filter((n) => !stored.has(n));
      assert.deepEqual(lost, [], `acknowledged writes lost: ${lost.length}`);
    } finally {
      second.child.kill("SIGTERM");
      const code = await second.exited;
      assert.equal(code, 0, second.output());
    }
    assert.deepEqual(postmastersFor(dataDir), [], "postgres left running after SIGTERM");
  });

  it("stops cleanly on SIGTERM right after it is ready, every time", async () => {
    // Regression: TLS connections that never carried a request (the
    // controllers' pooled client) used to keep server.close() waiting forever.
    for (let i = 0; i < 3; i++) {
      const dir = tempStateDir("fabric-sigterm-");
      try {
        const cp = await spawnControlPlane(dir);
        cp.child.kill("SIGTERM");
        const code = await cp.exited;
        assert.equal(code, 0, cp.output());
        assert.deepEqual(postmastersFor(join(dir, "postgres")), [], "postgres left running after SIGTERM");
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  });
});
