/**
 * Reads a kubeconfig for fabricctl without @kubernetes/client-node, whose
 * import alone costs about a second of start-up. Supported: server,
 * certificate-authority(-data), insecure-skip-tls-verify, bearer token
 * (token, tokenFile), client certificate and key (files or data) and basic
 * auth. Exec and auth-provider plugins are refused with a message naming
 * them, never silently ignored.
 *
 * Which file: --kubeconfig, else every file of $KUBECONFIG (merged, the
 * first to set a value wins, as kubectl does), else ~/.kube/config.
 */
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, dirname, isAbsolute, join } from "node:path";
import { UsageError } from "../errors.js";

/** Where and how to reach an API server. */
export interface KubeTarget {
  server: string;
  /** PEM CA bundle; undefined means the system roots. */
  ca?: Buffer;
  insecureSkipTlsVerify: boolean;
  cert?: Buffer;
  key?: Buffer;
  /** Value of the Authorization header, if any. */
  authorization?: string;
  /** The kubeconfig file(s) it came from, for messages. */
  source: string;
}

interface Named<T> {
  name?: string;
  cluster?: T;
  user?: T;
  context?: T;
}

interface RawConfig {
  "current-context"?: string;
  clusters?: Array<Named<Record<string, unknown>>>;
  users?: Array<Named<Record<string, unknown>>>;
  contexts?: Array<Named<Record<string, unknown>>>;
}

function kubeconfigFiles(explicit: string | undefined): string[] {
  if (explicit !== undefined && explicit !== "") return [explicit];
  const env = process.env.KUBECONFIG;
  if (env !== undefined && env !== "") return env.split(delimiter).filter((f) => f !== "");
  return [join(homedir(), ".kube", "config")];
}

function str(o: Record<string, unknown> | undefined, key: string): string | undefined {
  const v = o?.[key];
  return typeof v === "string" && v !== "" ? v : undefined;
}

/** Loads the target of `context` (default: the current context). */
export async function loadKubeTarget(explicit?: string, context?: string): Promise<KubeTarget> {
  const files = kubeconfigFiles(explicit);
  const { parse } = await import("yaml");
  const merged: Required<RawConfig> & { dirs: Map<unknown, string> } = { "current-context": "", clusters: [], users: [], contexts: [], dirs: new Map() };
  let read = 0;
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (cause) {
      if (files.length > 1 && (cause as NodeJS.ErrnoException).code === "ENOENT") continue;
      throw new UsageError(`cannot read kubeconfig ${file} (pass --kubeconfig or set KUBECONFIG)`, { cause });
    }
    read++;
    const raw = (parse(text) ?? {}) as RawConfig;
    if (merged["current-context"] === "" && typeof raw["current-context"] === "string") merged["current-context"] = raw["current-context"];
    for (const key of ["clusters", "users", "contexts"] as const) {
      for (const entry of raw[key] ?? []) {
        if (merged[key].some((e) => e.name === entry.name)) continue;
        merged[key].push(entry);
        merged.dirs.set(entry, dirname(file));
      }
    }
  }
  const source = files.join(delimiter);
  if (read === 0) throw new UsageError(`no kubeconfig found at ${source} (pass --kubeconfig or set KUBECONFIG)`);
  const ctxName = context ?? merged["current-context"];
  const ctxEntry = ctxName !== "" ? merged.contexts.find((c) => c.name === ctxName) : merged.contexts[0];
  if (ctxEntry === undefined && (ctxName !== "" || merged.clusters.length !== 1)) throw new UsageError(`context "${ctxName}" not found in ${source}`);
  const ctx = ctxEntry?.context;
  const clusterEntry = ctx !== undefined ? merged.clusters.find((c) => c.name === str(ctx, "cluster")) : merged.clusters[0];
  const cluster = clusterEntry?.cluster;
  const server = str(cluster, "server");
  if (clusterEntry === undefined || server === undefined) throw new UsageError(`kubeconfig ${source} names no server for context "${ctxName}"`);
  const userEntry = ctx !== undefined ? merged.users.find((u) => u.name === str(ctx, "user")) : merged.users[0];
  const user = userEntry?.user;
  const clusterDir = merged.dirs.get(clusterEntry) ?? ".";
  const userDir = userEntry !== undefined ? (merged.dirs.get(userEntry) ?? ".") : ".";
  const blob = (o: Record<string, unknown> | undefined, dataKey: string, fileKey: string, dir: string): Buffer | undefined => {
    const data = str(o, dataKey);
    if (data !== undefined) return Buffer.from(data, "base64");
    const file = str(o, fileKey);
    if (file === undefined) return undefined;
    const path = isAbsolute(file) ? file : join(dir, file);
    try {
      return readFileSync(path);
    } catch (cause) {
      throw new UsageError(`cannot read ${fileKey} ${path} named by kubeconfig ${source}`, { cause });
    }
  };
  if (user?.exec !== undefined || user?.["auth-provider"] !== undefined) {
    throw new UsageError(`kubeconfig user "${String(userEntry?.name)}" uses an ${user.exec !== undefined ? "exec" : "auth-provider"} plugin, which fabricctl does not run; use a token or client certificate`);
  }
  let authorization: string | undefined;
  const token = str(user, "token") ?? (() => {
    const tf = str(user, "tokenFile");
    return tf !== undefined ? readFileSync(isAbsolute(tf) ? tf : join(userDir, tf), "utf8").trim() : undefined;
  })();
  if (token !== undefined) authorization = `Bearer ${token}`;
  else if (str(user, "username") !== undefined) authorization = `Basic ${Buffer.from(`${str(user, "username") ?? ""}:${str(user, "password") ?? ""}`).toString("base64")}`;
  return {
    server: server.replace(/\/+$/, ""),
    ca: blob(cluster, "certificate-authority-data", "certificate-authority", clusterDir),
    insecureSkipTlsVerify: cluster?.["insecure-skip-tls-verify"] === true,
    cert: blob(user, "client-certificate-data", "client-certificate", userDir),
    key: blob(user, "client-key-data", "client-key", userDir),
    authorization,
    source,
  };
}
