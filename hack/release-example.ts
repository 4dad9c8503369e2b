/**
 * Writes the signed Release example (manifests/examples/70-release.yaml)
 * from the example artifact and the THROWAWAY example signing key in
 * manifests/examples/release/. The key is public on purpose so that anyone
 * can re-sign the example; a real cluster must never trust it.
 *
 *   npx tsx hack/release-example.ts
 */
import { createHash, createPrivateKey, createPublicKey } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { proposedKeyId, signRelease, spkiBase64 } from "../lib/release/index.js";

const dir = "manifests/examples/release";
const artifact = readFileSync(join(dir, "entry-node-1.4.2-linux-amd64.sh"));
const privateKey = createPrivateKey(readFileSync(join(dir, "example-signing-key.THROWAWAY.pem"), "utf8"));
const publicKey = createPublicKey(privateKey);
const keyId = proposedKeyId(publicKey);
const envelope = signRelease(
  {
    _type: "release",
    specVersion: 1,
    component: "entry-node",
    version: "1.4.2",
    expires: "2036-01-01T00:00:00Z",
    artifacts: [{ os: "linux", arch: "amd64", length: artifact.length, sha256: createHash("sha256").update(artifact).digest("hex") }],
  },
  [{ keyId, privateKey }],
);
const yaml = `# A signed release of the entry-node workload, verified against the demo
# cluster's spec.releaseTrust (10-fabriccluster.yaml). Signed with the
# THROWAWAY example key in release/ by hack/release-example.ts; its artifact
# is release/entry-node-1.4.2-linux-amd64.sh. The release stays
# Verified=False (ArtifactMissing) until the artifact is pushed:
#   fabricctl release push manifests/examples/70-release.yaml manifests/examples/release/entry-node-1.4.2-linux-amd64.sh
apiVersion: accessfabric.io/v1alpha1
kind: Release
metadata:
  name: entry-node-1.4.2
spec:
  cluster: demo
  component: entry-node
  version: 1.4.2
  envelope:
    payloadType: ${envelope.payloadType}
    payload: ${envelope.payload}
    signatures:
${envelope.signatures.map((s) => `      - keyid: ${s.keyid}\n        sig: ${s.sig}`).join("\n")}
`;
writeFileSync("manifests/examples/70-release.yaml", yaml);
console.log(`keyId ${keyId}\npublicKey ${spkiBase64(publicKey)}`);
