/**
 * Streaming verification of an artifact against its signed length and
 * sha256. Bytes are hashed as they arrive; one byte beyond the declared
 * length is refused at once (endless data), so a hostile server can never
 * make a verifier read or store more than `length` bytes. The final digest
 * is compared in constant time.
 */
import { createHash, timingSafeEqual, type Hash } from "node:crypto";
import { ReleaseError } from "./errors.js";

export interface ExpectedArtifact {
  length: number;
  sha256: string;
}

export class ArtifactHasher {
  private readonly hash: Hash = createHash("sha256");
  private received = 0;

  constructor(readonly expected: ExpectedArtifact) {}

  get bytes(): number {
    return this.received;
  }

  /** Adds a chunk; throws ReleaseError(TooLong) when the total passes the declared length. */
  update(chunk: Uint8Array): void {
    if (this.received + chunk.length > this.expected.length) {
      throw new ReleaseError("TooLong", `more than the declared ${this.expected.length} bytes`);
    }
    this.received += chunk.length;
    this.hash.update(chunk);
  }

  /** Checks length and digest; throws LengthMismatch or HashMismatch. */
  finish(): void {
    if (this.received !== this.expected.length) {
      throw new ReleaseError("LengthMismatch", `${this.received} bytes, ${this.expected.length} declared`);
    }
    const got = this.hash.digest();
    if (!digestEquals(got, this.expected.sha256)) throw new ReleaseError("HashMismatch", "sha256 differs from the signed manifest");
  }
}

/** Constant-time comparison of a digest with a lowercase hex sha256. */
export function digestEquals(digest: Buffer, hex: string): boolean {
  if (digest.length !== 32 || !/^[a-f0-9]{64}$/.test(hex)) return false;
  return timingSafeEqual(digest, Buffer.from(hex, "hex"));
}

/** Reads a stream to the end through a hasher; refuses as soon as the cap is passed. */
export async function verifyArtifactStream(stream: AsyncIterable<Uint8Array>, expected: ExpectedArtifact): Promise<void> {
  const hasher = new ArtifactHasher(expected);
  for await (const chunk of stream) hasher.update(chunk);
  hasher.finish();
}
