/**
 * The release manifest: the JSON payload of a release envelope. Parsed with
 * bounds (size, nesting, strings that jsonb can hold) and checked field by
 * field; unknown members are refused so that a signed field can never be
 * ignored by a verifier that does not know it.
 */
import { JsonLimitError, parseJsonWithLimits } from "../json-limits.js";
import { ReleaseError } from "./errors.js";
import { ENVELOPE_LIMITS, isPlainObject } from "./envelope.js";
import { parseSemver } from "./semver.js";

export const OPERATING_SYSTEMS = ["linux", "darwin", "windows"] as const;
export const ARCHITECTURES = ["amd64", "arm64", "arm"] as const;
export type OperatingSystem = (typeof OPERATING_SYSTEMS)[number];
export type Architecture = (typeof ARCHITECTURES)[number];

export interface ArtifactRef {
  os: OperatingSystem;
  arch: Architecture;
  /** Exact length in bytes; the download is cut above it. */
  length: number;
  /** Lowercase hex sha256. */
  sha256: string;
}

export interface ReleaseMigration {
  from: string;
  to: string;
  preflight: string;
  backup: string;
  rollback: string;
  downgrade: boolean;
}

export interface ReleaseHealthCheck {
  /** Command or probe name the agent runs after starting the new version. */
  command?: string[];
  /** Seconds the new version must stay healthy. */
  timeoutSeconds?: number;
}

export interface ReleaseManifest {
  _type: "release";
  specVersion: 1;
  component: string;
  version: string;
  /** RFC 3339. */
  expires: string;
  minAgentVersion?: string;
  artifacts: ArtifactRef[];
  healthCheck?: ReleaseHealthCheck;
  migration?: ReleaseMigration;
}

/** Largest artifact a manifest may declare: 4 GiB. */
export const MAX_ARTIFACT_LENGTH = 4 * 1024 ** 3;
export const MAX_ARTIFACTS = 32;
const COMPONENT = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const SHA256 = /^[a-f0-9]{64}$/;
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

function bad(reason: string): never {
  throw new ReleaseError("MalformedManifest", `manifest ${reason}`);
}

function onlyKeys(obj: Record<string, unknown>, allowed: readonly string[], where: string): void {
  for (const k of Object.keys(obj)) if (!allowed.includes(k)) bad(`${where} has an unknown field ${JSON.stringify(k.slice(0, 40))}`);
}

function str(v: unknown, where: string, max = 1024): string {
  if (typeof v !== "string" || v.length === 0 || v.length > max) bad(`${where} must be a string of 1 to ${max} characters`);
  return v;
}

function version(v: unknown, where: string): string {
  const s = str(v, where, 64);
  if (!parseSemver(s)) bad(`${where} is not a semantic version`);
  return s;
}

/** Parses and checks manifest bytes; throws ReleaseError(MalformedManifest). */
export function parseManifest(bytes: Buffer): ReleaseManifest {
  let value: unknown;
  try {
    value = parseJsonWithLimits(bytes, { maxBytes: ENVELOPE_LIMITS.maxPayloadBytes, maxDepth: 6, wellFormedStrings: true });
  } catch (err) {
    if (err instanceof JsonLimitError) throw new ReleaseError("MalformedManifest", `manifest: ${err.reason}`, { cause: err });
    throw err;
  }
  return checkManifest(value);
}

/** Checks a parsed manifest value field by field. */
export function checkManifest(value: unknown): ReleaseManifest {
  if (!isPlainObject(value)) bad("is not an object");
  onlyKeys(value, ["_type", "specVersion", "component", "version", "expires", "minAgentVersion", "artifacts", "healthCheck", "migration"], "manifest");
  if (value._type !== "release") bad('_type is not "release"');
  if (value.specVersion !== 1) bad("specVersion is not 1");
  const component = str(value.component, "component", 63);
  if (!COMPONENT.test(component)) bad("component is not a DNS label");
  const m: ReleaseManifest = {
    _type: "release",
    specVersion: 1,
    component,
    version: version(value.version, "version"),
    expires: str(value.expires, "expires", 40),
    artifacts: [],
  };
  if (!RFC3339.test(m.expires) || Number.isNaN(Date.parse(m.expires))) bad("expires is not an RFC 3339 time");
  if (value.minAgentVersion !== undefined) m.minAgentVersion = version(value.minAgentVersion, "minAgentVersion");
  if (!Array.isArray(value.artifacts) || value.artifacts.length === 0 || value.artifacts.length > MAX_ARTIFACTS) {
    bad(`artifacts must list 1 to ${MAX_ARTIFACTS} artifacts`);
  }
  const platforms = new Set<string>();
  for (const [i, a] of value.artifacts.entries()) {
    if (!isPlainObject(a)) bad(`artifact ${i} is not an object`);
    onlyKeys(a, ["os", "arch", "length", "sha256"], `artifact ${i}`);
    if (!OPERATING_SYSTEMS.includes(a.os as OperatingSystem)) bad(`artifact ${i} os is not one of ${OPERATING_SYSTEMS.join(", ")}`);
    if (!ARCHITECTURES.includes(a.arch as Architecture)) bad(`artifact ${i} arch is not one of ${ARCHITECTURES.join(", ")}`);
    if (typeof a.length !== "number" || !Number.isSafeInteger(a.length) || a.length < 0 || a.length > MAX_ARTIFACT_LENGTH) {
      bad(`artifact ${i} length must be an integer from 0 to ${MAX_ARTIFACT_LENGTH}`);
    }
    if (typeof a.sha256 !== "string" || !SHA256.test(a.sha256)) bad(`artifact ${i} sha256 is not 64 lowercase hex digits`);
    const platform = `${a.os}/${a.arch}`;
    if (platforms.has(platform)) bad(`lists ${platform} twice`);
    platforms.add(platform);
    m.artifacts.push({ os: a.os as OperatingSystem, arch: a.arch as Architecture, length: a.length, sha256: a.sha256 });
  }
  if (value.healthCheck !== undefined) {
    const h = value.healthCheck;
    if (!isPlainObject(h)) bad("healthCheck is not an object");
    onlyKeys(h, ["command", "timeoutSeconds"], "healthCheck");
    const hc: ReleaseHealthCheck = {};
    if (h.command !== undefined) {
      if (!Array.isArray(h.command) || h.command.length === 0 || h.command.length > 32) bad("healthCheck.command must list 1 to 32 strings");
      hc.command = h.command.map((c, i) => str(c, `healthCheck.command[${i}]`, 1024));
    }
    if (h.timeoutSeconds !== undefined) {
      if (typeof h.timeoutSeconds !== "number" || !Number.isInteger(h.timeoutSeconds) || h.timeoutSeconds < 1 || h.timeoutSeconds > 86400) {
        bad("healthCheck.timeoutSeconds must be an integer from 1 to 86400");
      }
      hc.timeoutSeconds = h.timeoutSeconds;
    }
    m.healthCheck = hc;
  }
  if (value.migration !== undefined) {
    const g = value.migration;
    if (!isPlainObject(g)) bad("migration is not an object");
    onlyKeys(g, ["from", "to", "preflight", "backup", "rollback", "downgrade"], "migration");
    if (typeof g.downgrade !== "boolean") bad("migration.downgrade must be a boolean");
    m.migration = {
      from: version(g.from, "migration.from"),
      to: version(g.to, "migration.to"),
      preflight: str(g.preflight, "migration.preflight", 4096),
      backup: str(g.backup, "migration.backup", 4096),
      rollback: str(g.rollback, "migration.rollback", 4096),
      downgrade: g.downgrade,
    };
  }
  return m;
}

/** The manifest's artifact for one platform; throws ReleaseError(NoArtifact). */
export function selectArtifact(manifest: ReleaseManifest, os: string, arch: string): ArtifactRef {
  const a = manifest.artifacts.find((x) => x.os === os && x.arch === arch);
  if (!a) throw new ReleaseError("NoArtifact", `release ${manifest.component} ${manifest.version} has no artifact for ${os}/${arch}`);
  return a;
}

/** Node's platform names in the manifest's vocabulary. */
export function hostPlatform(): { os: string; arch: string } {
  const os = process.platform === "win32" ? "windows" : process.platform;
  const arch = process.arch === "x64" ? "amd64" : process.arch;
  return { os, arch };
}
