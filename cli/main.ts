/**
 * fabricctl's command tree (commander): parsing, per-command help on stdout,
 * unknown commands with a suggestion, and one place that turns outcomes into
 * exit codes (cli/errors.ts): 0 ok, 1 failure, 2 usage. Each action imports
 * what it needs when it runs, so `--help` loads nothing but commander.
 */
import { Command, CommanderError, Option } from "commander";
import type { DatabaseFlags } from "./database.js";
import { UsageError, describeError, exitCodeOf } from "./errors.js";
import type { KubeClient } from "./kube/client.js";
import { outputFormat } from "./output.js";

/** Where a run writes. */
export interface Io {
  out(s: string): void;
  err(s: string): void;
}

const processIo: Io = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) };

interface KubeFlags {
  kubeconfig?: string;
  context?: string;
}

interface DbFlagValues {
  databaseUrl?: string;
  stateDir?: string;
}

function kubeOptions(cmd: Command): Command {
  return cmd.option("--kubeconfig <file>", "kubeconfig to use (default $KUBECONFIG or ~/.kube/config)").option("--context <name>", "kubeconfig context (default: the current context)");
}

function dbOptions(cmd: Command, what: string): Command {
  return cmd
    .option("--database-url <url>", `PostgreSQL of the control plane, for ${what} (default $DATABASE_URL)`)
    .option("--state-dir <dir>", `state directory of an embedded control plane, for ${what}`);
}

function outputOption(cmd: Command): Command {
  return cmd.addOption(new Option("-o, --output <format>", "output format").choices(["table", "json", "yaml"]).default("table"));
}

function dbFlags(v: DbFlagValues): DatabaseFlags {
  return { databaseUrl: v.databaseUrl, stateDir: v.stateDir };
}

async function withClient<T>(flags: KubeFlags, fn: (c: KubeClient) => Promise<T>): Promise<T> {
  const [{ loadKubeTarget }, { KubeClient }] = await Promise.all([import("./kube/kubeconfig.js"), import("./kube/client.js")]);
  const client = new KubeClient(await loadKubeTarget(flags.kubeconfig, flags.context));
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

/** Builds the command tree; actions store their exit code in `result.code`. */
export function buildProgram(io: Io, result: { code: number }): Command {
  const program = new Command("fabricctl")
    .description("Operate an Access Fabric control plane: enrollment, fleet status, audit.")
    .usage("<command> [options]")
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .exitOverride()
    .showSuggestionAfterError(true)
    .showHelpAfterError("(add --help for usage)")
    .addHelpText("after", "\nExit codes: 0 ok, 1 the command failed, 2 the command cannot run as written (usage, or a named object does not exist).\nDocs: docs/fabricctl.md");
  // Subcommands inherit output, exit handling and suggestions.
  const group = (name: string, description: string) => program.command(name).description(description).configureOutput({ writeOut: io.out, writeErr: io.err }).exitOverride().showHelpAfterError("(add --help for usage)");

  // status
  const status = program
    .command("status")
    .description("one-screen overview: clusters, node health, pending join requests, role coverage, workloads, certificates, authority, audit chain")
    .option("--cluster <name>", "only this cluster")
    .option("-w, --watch", "refresh until interrupted")
    .option("--interval <duration>", "refresh interval of --watch", "5s")
    .option("--cert-warning <duration>", "flag certificates expiring within this (default: less than 10% of their validity left)")
    .option("--lease <namespace/name>", "the controllers' leader-election Lease (default: fabric-controllers in fabric-system, else in kube-system: the defaults of fabric-controllers and fabric-controlplane)");
  kubeOptions(status);
  dbOptions(status, "the audit chain check");
  outputOption(status).action(async (o: KubeFlags & DbFlagValues & { cluster?: string; watch?: boolean; interval: string; certWarning?: string; lease?: string; output: string }) => {
    const { runStatus } = await import("./commands/status.js");
    result.code = await withClient(o, (c) =>
      runStatus(c, { cluster: o.cluster, watch: o.watch === true, interval: o.interval, certWarning: o.certWarning, lease: o.lease, db: dbFlags(o), format: outputFormat(o.output) }, io),
    );
  });

  // get
  const get = program
    .command("get")
    .description("list fabric nodes with the columns an operator needs")
    .argument("<resource>", "nodes (fabricnodes, fn)")
    .option("--cluster <name>", "only this cluster");
  kubeOptions(get);
  outputOption(get).action(async (resource: string, o: KubeFlags & { cluster?: string; output: string }) => {
    if (!["nodes", "node", "fabricnodes", "fabricnode", "fn"].includes(resource)) throw new UsageError(`fabricctl get knows nodes only; for ${resource} use kubectl get ${resource}`);
    const { getNodes } = await import("./commands/get-nodes.js");
    result.code = await withClient(o, (c) => getNodes(c, { cluster: o.cluster, format: outputFormat(o.output) }, io));
  });

  // token
  const token = group("token", "join tokens");
  const tokenCreate = token
    .command("create")
    .description("create a JoinToken; print the raw token once and the fabric-agent join command")
    .option("--cluster <name>", "cluster the token admits to (required)")
    .option("--name <name>", "token name (default CLUSTER-RANDOM)")
    .option("--ttl <duration>", "lifetime, at most the cluster's enrollmentPolicy.maxTokenTTL", "30m")
    .option("--max-uses <n>", "join requests the token accepts", "1")
    .option("--roles <a,b>", "roles hosts may request with it (the join command requests them)", "")
    .option("--node-group <name>", "NodeGroup new nodes are placed in")
    .option("--auto-approve", "approve its requests without an operator (cluster approval TokenAutoApprove)", false)
    .option("--description <text>", "note for other operators")
    .option("--wait <duration>", "how long to wait for the controllers to issue the token", "30s");
  kubeOptions(tokenCreate).action(async (o: KubeFlags & { cluster?: string; name?: string; ttl: string; maxUses: string; roles: string; nodeGroup?: string; autoApprove: boolean; description?: string; wait: string }) => {
    const [{ tokenCreate: run }, { flagDuration }] = await Promise.all([import("./commands/token.js"), import("./duration.js")]);
    if (o.cluster === undefined) throw new UsageError("token create needs --cluster");
    const waitMs = flagDuration("--wait", o.wait);
    result.code = await withClient(o, (c) => run(c, { cluster: o.cluster, name: o.name, ttl: o.ttl, maxUses: o.maxUses, roles: o.roles, nodeGroup: o.nodeGroup, autoApprove: o.autoApprove, description: o.description, waitMs }, io.out));
  });

  // release
  const release = group("release", "signing keys, signed releases and the version store");
  const collect = (v: string, prev: string[]) => [...prev, v];
  release
    .command("keygen")
    .description("generate an Ed25519 release signing key: private key to --out (0600), public key and releaseTrust lines printed")
    .option("--out <file>", "file for the private key (never overwritten)")
    .option("--key-id <id>", "key id to print (default: the first 16 hex digits of the public key's sha256)")
    .action(async (o: { out?: string; keyId?: string }) => {
      const { releaseKeygen } = await import("./commands/release.js");
      result.code = releaseKeygen(o, io.out);
    });
  release
    .command("sign")
    .description("build a release manifest from flags and artifact files, sign it with every --key, write the Release object")
    .option("--cluster <name>", "FabricCluster whose releaseTrust verifies it")
    .option("--component <name>", "component released")
    .option("--version <semver>", "version released")
    .option("--name <name>", "Release name (default COMPONENT-VERSION)")
    .option("--artifact <os/arch=path>", "an artifact file (repeatable)", collect, [])
    .option("--key <file[=keyId]>", "a private signing key (repeatable: one signature per key)", collect, [])
    .option("--expires <time|duration>", "RFC 3339 expiry or a lifetime such as 90d", "90d")
    .option("--min-agent-version <semver>", "oldest agent that may install it")
    .option("--migration <file>", "JSON migration declaration {from,to,preflight,backup,rollback,downgrade}")
    .option("--health-check <file>", "JSON health check {command,timeoutSeconds}")
    .option("--out <file>", "write the Release here (default stdout)")
    .action(async (o: Omit<import("./commands/release.js").SignOptions, "expires"> & { expires: string; artifact: string[]; key: string[] }) => {
      const [{ releaseSign }, { flagDuration }] = await Promise.all([import("./commands/release.js"), import("./duration.js")]);
      const expires = /^[0-9]{4}-/.test(o.expires) ? o.expires : flagDuration("--expires", o.expires);
      result.code = await releaseSign({ ...o, expires, artifacts: o.artifact, keys: o.key }, io.out);
    });
  const releasePush = release
    .command("push")
    .description("upload a Release's artifacts to the version store (with progress), then create the Release")
    .argument("<release-file>", "the Release written by release sign")
    .argument("[artifact-files...]", "the artifact files (those not yet stored)");
  kubeOptions(releasePush).action(async (file: string, artifacts: string[], o: KubeFlags) => {
    const { releasePush: run } = await import("./commands/release.js");
    result.code = await withClient(o, (c) => run(c, { file, artifacts }, io));
  });
  release
    .command("verify")
    .description("verify a Release offline against a trust set, and its artifact files if given")
    .argument("<release-file>", "the Release")
    .argument("[artifact-files...]", "artifact files to check against the signed lengths and digests")
    .option("--trust <file>", "a file holding releaseTrust (or a FabricCluster manifest)")
    .action(async (file: string, artifacts: string[], o: { trust?: string }) => {
      const { releaseVerify } = await import("./commands/release.js");
      result.code = await releaseVerify({ file, trust: o.trust, artifacts }, io.out);
    });
  release
    .command("rotate-trust")
    .description("sign a new releaseTrust with the current keys; prints releaseTrust with its rotation envelope for the FabricCluster")
    .option("--new <file>", "file holding the new releaseTrust")
    .option("--key <file[=keyId]>", "a current private key (repeatable, up to the current threshold)", collect, [])
    .action(async (o: { new?: string; key: string[] }) => {
      const { releaseRotateTrust } = await import("./commands/release.js");
      result.code = releaseRotateTrust({ next: o.new, keys: o.key }, io.out);
    });

  // rollout
  const rollout = group("rollout", "release channel rollouts");
  const rolloutStatusCmd = rollout
    .command("status")
    .description("a ReleaseChannel's rollout: phase, versions, a progress bar per ring, halts, agent update states")
    .argument("<channel>", "ReleaseChannel name")
    .option("-w, --watch", "refresh until the rollout settles (Complete, Idle, Pinned: exit 0; Halted: exit 1) or Ctrl-C (exit 130)")
    .option("--interval <duration>", "refresh interval of --watch", "2s");
  kubeOptions(rolloutStatusCmd);
  outputOption(rolloutStatusCmd).action(async (channel: string, o: KubeFlags & { watch?: boolean; interval: string; output: string }) => {
    const { rolloutStatus } = await import("./commands/rollout.js");
    result.code = await withClient(o, (c) => rolloutStatus(c, { channel, watch: o.watch === true, interval: o.interval, format: outputFormat(o.output) }, io));
  });

  // join
  const join = group("join", "decide join requests");
  for (const [verb, decision] of [["approve", "Approved"], ["deny", "Denied"]] as const) {
    const cmd = join
      .command(verb)
      .description(`${verb} a pending JoinRequest`)
      .argument("[name]", "JoinRequest name (see fabricctl status)")
      .option("--reason <text>", "why (recorded on the request and in the audit chain)");
    kubeOptions(cmd).action(async (name: string | undefined, o: KubeFlags & { reason?: string }) => {
      if (name === undefined) throw new UsageError(`join ${verb} needs a JoinRequest name`);
      const { joinDecide } = await import("./commands/join.js");
      result.code = await withClient(o, (c) => joinDecide(c, decision, name, o.reason, io.out));
    });
  }

  // audit
  const audit = group("audit", "the audit chain (read from the control plane's database)");
  const verify = audit.command("verify").description("check every link of the audit chain; exit 1 names the first broken row");
  dbOptions(verify, "the chain").action(async (o: DbFlagValues) => {
    const { auditVerify } = await import("./commands/audit.js");
    result.code = await auditVerify(dbFlags(o), io.out);
  });
  const log = audit
    .command("log")
    .description("print audit events in chain order")
    .option("--since <duration|time>", "only events since then (2h, 7d, or RFC 3339)")
    .option("--object <kind[/name]>", "only events about this object (e.g. fabricnode/demo.h1, joinrequest)")
    .option("--action <action>", "only this action (e.g. joinrequest.denied)")
    .option("--cluster <name>", "only this cluster")
    .option("--limit <n>", "at most the latest N events", "1000");
  dbOptions(log, "the chain");
  outputOption(log).action(async (o: DbFlagValues & { since?: string; object?: string; action?: string; cluster?: string; limit: string; output: string }) => {
    const limit = Number(o.limit);
    if (!Number.isInteger(limit) || limit < 1) throw new UsageError(`--limit must be a positive integer, not "${o.limit}"`);
    const format = outputFormat(o.output);
    const [{ auditLog, resolveKind }, { sinceTime }] = await Promise.all([import("./commands/audit.js"), import("./duration.js")]);
    if (o.object !== undefined) resolveKind(o.object.split("/")[0] ?? "");
    const since = o.since !== undefined ? sinceTime(o.since, Date.now()) : undefined;
    result.code = await auditLog(dbFlags(o), { since, object: o.object, action: o.action, cluster: o.cluster, limit }, format, io.out, io.err);
  });

  // vpn
  const vpn = group("vpn", "VPN connections: status and the operator fence");
  const vpnFenceCmd = vpn
    .command("fence")
    .description("end the current lease of a VPNConnection at once and bump its fencing token (increments spec.fence)")
    .argument("[connection]", "<namespace>/<name>")
    .option("--wait <duration>", "how long to wait for the controller to apply the fence (0: do not wait)", "30s");
  kubeOptions(vpnFenceCmd).action(async (ref: string | undefined, o: KubeFlags & { wait: string }) => {
    if (ref === undefined) throw new UsageError("vpn fence needs <namespace>/<name>");
    const [{ vpnFence }, { flagDuration }] = await Promise.all([import("./commands/vpn.js"), import("./duration.js")]);
    const waitMs = o.wait === "0" ? 0 : flagDuration("--wait", o.wait);
    result.code = await withClient(o, (c) => vpnFence(c, ref, { waitMs }, io));
  });
  const vpnStatusCmd = vpn.command("status").description("one row per VPNConnection: holder, fencing token, owner state, eligible and blocked nodes").option("-n, --namespace <ns>", "only this namespace (organization)");
  outputOption(kubeOptions(vpnStatusCmd)).action(async (o: KubeFlags & { namespace?: string; output: string }) => {
    const { vpnStatus } = await import("./commands/vpn.js");
    result.code = await withClient(o, (c) => vpnStatus(c, { namespace: o.namespace, format: outputFormat(o.output) }, io));
  });

  return program;
}

/** Runs fabricctl with `argv` (without node and script); resolves with the exit code. */
export async function main(argv: string[], io: Io = processIo): Promise<number> {
  const result = { code: 0 };
  const program = buildProgram(io, result);
  try {
    await program.parseAsync(argv, { from: "user" });
    return result.code;
  } catch (err) {
    // Commander has printed its own message (unknown command, missing option, help).
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    io.err(`fabricctl: ${describeError(err)}\n`);
    return exitCodeOf(err);
  }
}
