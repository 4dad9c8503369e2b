/**
 * Enrollment costs. Part 1: key generation per key type (Node crypto) and
 * certificate issuance (our DER builder + Node signing, versus node-forge's
 * JS RSA signing). Part 2: N agents (default 1,000), simulated in this
 * process with the real agent enrollment code (join(): CA pin, local key,
 * CSR, enroll, proof-of-possession polls, identity files), enroll against a
 * control plane running as a separate process with an auto-approve token,
 * and hold certificates. Prints figures only; asserts nothing.
 *
 *   npx tsx test/bench/enrollment.bench.ts [agents] [concurrency]
 */
import { createPrivateKey, generateKeyPairSync } from "node:crypto";
import { rmSync } from "node:fs";
import { join as joinPath } from "node:path";
import { performance } from "node:perf_hooks";
import forge from "node-forge";
import { join } from "../../agent/enroll/join.js";
import { createCertificateAuthority, randomSerial } from "../../lib/crypto/pki.js";
import { createCsr, issueNodeCertificate, parseCsr } from "../../lib/crypto/x509.js";
import { spawnControlPlane, tempStateDir } from "../support/controlplane.js";
import { applyCluster, createToken } from "../support/enrollment.js";

const AGENTS = Number(process.argv[2] ?? 1000);
const CONCURRENCY = Number(process.argv[3] ?? 200);

function per(label: string, n: number, fn: () => void): number {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) fn();
  const ms = (performance.now() - t0) / n;
  console.log(`${label.padEnd(58)} ${ms.toFixed(3)} ms/op`);
  return ms;
}

console.log("== key generation (Node crypto)");
per("ECDSA P-256 keygen", 2000, () => generateKeyPairSync("ec", { namedCurve: "P-256" }));
per("Ed25519 keygen", 2000, () => generateKeyPairSync("ed25519"));
per("RSA-2048 keygen", 20, () => generateKeyPairSync("rsa", { modulusLength: 2048 }));

console.log("== CSR and certificate issuance (cluster CA: RSA-2048)");
const ca = createCertificateAuthority("bench ca");
const caKey = createPrivateKey(ca.keyPem);
const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
per("CSR create (P-256)", 2000, () => createCsr(ec.privateKey, ec.publicKey, "n"));
const csr = createCsr(ec.privateKey, ec.publicKey, "n");
per("CSR parse + proof-of-possession check (P-256)", 2000, () => parseCsr(csr));
const spki = parseCsr(csr).spkiDer;
per("certificate issuance, DER builder + Node RSA sign", 2000, () =>
  issueNodeCertificate({ caCertPem: ca.certPem, caKey, spkiDer: spki, cluster: "c", node: "c.n", serialHex: randomSerial(), notBefore: new Date(), notAfter: new Date(Date.now() + 86_400_000) }),
);
const forgeCa = forge.pki.certificateFromPem(ca.certPem);
const forgeKey = forge.pki.privateKeyFromPem(ca.keyPem);
const rsaNode = forge.pki.rsa.generateKeyPair({ bits: 2048 });
per("certificate issuance, node-forge (RSA node key only)", 50, () => {
  const c = forge.pki.createCertificate();
  c.publicKey = rsaNode.publicKey;
  c.serialNumber = randomSerial();
  c.validity.notBefore = new Date();
  c.validity.notAfter = new Date(Date.now() + 86_400_000);
  c.setSubject([{ name: "commonName", value: "n" }]);
  c.setIssuer(forgeCa.subject.attributes);
  c.sign(forgeKey, forge.md.sha256.create());
});

async function main(): Promise<void> {
  console.log(`== ${AGENTS} agents enroll with an auto-approve token (${CONCURRENCY} in flight; control plane in its own process)`);
  const cpDir = tempStateDir();
  const agentRoot = tempStateDir("fabric-bench-agents-");
  const cp = await spawnControlPlane(cpDir, ["--agent-port", "0", "--leader-elect", "false", "--enroll-rate-limit", "100000/100000"]);
  try {
    const m = /"agentApi":"([^"]+)","agentApiCaHash":"([^"]+)"/.exec(cp.output());
    if (m === null || m[1] === undefined || m[2] === undefined) throw new Error("no agent api in ready line");
    const [server, caHash] = [m[1], m[2]];
    await applyCluster(cp.kubeconfig, "bench", "TokenAutoApprove");
    const token = await createToken(cp.kubeconfig, "bench", { cluster: "bench", maxUses: AGENTS, autoApprove: true });
    let next = 0;
    let done = 0;
    const latencies: number[] = [];
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        for (;;) {
          const i = next++;
          if (i >= AGENTS) return;
          const s = performance.now();
          await join({ server, token, caHash, stateDir: joinPath(agentRoot, `a${i}`), nodeName: `agent-${i}`, pollIntervalMs: 250 });
          latencies.push(performance.now() - s);
          done++;
        }
      }),
    );
    const total = (performance.now() - t0) / 1000;
    latencies.sort((a, b) => a - b);
    const q = (p: number) => (latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0).toFixed(0);
    console.log(`${done} agents enrolled and hold certificates in ${total.toFixed(1)} s (${(done / total).toFixed(0)} agents/s); per-agent join latency p50 ${q(0.5)} ms, p95 ${q(0.95)} ms, max ${q(1)} ms`);
  } finally {
    cp.child.kill("SIGTERM");
    await cp.exited;
    rmSync(cpDir, { recursive: true, force: true });
    rmSync(agentRoot, { recursive: true, force: true });
  }
}

main()
  .then(() => process.exit(0))
  .catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
