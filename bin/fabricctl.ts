/**
 * fabricctl: operator commands that talk to the control plane's database.
 *
 *   fabricctl audit verify [--database-url URL | --state-dir DIR]
 *
 * Exit codes: 0 chain intact, 1 chain broken (the first bad row is named),
 * 2 usage or connection error.
 */
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { verifyChain } from "../lib/audit/chain.js";
import { embeddedDatabaseUrl, startEmbeddedPostgres, type EmbeddedDatabase } from "../lib/db/embedded-postgres.js";
import { createPool } from "../lib/db/pool.js";
import { joinDecide, tokenCreate } from "./fabricctl-enrollment.js";

const usage = `usage: fabricctl audit verify [--database-url URL | --state-dir DIR]
       fabricctl token create --cluster C [--name N] [--ttl 30m] [--max-uses 1] [--roles a,b] [--auto-approve] [--kubeconfig F]
       fabricctl join approve|deny NAME [--reason TEXT] [--kubeconfig F]

  --database-url URL   PostgreSQL of the control plane (default $DATABASE_URL)
  --state-dir DIR      state directory of an embedded control plane (its database is
                       used while it runs, or started for the duration of the check when it is down)
`;

async function databaseUrl(values: { "database-url"?: string; "state-dir"?: string }): Promise<{ url: string; server?: EmbeddedDatabase }> {
  if (values["database-url"]) return { url: values["database-url"] };
  if (values["state-dir"]) {
    const dataDir = join(resolve(values["state-dir"]), "postgres");
    try {
      return { url: await embeddedDatabaseUrl(dataDir) };
    } catch {
      // The control plane is down: run its embedded server for the duration of the check.
      const server = await startEmbeddedPostgres({ dataDir });
      return { url: server.url, server };
    }
  }
  const env = process.env.DATABASE_URL;
  if (env) return { url: env };
  throw new Error("no database: pass --database-url, --state-dir or set DATABASE_URL");
}

async function auditVerify(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { "database-url": { type: "string" }, "state-dir": { type: "string" }, help: { type: "boolean", short: "h", default: false } },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(usage);
    return 0;
  }
  const { url, server } = await databaseUrl(values);
  const pool = createPool(url, { max: 1 });
  try {
    const v = await verifyChain(pool);
    if (v.ok) {
      process.stdout.write(`audit chain intact: ${v.events} events (head ${v.lastHash})\n`);
      return 0;
    }
    process.stdout.write(`audit chain BROKEN at event id ${v.brokenAt}: ${v.problem} (${v.events} events verified before it)\n`);
    return 1;
  } finally {
    await pool.end();
    await server?.stop();
  }
}

async function main(argv: string[]): Promise<number> {
  const [group, cmd, ...rest] = argv;
  if (group === "audit" && cmd === "verify") return auditVerify(rest);
  if (group === "token" && cmd === "create") return tokenCreate(rest);
  if (group === "join" && (cmd === "approve" || cmd === "deny")) return joinDecide(cmd === "approve" ? "Approved" : "Denied", rest);
  process.stderr.write(usage);
  return group === "-h" || group === "--help" ? 0 : 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`fabricctl: ${err instanceof Error ? err.message : String(err)}${err instanceof Error && err.cause ? ` (${String(err.cause)})` : ""}\n`);
    process.exit(2);
  },
);
