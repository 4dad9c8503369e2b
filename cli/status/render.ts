/** The text forms of `fabricctl status` and `fabricctl get nodes`. */
import { age, formatTable, until } from "../output.js";
import type { NodeRow, StatusReport } from "./facts.js";

/** `get nodes` as a table. */
export function renderNodes(rows: readonly NodeRow[], now: number): string {
  return formatTable(
    ["NAME", "CLUSTER", "MEMBERSHIP", "READY", "HEALTH", "ROLES", "WORKLOADS", "AGENT", "HEARTBEAT", "CERT-EXPIRY"],
    rows.map((r) => [
      r.name,
      r.cluster,
      r.membership,
      r.ready,
      r.health ?? "<none>",
      r.roles.length > 0 ? r.roles.join(",") : "<none>",
      `${r.workloads.running}/${r.workloads.total}`,
      r.agentVersion ?? "<none>",
      r.heartbeatAgeSeconds === null ? "<never>" : `${age(r.heartbeatAgeSeconds * 1000)} ago`,
      until(r.certificateNotAfter ?? undefined, now),
    ]),
  );
}

/** Rows a section lists on screen; -o json carries all of them. */
const SCREEN_ROWS = 20;

/** The first SCREEN_ROWS of `items`, and a line naming the rest. */
function firstRows<T>(items: readonly T[], more: string): { shown: readonly T[]; tail: string } {
  return items.length <= SCREEN_ROWS ? { shown: items, tail: "" } : { shown: items.slice(0, SCREEN_ROWS), tail: `... and ${items.length - SCREEN_ROWS} more (${more})\n` };
}

function indent(text: string): string {
  return text
    .trimEnd()
    .split("\n")
    .map((l) => `  ${l}`)
    .join("\n");
}

/** `status` as one screen of text: each section, then the risks with their commands. */
export function renderStatus(r: StatusReport, now: number): string {
  const out: string[] = [];
  const section = (title: string, body: string) => out.push(`${title}\n${indent(body)}\n`);

  section(
    `CLUSTERS (${r.clusters.length})`,
    r.clusters.length === 0
      ? "none: kubectl apply -f manifests/examples/10-fabriccluster.yaml"
      : formatTable(
          ["NAME", "READY", "NODES", "READY/NOT/UNKNOWN", "TERM", "AUTHORITY"],
          r.clusters.map((c) => [c.name, c.ready, String(c.nodes.total), `${c.nodes.ready.True}/${c.nodes.ready.False}/${c.nodes.ready.Unknown}`, c.authorityTerm === null ? "-" : String(c.authorityTerm), c.authorityHolder ?? "-"]),
        ),
  );

  const n = r.nodes;
  const nr = firstRows(n.notReady, "fabricctl get nodes, or -o json");
  section(
    `NODES (${n.total}): ${n.ready.True} Ready, ${n.ready.False} NotReady, ${n.ready.Unknown} Unknown`,
    n.notReady.length === 0
      ? n.total === 0
        ? "no nodes yet: fabricctl token create --cluster NAME"
        : "all nodes Ready"
      : formatTable(
          ["NAME", "READY", "REASON", "LAST HEARTBEAT", "LOOK CLOSER"],
          nr.shown.map((x) => [x.name, x.ready, x.reason ?? "-", x.lastHeartbeatTime === null ? "never" : `${age(now - Date.parse(x.lastHeartbeatTime))} ago`, x.command]),
        ) + nr.tail,
  );

  const p = r.joinRequests.pending;
  const pr = firstRows(p, "kubectl get joinrequests, or -o json");
  section(
    `PENDING JOIN REQUESTS (${p.length})`,
    p.length === 0
      ? "none"
      : formatTable(
          ["NAME", "CLUSTER", "NODE", "ROLES", "WAITING", "DECIDE"],
          pr.shown.map((j) => [
            j.name,
            j.cluster,
            j.nodeName,
            (j.requestedRoles.length > 0 ? j.requestedRoles.join(",") : "-") + (j.unsupportedRoles.length > 0 ? ` (unsupported: ${j.unsupportedRoles.join(",")})` : ""),
            j.created === null ? "-" : age(now - Date.parse(j.created)),
            `${j.command}  (or: fabricctl join deny ${j.name} --reason TEXT)`,
          ]),
        ) + pr.tail,
  );

  const g = r.roleCoverage.gaps;
  section(
    `ROLE COVERAGE GAPS (${g.length})`,
    g.length === 0 ? "none" : formatTable(["CLUSTER", "ROLE", "READY/ASSIGNED", "PROBLEM", "LOOK CLOSER"], g.map((x) => [x.cluster, x.role, `${x.ready}/${x.assigned}`, x.problem, x.command])),
  );

  const w = r.workloads;
  section(
    `WORKLOADS (${w.length}, ${w.filter((x) => !x.ok).length} not ok)`,
    w.length === 0 ? "none" : formatTable(["NAME", "CLUSTER", "DESIRED", "READY", "DEGRADED", "LOOK CLOSER"], w.map((x) => [x.name, x.cluster, String(x.desired), String(x.ready), String(x.degraded), x.ok ? "" : x.command])),
  );

  const e = r.certificates.expiring;
  const er = firstRows(e, "fabricctl get nodes, or -o json");
  section(
    `CERTIFICATES EXPIRING SOON (${e.length})`,
    e.length === 0 ? "none" : formatTable(["NODE", "CLUSTER", "NOT AFTER", "LOOK CLOSER"], er.shown.map((x) => [x.node, x.cluster, `${x.notAfter} (${until(x.notAfter, now)})`, x.command])) + er.tail,
  );

  const a = r.authority;
  const leaseLine =
    a.leaseError !== null
      ? `lease: cannot read (${a.leaseError})`
      : a.lease === null
        ? "lease: none (leader election off?)"
        : `lease ${a.lease.namespace}/${a.lease.name}: ${a.lease.expired ? "EXPIRED, " : ""}held by ${a.lease.holder ?? "nobody"}${a.lease.renewTime !== null ? `, renewed ${age(now - Date.parse(a.lease.renewTime))} ago` : ""}`;
  section("AUTHORITY", [leaseLine, ...a.clusters.map((c) => `cluster ${c.cluster}: term ${c.term ?? "-"}, holder ${c.holder ?? "-"}`)].join("\n"));

  const au = r.audit;
  section("AUDIT CHAIN", au.checked ? (au.ok ? `intact: ${au.events} events` : `BROKEN at event id ${au.brokenAt}: ${au.problem}  (fabricctl audit verify)`) : au.reason);

  section(`RISKS (${r.risks.length})`, r.risks.length === 0 ? "none" : formatTable(["KIND", "WHAT", "LOOK CLOSER"], r.risks.map((x) => [x.kind, x.message, x.command])));
  return out.join("\n");
}
