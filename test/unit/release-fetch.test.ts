/**
 * agent/update/fetch.ts against hostile sources without a network (the
 * real agent API is exercised in test/integration/releases.test.ts): an
 * endless body is cut at the signed length and leaves nothing, a partial is
 * resumed with a Range request, a server ignoring Range restarts cleanly.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { fetchArtifact, type ArtifactClient } from "../../agent/update/fetch.js";
import { ReleaseError } from "../../lib/release/index.js";

const data = randomBytes(100_000);
const artifact = { sha256: createHash("sha256").update(data).digest("hex"), length: data.length };

function client(serve: (range: string | undefined) => { status: number; body: Readable; contentRange?: string }): ArtifactClient & { ranges: Array<string | undefined> } {
  const ranges: Array<string | undefined> = [];
  return {
    ranges,
    async stream(_path: string, headers: Record<string, string> = {}) {
      ranges.push(headers.Range);
      const r = serve(headers.Range);
      return Object.assign(r.body, { statusCode: r.status, headers: r.contentRange ? { "content-range": r.contentRange } : {} }) as unknown as IncomingMessage;
    },
  };
}

describe("agent artifact fetch", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "afg-fetch-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("cuts an endless body at the signed length and keeps nothing", async () => {
    let served = 0;
    const endless = new Readable({
      read() {
        served += 65536;
        this.push(Buffer.alloc(65536, 1));
      },
    });
    await assert.rejects(fetchArtifact(client(() => ({ status: 200, body: endless })), artifact, dir), (e: unknown) => e instanceof ReleaseError && e.code === "TooLong");
    assert.ok(served < 10 * data.length, `served ${served}`);
    assert.deepEqual(readdirSync(dir), []);
  });

  it("resumes a partial with a Range request and verifies the whole", async () => {
    writeFileSync(join(dir, `${artifact.sha256}.partial`), data.subarray(0, 40_000));
    const c = client(() => ({ status: 206, body: Readable.from([data.subarray(40_000)]), contentRange: `bytes 40000-${data.length - 1}/${data.length}` }));
    const path = await fetchArtifact(c, artifact, dir);
    assert.deepEqual(c.ranges, ["bytes=40000-"]);
    assert.deepEqual(readFileSync(path), data);
    assert.deepEqual(readdirSync(dir), [artifact.sha256]);
  });

  it("starts over when the server answers a Range request with the whole artifact", async () => {
    writeFileSync(join(dir, `${artifact.sha256}.partial`), data.subarray(0, 40_000));
    const path = await fetchArtifact(client(() => ({ status: 200, body: Readable.from([data]) })), artifact, dir);
    assert.deepEqual(readFileSync(path), data);
  });

  it("refuses a changed byte, drops a corrupted partial, and reuses a verified final file without a request", async () => {
    const bad = Buffer.from(data);
    bad[5] ^= 1;
    await assert.rejects(fetchArtifact(client(() => ({ status: 200, body: Readable.from([bad]) })), artifact, dir), (e: unknown) => e instanceof ReleaseError && e.code === "HashMismatch");
    assert.deepEqual(readdirSync(dir), []);
    const c = client(() => ({ status: 200, body: Readable.from([data]) }));
    await fetchArtifact(c, artifact, dir);
    await fetchArtifact(c, artifact, dir);
    assert.equal(c.ranges.length, 1);
  });

  it("keeps the partial when the body ends early, for the next attempt", async () => {
    await assert.rejects(fetchArtifact(client(() => ({ status: 200, body: Readable.from([data.subarray(0, 5000)]) })), artifact, dir), /cut after 5000/);
    assert.deepEqual(readdirSync(dir), [`${artifact.sha256}.partial`]);
  });
});
