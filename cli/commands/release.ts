/**
 * `fabricctl release`: signing keys and signed releases, kept outside the
 * control plane.
 *
 * - keygen: a new Ed25519 signing key; the private key goes to a file
 *   (mode 0600, never overwritten), the key id and public key are printed
 *   with the `releaseTrust` lines that trust it.
 * - sign: builds the manifest from flags and artifact files (length and
 *   sha256 computed here) and writes a Release object carrying the DSSE
 *   envelope, signed with every --key given (one signature each).
 * - push: uploads the Release's artifacts to the version store through the
 *   API server (skipping those already stored; a progress line per file),
 *   then creates the Release (unchanged when the same one exists).
 * - verify: checks a Release offline against a trust set (a file holding
 *   `releaseTrust`, or a FabricCluster manifest) and, given the files, its
 *   artifacts' lengths and digests.
 * - rotate-trust: signs a new trust set with the current keys (the envelope
 *   for FabricCluster spec.releaseTrust.rotation).
 */
import { createHash, createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { createReadStream, existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { parse as parseYaml, stringify as toYaml } from "yaml";
import type { Release } from "../../lib/api/types.generated.js";
import { canonicalJson } from "../../lib/canonical-json.js";
import {
  ARCHITECTURES,
  OPERATING_SYSTEMS,
  checkManifest,
  generateSigningKey,
  isReleaseError,
  parseEnvelope,
  parseManifest,
  proposedKeyId,
  signRelease,
  signTrustRotation,
  spkiBase64,
  verifyArtifactStream,
  verifyEnvelope,
  type ArtifactRef,
  type ReleaseManifest,
  type SigningKey,
  type TrustSet,
} from "../../lib/release/index.js";
import { ApiError, UsageError } from "../errors.js";
import type { KubeClient } from "../kube/client.js";

/** Writes a new key; returns the exit code. */
export function releaseKeygen(o: { out?: string; keyId?: string }, out: (s: string) => void): number {
  if (!o.out) throw new UsageError("release keygen needs --out <file> for the private key");
  if (existsSync(o.out)) throw new UsageError(`${o.out} exists; release keygen never overwrites a key`);
  const k = generateSigningKey();
  const keyId = o.keyId ?? k.keyId;
  writeFileSync(o.out, k.privateKey.export({ format: "pem", type: "pkcs8" }), { mode: 0o600, flag: "wx" });
  const pub = spkiBase64(k.publicKey);
  out(`private key written to ${o.out} (mode 0600); keep it offline\nkeyId: ${keyId}\npublicKey: ${pub}\n\n# FabricCluster spec:\nreleaseTrust:\n  threshold: 1\n  keys:\n    - keyId: ${keyId}\n      publicKey: ${pub}\n`);
  return 0;
}

/** Reads `file` or `file=keyId` into a signing key. */
export function loadSigningKey(spec: string): SigningKey {
  const eq = spec.lastIndexOf("=");
  const file = eq > 0 ? spec.slice(0, eq) : spec;
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(readFileSync(file, "utf8"));
  } catch (err) {
    throw new UsageError(`--key ${file}: not a readable PEM private key (${(err as Error).message})`);
  }
  if (privateKey.asymmetricKeyType !== "ed25519") throw new UsageError(`--key ${file}: an ${privateKey.asymmetricKeyType} key, not ed25519`);
  return { keyId: eq > 0 ? spec.slice(eq + 1) : proposedKeyId(createPublicKey(privateKey)), privateKey };
}

/** Length and sha256 of a file, streamed. */
export async function describeFile(path: string): Promise<{ length: number; sha256: string }> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) h.update(chunk);
  return { length: statSync(path).size, sha256: h.digest("hex") };
}

export interface SignOptions {
  cluster?: string;
  component?: string;
  version?: string;
  name?: string;
  /** An RFC 3339 time, or a lifetime in ms from now. */
  expires: string | number;
  /** `os/arch=path`. */
  artifacts: string[];
  keys: string[];
  minAgentVersion?: string;
  /** JSON files. */
  migration?: string;
  healthCheck?: string;
  out?: string;
  now?: Date;
}

/** Builds, signs and writes a Release object. */
export async function releaseSign(o: SignOptions, out: (s: string) => void): Promise<number> {
  for (const [flag, v] of [["--cluster", o.cluster], ["--component", o.component], ["--version", o.version]] as const) {
    if (!v) throw new UsageError(`release sign needs ${flag}`);
  }
  if (o.keys.length === 0) throw new UsageError("release sign needs at least one --key");
  if (o.artifacts.length === 0) throw new UsageError("release sign needs at least one --artifact os/arch=path");
  const artifacts: ArtifactRef[] = [];
  for (const a of o.artifacts) {
    const m = /^([a-z]+)\/([a-z0-9]+)=(.+)$/.exec(a);
    if (!m || !OPERATING_SYSTEMS.includes(m[1] as never) || !ARCHITECTURES.includes(m[2] as never)) {
      throw new UsageError(`--artifact ${a}: use os/arch=path with os in ${OPERATING_SYSTEMS.join(",")} and arch in ${ARCHITECTURES.join(",")}`);
    }
    if (!existsSync(m[3]!)) throw new UsageError(`--artifact ${a}: ${m[3]} does not exist`);
    artifacts.push({ os: m[1] as ArtifactRef["os"], arch: m[2] as ArtifactRef["arch"], ...(await describeFile(m[3]!)) });
  }
  const now = o.now ?? new Date();
  const expires = typeof o.expires === "number" ? new Date(now.getTime() + o.expires).toISOString().replace(/\.\d{3}Z$/, "Z") : o.expires;
  const readJson = (flag: string, file: string | undefined): unknown => {
    if (file === undefined) return undefined;
    try {
      return JSON.parse(readFileSync(file, "utf8"));
    } catch (err) {
      throw new UsageError(`${flag} ${file}: not a JSON file (${(err as Error).message})`);
    }
  };
  const draft = {
    _type: "release",
    specVersion: 1,
    component: o.component,
    version: o.version,
    expires,
    ...(o.minAgentVersion ? { minAgentVersion: o.minAgentVersion } : {}),
    artifacts,
    ...(o.healthCheck ? { healthCheck: readJson("--health-check", o.healthCheck) } : {}),
    ...(o.migration ? { migration: readJson("--migration", o.migration) } : {}),
  };
  let manifest: ReleaseManifest;
  try {
    manifest = checkManifest(draft);
  } catch (err) {
    if (isReleaseError(err)) throw new UsageError(err.message);
    throw err;
  }
  const envelope = signRelease(manifest, o.keys.map(loadSigningKey));
  const obj = {
    apiVersion: "accessfabric.io/v1alpha1",
    kind: "Release",
    metadata: { name: o.name ?? `${o.component}-${o.version}`.toLowerCase().replace(/[^a-z0-9.-]/g, "-") },
    spec: { cluster: o.cluster, component: o.component, version: o.version, envelope },
  };
  const text = toYaml(obj);
  if (o.out) {
    writeFileSync(o.out, text);
    out(`wrote ${o.out}: ${manifest.component} ${manifest.version}, ${artifacts.length} artifact(s), ${envelope.signatures.length} signature(s), expires ${expires}\n`);
  } else out(text);
  return 0;
}

/** Reads a Release object from a YAML or JSON file. */
export function readRelease(file: string): Release {
  let obj: unknown;
  try {
    obj = parseYaml(readFileSync(file, "utf8"));
  } catch (err) {
    throw new UsageError(`${file}: not YAML or JSON (${(err as Error).message})`);
  }
  const r = obj as Release;
  if (r?.kind !== "Release" || typeof r.spec !== "object" || r.spec === null) throw new UsageError(`${file}: not a Release object`);
  return r;
}

/** The manifest in a Release, parsed but not verified (push checks files against it; the controller verifies). */
function manifestOf(r: Release): ReleaseManifest {
  try {
    return parseManifest(parseEnvelope(r.spec.envelope).payload);
  } catch (err) {
    if (isReleaseError(err)) throw new UsageError(`the Release's envelope: ${err.message}`);
    throw err;
  }
}

function mib(n: number): string {
  return `${(n / 1048576).toFixed(1)} MiB`;
}

/** Uploads the artifacts, then creates the Release. */
export async function releasePush(client: KubeClient, o: { file: string; artifacts: string[] }, io: { out(s: string): void; err(s: string): void }): Promise<number> {
  const release = readRelease(o.file);
  const manifest = manifestOf(release);
  const files = new Map<string, string>();
  for (const path of o.artifacts) {
    if (!existsSync(path)) throw new UsageError(`${path} does not exist`);
    const d = await describeFile(path);
    const a = manifest.artifacts.find((x) => x.sha256 === d.sha256);
    if (!a) throw new UsageError(`${path} (sha256 ${d.sha256.slice(0, 12)}…) is not an artifact of ${manifest.component} ${manifest.version}`);
    files.set(a.sha256, path);
  }
  for (const a of manifest.artifacts) {
    const path = `/artifacts/v1/${a.sha256}`;
    const label = `${a.os}/${a.arch} ${a.sha256.slice(0, 12)}`;
    let stored = false;
    try {
      await client.request("GET", path);
      stored = true;
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) throw err;
    }
    if (stored) {
      io.out(`${label}: already stored\n`);
      continue;
    }
    const file = files.get(a.sha256);
    if (file === undefined) throw new UsageError(`the version store lacks ${label}; give its file on the command line`);
    const started = Date.now();
    let last = 0;
    await client.putStream(path, createReadStream(file), a.length, (sent) => {
      const now = Date.now();
      if (now - last < 500 && sent < a.length) return;
      last = now;
      io.err(`\r${label}: ${mib(sent)} / ${mib(a.length)} (${Math.floor((sent * 100) / Math.max(1, a.length))}%)`);
    });
    const secs = Math.max(0.001, (Date.now() - started) / 1000);
    io.err("\n");
    io.out(`${label}: uploaded ${mib(a.length)} in ${secs.toFixed(1)} s\n`);
  }
  const name = release.metadata?.name;
  if (!name) throw new UsageError(`${o.file}: the Release has no metadata.name`);
  try {
    await client.create("Release", name, release.spec as unknown as Record<string, unknown>);
    io.out(`release.accessfabric.io/${name} created\n`);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 409)) throw err;
    const existing = await client.get<Release>("Release", name);
    if (canonicalJson(existing.spec) !== canonicalJson(release.spec)) {
      io.err(`release ${name} exists with another spec; a Release is immutable, publish a new version\n`);
      return 1;
    }
    io.out(`release.accessfabric.io/${name} unchanged\n`);
  }
  return 0;
}

/** Reads a trust set from a file holding `releaseTrust`, a FabricCluster, or the set itself. */
export function readTrust(file: string): TrustSet {
  let obj: unknown;
  try {
    obj = parseYaml(readFileSync(file, "utf8"));
  } catch (err) {
    throw new UsageError(`${file}: not YAML or JSON (${(err as Error).message})`);
  }
  const o = obj as { spec?: { releaseTrust?: TrustSet }; releaseTrust?: TrustSet } & Partial<TrustSet>;
  const t = o?.spec?.releaseTrust ?? o?.releaseTrust ?? (o?.keys ? (o as TrustSet) : undefined);
  if (!t) throw new UsageError(`${file}: holds no releaseTrust`);
  return { keys: t.keys, threshold: t.threshold };
}

/** Verifies a Release offline; exit 0 when verified, 1 when refused. */
export async function releaseVerify(o: { file: string; trust?: string; artifacts: string[]; now?: Date }, out: (s: string) => void): Promise<number> {
  if (!o.trust) throw new UsageError("release verify needs --trust <file with releaseTrust or a FabricCluster>");
  const release = readRelease(o.file);
  try {
    const v = verifyEnvelope(release.spec.envelope, readTrust(o.trust), { component: release.spec.component, now: o.now });
    if (v.manifest.version !== release.spec.version) {
      out(`refused: MismatchedVersion: spec.version ${release.spec.version} differs from the signed ${v.manifest.version}\n`);
      return 1;
    }
    for (const path of o.artifacts) {
      const d = await describeFile(path);
      const a = v.manifest.artifacts.find((x) => x.sha256 === d.sha256);
      if (!a) {
        out(`refused: ${path} is not an artifact of this release (sha256 ${d.sha256})\n`);
        return 1;
      }
      await verifyArtifactStream(createReadStream(path) as AsyncIterable<Buffer>, a);
    }
    out(`verified: ${v.manifest.component} ${v.manifest.version}, signed by ${v.keyIds.join(", ")}, expires ${v.manifest.expires}, ${v.manifest.artifacts.length} artifact(s)${o.artifacts.length > 0 ? `, ${o.artifacts.length} file(s) match` : ""}\n`);
    return 0;
  } catch (err) {
    if (isReleaseError(err)) {
      out(`refused: ${err.code}: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

/** Signs a new trust set with the current keys; prints the releaseTrust with its rotation envelope. */
export function releaseRotateTrust(o: { next?: string; keys: string[] }, out: (s: string) => void): number {
  if (!o.next) throw new UsageError("release rotate-trust needs --new <file with the new releaseTrust>");
  if (o.keys.length === 0) throw new UsageError("release rotate-trust needs --key for each current key that signs");
  const next = readTrust(o.next);
  let rotation;
  try {
    rotation = signTrustRotation(next, o.keys.map(loadSigningKey));
  } catch (err) {
    if (isReleaseError(err)) throw new UsageError(err.message);
    throw err;
  }
  out(toYaml({ releaseTrust: { ...next, rotation } }));
  return 0;
}
