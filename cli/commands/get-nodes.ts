/** `fabricctl get nodes`: one row per FabricNode (cli/status/facts.ts nodeRow). */
import type { FabricNode } from "../../lib/api/types.generated.js";
import type { KubeClient } from "../kube/client.js";
import type { Io } from "../main.js";
import { structured, type OutputFormat } from "../output.js";
import { nodeRow } from "../status/facts.js";
import { renderNodes } from "../status/render.js";

/** Lists the nodes (of one cluster) in the chosen format. */
export async function getNodes(client: KubeClient, o: { cluster?: string; format: OutputFormat }, io: Io): Promise<number> {
  const now = Date.now();
  const nodes = await client.list<FabricNode>("FabricNode");
  const rows = nodes
    .filter((n) => o.cluster === undefined || n.spec.cluster === o.cluster)
    .map((n) => nodeRow(n, now))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  if (o.format !== "table") {
    io.out(await structured({ nodes: rows }, o.format));
    return 0;
  }
  if (rows.length === 0) {
    io.err(o.cluster === undefined ? "No fabric nodes found.\n" : `No fabric nodes found in cluster ${o.cluster}.\n`);
    return 0;
  }
  io.out(renderNodes(rows, now));
  return 0;
}
