/**
 * `fabricctl vpn fence <namespace>/<name>`: the operator fence of a
 * VPNConnection. Increments spec.fence (a merge patch guarded by the read
 * resourceVersion, retried on a conflict), then waits until the controller
 * has acted on it (status.observedFence), which ended the current lease and
 * bumped the fencing token. `fabricctl vpn status`: one row per connection.
 */
import type { VPNConnection } from "../../lib/api/types.generated.js";
import { RESOURCES } from "../../lib/api/types.generated.js";
import { ApiError, UsageError } from "../errors.js";
import type { KubeClient } from "../kube/client.js";
import type { Io } from "../main.js";
import { formatTable, structured, type OutputFormat } from "../output.js";

const r = RESOURCES.VPNConnection;

function pathOf(namespace?: string, name?: string): string {
  return `/apis/${r.group}/${r.version}${namespace !== undefined ? `/namespaces/${encodeURIComponent(namespace)}` : ""}/${r.plural}${name !== undefined ? `/${encodeURIComponent(name)}` : ""}`;
}

/** Splits `<namespace>/<name>`. */
export function parseConnectionRef(ref: string): { namespace: string; name: string } {
  const m = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/([a-z0-9]([-.a-z0-9]*[a-z0-9])?)$/.exec(ref);
  if (m === null) throw new UsageError(`connection must be <namespace>/<name>, not "${ref}"`);
  return { namespace: m[1] ?? "", name: m[3] ?? "" };
}

/** Runs `vpn fence`; returns the exit code. */
export async function vpnFence(client: KubeClient, ref: string, o: { waitMs: number }, io: Io): Promise<number> {
  const { namespace, name } = parseConnectionRef(ref);
  let fence = 0;
  for (let attempt = 0; ; attempt++) {
    const cur = await client.request<VPNConnection>("GET", pathOf(namespace, name));
    fence = (cur.spec.fence ?? 0) + 1;
    try {
      await client.request("PATCH", pathOf(namespace, name), { body: { metadata: { resourceVersion: cur.metadata.resourceVersion }, spec: { fence } }, contentType: "application/merge-patch+json" });
      break;
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 409) || attempt >= 4) throw err;
    }
  }
  io.out(`vpnconnection ${namespace}/${name} fence set to ${fence}\n`);
  if (o.waitMs <= 0) return 0;
  const deadline = Date.now() + o.waitMs;
  while (Date.now() < deadline) {
    const cur = await client.request<VPNConnection>("GET", pathOf(namespace, name));
    if ((cur.status?.observedFence ?? 0) >= fence) {
      io.out(`fence ${fence} applied: the lease ended; the next grant gets a higher token\n`);
      return 0;
    }
    await new Promise((res) => setTimeout(res, 250));
  }
  io.err(`the controller did not apply fence ${fence} within the wait; is it running?\n`);
  return 1;
}

/** Runs `vpn status`. */
export async function vpnStatus(client: KubeClient, o: { namespace?: string; format: OutputFormat }, io: Io): Promise<number> {
  const list = await client.request<{ items?: VPNConnection[] }>("GET", pathOf(o.namespace));
  const rows = (list.items ?? [])
    .map((c) => ({
      connection: `${c.metadata.namespace ?? ""}/${c.metadata.name ?? ""}`,
      mode: c.spec.mode ?? "Connector",
      holder: c.status?.activeLease?.holder ?? "",
      token: c.status?.activeLease?.fencingToken,
      expiresAt: c.status?.activeLease?.expiresAt ?? "",
      owner: c.status?.ownerState ?? "",
      eligible: c.status?.eligibleNodes?.length ?? 0,
      blocked: c.status?.blockedNodes?.length ?? 0,
      ready: c.status?.conditions?.find((x) => x.type === "Ready")?.reason ?? "",
    }))
    .sort((a, b) => a.connection.localeCompare(b.connection));
  if (o.format !== "table") {
    io.out(await structured({ connections: rows }, o.format));
    return 0;
  }
  if (rows.length === 0) {
    io.err("No VPN connections found.\n");
    return 0;
  }
  io.out(formatTable(["CONNECTION", "MODE", "HOLDER", "TOKEN", "OWNER", "ELIGIBLE", "BLOCKED", "READY"], rows.map((x) => [x.connection, x.mode, x.holder || "-", x.token === undefined ? "-" : String(x.token), x.owner || "-", String(x.eligible), String(x.blocked), x.ready])));
  return 0;
}
