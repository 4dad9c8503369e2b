/** Streaming artifact verification: length cap, exact length, sha256. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { ArtifactHasher, ReleaseError, verifyArtifactStream } from "../../lib/release/index.js";

const data = Buffer.from("the artifact bytes, exactly as signed");
const expected = { length: data.length, sha256: createHash("sha256").update(data).digest("hex") };

async function* chunks(...parts: Buffer[]): AsyncGenerator<Buffer> {
  for (const p of parts) yield p;
}

async function refusedWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => err instanceof ReleaseError && err.code === code);
}

describe("artifact verification", () => {
  it("accepts the signed bytes in any chunking", async () => {
    await verifyArtifactStream(chunks(data), expected);
    await verifyArtifactStream(chunks(data.subarray(0, 5), data.subarray(5, 6), data.subarray(6)), expected);
  });

  it("refuses a changed byte (HashMismatch)", async () => {
    const changed = Buffer.from(data);
    changed[3] ^= 1;
    await refusedWith(verifyArtifactStream(chunks(changed), expected), "HashMismatch");
  });

  it("refuses a short artifact (LengthMismatch)", async () => {
    await refusedWith(verifyArtifactStream(chunks(data.subarray(1)), expected), "LengthMismatch");
  });

  it("cuts an endless stream at the declared length (TooLong) without reading on", async () => {
    let pulled = 0;
    async function* endless(): AsyncGenerator<Buffer> {
      for (;;) {
        pulled++;
        yield Buffer.alloc(16, 0x41);
      }
    }
    await refusedWith(verifyArtifactStream(endless(), expected), "TooLong");
    assert.ok(pulled <= Math.ceil(data.length / 16) + 1, `pulled ${pulled} chunks`);
  });

  it("refuses a digest that is not lowercase hex", () => {
    const h = new ArtifactHasher({ length: data.length, sha256: expected.sha256.toUpperCase() });
    h.update(data);
    assert.throws(() => h.finish(), (err: unknown) => err instanceof ReleaseError && err.code === "HashMismatch");
  });
});
