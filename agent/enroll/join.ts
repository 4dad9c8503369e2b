/**
 * Enrollment from the host: pin the agent API CA by its public key hash,
 * generate the node key locally (it never leaves the host), send the join
 * request, wait for the decision while proving possession of the key, and
 * store the identity. A pending enrollment is kept in
 * `<state-dir>/pending/<token id>/` so a restarted agent resumes waiting
 * (a replay of the same request) instead of spending another token use.
 */
import { createPrivateKey, createPublicKey, X509Certificate, type KeyObject } from "node:crypto";
import { readFile, rm } from "node:fs/promises";
import { hostname as osHostname, arch, platform, release, cpus, totalmem } from "node:os";
import { join as joinPath } from "node:path";
import { caPinOf, createCsr, publicKeyFingerprint } from "../../lib/crypto/x509.js";
import { signPoll, type EnrollRequest, type EnrollResponse, type PollResponse } from "../../lib/enrollment/protocol.js";
import { parseToken } from "../../lib/enrollment/token.js";
import { writeFileAtomic } from "../state/atomic-file.js";
import { AgentApiClient, AgentApiRequestError } from "../http/client.js";
import { generateNodeKey, hostFingerprint, saveIdentity, type IdentityInfo, type StoredIdentity } from "./identity-store.js";

/** Options of join. */
export interface JoinOptions {
  server: string;
  token: string;
  /** `sha256:<hex>` of the agent API CA's public key. */
  caHash: string;
  stateDir: string;
  /** Default: the hostname, lowercased and made a DNS label. */
  nodeName?: string;
  cluster?: string;
  capabilities?: string[];
  roles?: string[];
  facts?: Record<string, unknown>;
  /** Between polls (default 2 s). */
  pollIntervalMs?: number;
  /** Give up waiting after this long (default: never). */
  timeoutMs?: number;
  /** Progress lines for the operator. */
  onStatus?: (line: string) => void;
  signal?: AbortSignal;
}

/** Thrown when the request was denied or refused. */
export class JoinRefused extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "JoinRefused";
  }
}

/** A DNS label from a hostname. */
export function defaultNodeName(): string {
  const n = osHostname()
    .toLowerCase()
    .split(".")[0]
    ?.replace(/[^a-z0-9-]/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 63);
  return n === undefined || n === "" ? "node" : n;
}

/** Facts every agent reports. */
export function defaultFacts(): Record<string, unknown> {
  return { hostname: osHostname(), os: platform(), arch: arch(), kernel: release(), cpus: cpus().length, memoryBytes: totalmem() };
}

/** Fetches the agent API CA and checks it against the pin; returns its PEM. */
export async function fetchPinnedCa(server: string, caHash: string): Promise<string> {
  const insecure = new AgentApiClient(server, { insecure: true });
  try {
    const r = await insecure.request<string>("GET", "/v1/enroll/ca");
    const pem = typeof r.body === "string" ? r.body : "";
    let pin: string;
    try {
      pin = caPinOf(pem);
    } catch (cause) {
      throw new JoinRefused("CaInvalid", `server sent no valid CA certificate: ${(cause as Error).message}`);
    }
    if (pin !== caHash.toLowerCase()) throw new JoinRefused("CaPinMismatch", `the server's CA hash ${pin} does not match --ca-hash ${caHash}: refusing to talk to it`);
    return pem;
  } finally {
    insecure.close();
  }
}

interface Pending {
  server: string;
  joinRequest: string;
  cluster: string;
  node: string;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });

/** Runs the whole enrollment; resolves with the stored identity. */
export async function join(o: JoinOptions): Promise<StoredIdentity> {
  const status = o.onStatus ?? (() => undefined);
  const tok = parseToken(o.token);
  if (tok === undefined) throw new JoinRefused("TokenMalformed", "token must look like <6 chars>.<32 chars>");
  const serverCaPem = await fetchPinnedCa(o.server, o.caHash);
  status(`agent API CA verified against ${o.caHash}`);
  const client = new AgentApiClient(o.server, { ca: serverCaPem });
  try {
    const pendingDir = joinPath(o.stateDir, "pending", tok.id);
    let key: KeyObject;
    let pending: Pending | undefined;
    try {
      key = createPrivateKey(await readFile(joinPath(pendingDir, "key.pem"), "utf8"));
      pending = JSON.parse(await readFile(joinPath(pendingDir, "pending.json"), "utf8")) as Pending;
      status(`resuming pending enrollment ${pending.joinRequest}`);
    } catch {
      key = generateNodeKey().privateKey;
      await writeFileAtomic(pendingDir, "key.pem", Buffer.from(key.export({ format: "pem", type: "pkcs8" }).toString()));
    }
    const publicKey = createPublicKey(key);
    const nodeName = o.nodeName ?? defaultNodeName();
    const body: EnrollRequest = {
      token: o.token,
      cluster: o.cluster,
      nodeName,
      hostFingerprint: await hostFingerprint(o.stateDir),
      csr: createCsr(key, publicKey, nodeName),
      capabilities: o.capabilities ?? [],
      facts: { ...defaultFacts(), ...o.facts },
      requestedRoles: o.roles ?? [],
    };
    if (pending === undefined) {
      const r = await client.request<EnrollResponse>("POST", "/v1/enroll", body);
      pending = { server: o.server, joinRequest: r.body.joinRequest, cluster: r.body.cluster, node: r.body.node };
      await writeFileAtomic(pendingDir, "pending.json", Buffer.from(JSON.stringify(pending)));
    }
    status(`join request ${pending.joinRequest} sent to cluster ${pending.cluster}; waiting for approval (kubectl patch joinrequest ${pending.joinRequest} --type merge -p '{"spec":{"decision":"Approved"}}' or fabricctl join approve ${pending.joinRequest})`);
    const deadline = o.timeoutMs === undefined ? Infinity : Date.now() + o.timeoutMs;
    let last = "";
    for (;;) {
      if (o.signal?.aborted) throw new Error("join aborted");
      const ts = Date.now();
      let poll: PollResponse;
      try {
        poll = (
          await client.request<PollResponse>("GET", `/v1/enroll/requests/${pending.joinRequest}`, undefined, {
            "x-fabric-timestamp": String(ts),
            "x-fabric-signature": signPoll(pending.joinRequest, ts, key),
          })
        ).body;
      } catch (err) {
        if (err instanceof AgentApiRequestError && err.status === 404) throw new JoinRefused(err.code, err.message);
        if (err instanceof AgentApiRequestError && err.status < 500 && err.status !== 429) throw err;
        status(`poll failed, retrying: ${(err as Error).message}`);
        await sleep(o.pollIntervalMs ?? 2000, o.signal);
        continue;
      }
      if (poll.state !== last) {
        last = poll.state;
        status(`join request ${pending.joinRequest}: ${poll.state}${poll.unsupportedRoles ? ` (unsupported roles: ${poll.unsupportedRoles.join(", ")})` : ""}`);
      }
      if (poll.state === "Denied") {
        await rm(pendingDir, { recursive: true, force: true });
        throw new JoinRefused("Denied", `join request denied: ${poll.reason ?? ""}`);
      }
      if (poll.state === "Approved" && poll.certificate !== undefined && poll.caBundle !== undefined) {
        const cert = new X509Certificate(poll.certificate);
        const ca = new X509Certificate(poll.caBundle);
        if (!cert.verify(ca.publicKey) || publicKeyFingerprint(cert.publicKey) !== publicKeyFingerprint(publicKey)) {
          throw new JoinRefused("CertificateInvalid", "the issued certificate does not match the key or the cluster CA");
        }
        const info: IdentityInfo = {
          server: o.server,
          cluster: poll.cluster,
          node: poll.node,
          joinRequest: pending.joinRequest,
          snapshotKey: poll.snapshotKey,
          serial: cert.serialNumber.toLowerCase(),
          notBefore: new Date(cert.validFrom).toISOString(),
          notAfter: new Date(cert.validTo).toISOString(),
        };
        const keyPem = key.export({ format: "pem", type: "pkcs8" }).toString();
        const dir = await saveIdentity(o.stateDir, { info, keyPem, certPem: poll.certificate, caPem: poll.caBundle, serverCaPem });
        await rm(pendingDir, { recursive: true, force: true });
        status(`joined cluster ${poll.cluster} as ${poll.node}; certificate ${info.serial} valid until ${info.notAfter}`);
        return { dir, info, key, keyPem, certPem: poll.certificate, caPem: poll.caBundle, serverCaPem };
      }
      if (Date.now() > deadline) throw new Error(`join request ${pending.joinRequest} still ${poll.state} after ${o.timeoutMs} ms`);
      await sleep(o.pollIntervalMs ?? 2000, o.signal);
    }
  } finally {
    client.close();
  }
}
