/**
 * Pure parts of the update caches: the endpoint report a cache may send
 * (validateUpdateCacheReport), the one Range form the artifact servers
 * honour (parseByteRange), the advertised endpoint, the snapshot shape of
 * the new parts (assertSnapshotPayload), and fetchArtifact's order of
 * sources (caches first, the control plane resuming or starting over).
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { fetchArtifact, type ArtifactClient } from "../../agent/update/fetch.js";
import { ReleaseError } from "../../lib/release/index.js";
import { advertised } from "../../agent/update/cache.js";
import { parseByteRange } from "../../lib/http-range.js";
import { samplePayload } from "../../lib/snapshot/fixtures.js";
import { assertSnapshotPayload } from "../../lib/snapshot/shape.js";
import { validateUpdateCacheReport } from "../../lib/state/update-cache.js";

describe("update caches: pure parts", () => {
  it("accepts only { endpoint: ip:port } as a cache's report", () => {
    assert.deepEqual(validateUpdateCacheReport({ endpoint: "10.0.0.5:8450" }), { endpoint: "10.0.0.5:8450" });
    assert.deepEqual(validateUpdateCacheReport({ endpoint: "[FD00::5]:8450" }), { endpoint: "[fd00::5]:8450" });
    for (const bad of [
      null,
      [],
      "10.0.0.5:8450",
      {},
      { endpoint: 5 },
      { endpoint: "cache.example:8450" },
      { endpoint: "fd00::5:8450" },
      { endpoint: "[10.0.0.5]:8450" },
      { endpoint: "0.0.0.0:8450" },
      { endpoint: "[::]:8450" },
      { endpoint: "10.0.0.5:0" },
      { endpoint: "10.0.0.5:65536" },
      { endpoint: "10.0.0.5" },
      { endpoint: "10.0.0.5:8450\u0000" },
      { endpoint: `${"1".repeat(70)}:1` },
      { endpoint: "10.0.0.5:8450", extra: true },
    ]) {
      assert.equal(typeof validateUpdateCacheReport(bad), "string", JSON.stringify(bad));
    }
  });

  it("parses one bytes= range; several ranges, other units and oversized headers are malformed", () => {
    assert.equal(parseByteRange(undefined, 10), undefined);
    assert.deepEqual(parseByteRange("bytes=2-4", 10), { start: 2, end: 4 });
    assert.deepEqual(parseByteRange("bytes=2-", 10), { start: 2, end: 9 });
    assert.deepEqual(parseByteRange("bytes=-3", 10), { start: 7, end: 9 });
    assert.deepEqual(parseByteRange("bytes=5-500", 10), { start: 5, end: 9 });
    assert.equal(parseByteRange("bytes=10-", 10), "unsatisfiable");
    assert.equal(parseByteRange("bytes=5-2", 10), "unsatisfiable");
    assert.equal(parseByteRange("bytes=-0", 10), "unsatisfiable");
    for (const bad of ["bytes=0-1,3-4", "bytes=-", "items=0-1", "bytes=a-1", `bytes=${"9".repeat(17)}-`, `bytes=0-${"0".repeat(70)}`, "bytes=0-1 ; x"]) {
      assert.equal(parseByteRange(bad, 10), "malformed", bad);
    }
  });

  it("advertises the flag (port 0 = the bound port) or a host address with the bound port", () => {
    assert.equal(advertised("10.1.2.3:0", 4444), "10.1.2.3:4444");
    assert.equal(advertised("10.1.2.3:9000", 4444), "10.1.2.3:9000");
    assert.match(advertised(undefined, 4444), /:4444$/);
    assert.throws(() => advertised("nope", 1));
  });

  it("checks the shape of updateCache and releaseUpdates.caches in a snapshot payload", () => {
    const p: Record<string, unknown> = structuredClone(samplePayload(0)) as unknown as Record<string, unknown>;
    const check = (v: Record<string, unknown>): void => assertSnapshotPayload(v);
    p.updateCache = { artifacts: [{ sha256: "a".repeat(64), length: 5 }] };
    check(p);
    p.updateCache = { artifacts: [{ sha256: "A".repeat(64), length: 5 }] };
    assert.throws(() => check(p), /sha256/);
    p.updateCache = { artifacts: [{ sha256: "a".repeat(64), length: -1 }] };
    assert.throws(() => check(p));
    delete p.updateCache;
    p.releaseUpdates = { trust: { keys: [], threshold: 1 }, assignments: [], caches: [{ node: "c", endpoint: "1.2.3.4:1", certificateFingerprint: "sha256:x" }] };
    check(p);
    p.releaseUpdates = { trust: { keys: [], threshold: 1 }, assignments: [], caches: [{ node: "c", endpoint: 5, certificateFingerprint: "sha256:x" }] };
    assert.throws(() => check(p), /endpoint/);
  });

  describe("fetchArtifact with caches", () => {
    const data = randomBytes(200_000);
    const artifact = { sha256: createHash("sha256").update(data).digest("hex"), length: data.length };
    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), "afc-fetch-"));
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));
    /** A source serving `body(range)`; records the ranges asked. */
    const source = (body: (from: number) => Readable | Error): ArtifactClient & { asked: number[] } => {
      const asked: number[] = [];
      return {
        asked,
        async stream(_path: string, headers: Record<string, string> = {}) {
          const from = Number(/^bytes=(\d+)-$/.exec(headers.Range ?? "")?.[1] ?? 0);
          asked.push(from);
          const b = body(from);
          if (b instanceof Error) throw b;
          return Object.assign(b, { statusCode: from > 0 ? 206 : 200, headers: from > 0 ? { "content-range": `bytes ${from}-${data.length - 1}/${data.length}` } : {} }) as unknown as IncomingMessage;
        },
      };
    };
    const cut = (from: number, to: number): Readable =>
      new Readable({
        read() {
          this.push(data.subarray(from, to));
          this.destroy(new Error("connection cut"));
        },
      });

    it("takes the artifact from the first cache that serves it; the control plane is not asked", async () => {
      const down = source(() => new Error("ECONNREFUSED"));
      const good = source((from) => Readable.from([data.subarray(from)]));
      const cp = source((from) => Readable.from([data.subarray(from)]));
      const failures: number[] = [];
      const path = await fetchArtifact(cp, artifact, dir, { caches: [down, good], onCacheFailure: (i) => failures.push(i) });
      assert.deepEqual(readFileSync(path), data);
      assert.deepEqual(failures, [0]);
      assert.deepEqual(cp.asked, []);
    });

    it("resumes from the control plane where a cut cache stopped", async () => {
      const cache = source(() => cut(0, 120_000));
      const cp = source((from) => Readable.from([data.subarray(from)]));
      const path = await fetchArtifact(cp, artifact, dir, { caches: [cache] });
      assert.deepEqual(readFileSync(path), data);
      assert.deepEqual(cp.asked, [120_000]);
    });

    it("refuses a cache's wrong bytes and starts over from the control plane", async () => {
      const bad = Buffer.from(data);
      bad[bad.length - 1] ^= 1;
      const cache = source(() => Readable.from([bad]));
      const cp = source((from) => Readable.from([data.subarray(from)]));
      const errs: unknown[] = [];
      const path = await fetchArtifact(cp, artifact, dir, { caches: [cache], onCacheFailure: (_i, e) => errs.push(e) });
      assert.deepEqual(readFileSync(path), data);
      assert.ok(errs[0] instanceof ReleaseError && errs[0].code === "HashMismatch");
      assert.deepEqual(cp.asked, [0]);
    });

    it("starts over once when the control plane's resume of a cache's wrong partial fails the hash", async () => {
      const bad = Buffer.from(data);
      bad[10] ^= 1;
      const cache = source(() => new Readable({ read() { this.push(bad.subarray(0, 50_000)); this.destroy(new Error("cut")); } }));
      const cp = source((from) => Readable.from([data.subarray(from)]));
      const path = await fetchArtifact(cp, artifact, dir, { caches: [cache] });
      assert.deepEqual(readFileSync(path), data);
      assert.deepEqual(cp.asked, [50_000, 0]);
    });
  });
});
