/**
 * JoinRequestReconciler (leader only): publishes the capability check of
 * each request before anyone decides, acts on spec.decision (or on an
 * auto-approve token), and on approval issues the node certificate with the
 * cluster CA, records the node and its identity (fenced, audited) and
 * creates the FabricNode. Requests created outside the enrollment API (no
 * row) are never honoured. A decision is final: a changed spec.decision is
 * ignored (the recorded outcome stands) and reported. Decided requests are
 * deleted after a retention period (with their rows: no CSR objects piling
 * up).
 */
import { X509Certificate } from "node:crypto";
import type { CustomObjectsApi } from "@kubernetes/client-node";
import { RESOURCES, type FabricNodeSpec } from "../../lib/api/types.generated.js";
import type { NodeCertificateIssuer } from "../../lib/enrollment/issuer.js";
import type { NodeStore } from "../../lib/state/index.js";
import type { FabricNodeObject, JoinRequestObject as JoinRequest } from "../objects.js";
import { httpStatusOf, patchStatusIfChanged, realClock, recordAll, setCondition, type Clock, type Condition, type EventRecorderLike, type Informer, type ObjectKey, type ReconcileContext, type ReconcileResult, type Reconciler } from "../runtime/index.js";
import { approvedEvents, deniedEvent, nodeExistsEvent, noEnrollmentRecordEvent } from "./events.js";
import { RequestReasons, changedDecision, desiredRequestStatus, fabricNodeName, planRequest } from "./plan.js";

/** Dependencies of JoinRequestReconciler. */
export interface JoinRequestReconcilerDeps {
  informer: Informer<JoinRequest>;
  nodes: NodeStore;
  issuer: NodeCertificateIssuer;
  api: CustomObjectsApi;
  /** FabricNode cache: skips the create when the node is already there. */
  nodeInformer?: Informer<FabricNodeObject>;
  /** How long decided requests are kept (default 24 h). */
  retentionMs?: number;
  clock?: Clock;
  /** Kubernetes Events (approved, denied, certificate issued, refusals). */
  events?: EventRecorderLike;
}

const res = RESOURCES.JoinRequest;
const nodeRes = RESOURCES.FabricNode;

/** See the module comment. */
export class JoinRequestReconciler implements Reconciler {
  constructor(private readonly d: JoinRequestReconcilerDeps) {}

  async reconcile(key: ObjectKey, ctx: ReconcileContext): Promise<ReconcileResult | void> {
    const obj = this.d.informer.get(key);
    if (obj === undefined) {
      if (await this.d.nodes.deleteRequest(key.name)) ctx.log.info("join request row deleted", { joinRequest: key.name });
      return;
    }
    const now = new Date((this.d.clock ?? realClock).now());
    const generation = obj.metadata.generation ?? 0;
    const target = { group: res.group, version: res.version, plural: res.plural, name: key.name };
    let row = await this.d.nodes.request(key.name);
    if (row === undefined || row.cluster !== obj.spec.cluster || row.nodeName !== obj.spec.nodeName || row.hostFingerprint !== obj.spec.hostFingerprint) {
      const conditions = setCondition(
        obj.status?.conditions as Condition[] | undefined,
        {
          type: "Ready",
          status: "False",
          reason: RequestReasons.NoEnrollmentRecord,
          message: "this request was not made through the enrollment API (or does not match its record) and is ignored",
          observedGeneration: generation,
        },
        now,
      );
      if (obj.status?.conditions?.find((c) => c.type === "Ready")?.reason !== RequestReasons.NoEnrollmentRecord) recordAll(this.d.events, obj, [noEnrollmentRecordEvent()]);
      await patchStatusIfChanged(this.d.api, target, obj.status, { observedGeneration: generation, conditions });
      return;
    }
    const action = planRequest(row, obj.spec.decision, obj.spec.decisionReason);
    let nodeExists: string | undefined;
    if (action.kind === "deny") {
      await this.d.nodes.deny(key.name, action.reason);
      ctx.log.info("join request denied", { joinRequest: key.name, cluster: row.cluster, node: row.nodeName, reason: action.reason });
      recordAll(this.d.events, obj, [deniedEvent(action.reason)]);
    } else if (action.kind === "approve") {
      const node = fabricNodeName(row.cluster, row.nodeName);
      const identity = await this.d.issuer.issue(row.cluster, node, row.publicKeyDer);
      const out = await this.d.nodes.approve(key.name, { name: node, how: action.how, reason: action.reason }, identity);
      if (out.kind === "nodeExists") {
        nodeExists = out.node;
        recordAll(this.d.events, obj, [nodeExistsEvent(out.node)]);
      } else if (out.kind === "approved") {
        ctx.log.info("join request approved; certificate issued", { joinRequest: key.name, node, serial: identity.serial, how: action.how });
        recordAll(this.d.events, obj, approvedEvents(action, node, identity.serial, identity.notAfter));
      }
    }
    row = (await this.d.nodes.request(key.name)) ?? row;
    if (row.state === "Approved" && row.fabricNode !== null) await this.ensureNode(row.fabricNode, key.name, row);
    let serial: string | undefined;
    let notAfter: Date | undefined;
    if (row.certificatePem !== null) {
      const c = new X509Certificate(row.certificatePem);
      serial = c.serialNumber.toLowerCase();
      notAfter = new Date(c.validTo);
    }
    const decisionChanged = changedDecision(row, obj.spec.decision);
    if (decisionChanged !== undefined && !(obj.status?.conditions ?? []).some((c) => c.type === "DecisionChanged")) {
      ctx.log.warn("join request decision changed after it was final; ignored", { joinRequest: key.name, recorded: row.state, requested: obj.spec.decision, node: row.fabricNode });
    }
    const status = desiredRequestStatus(obj.status, generation, row, { certificateSerial: serial, certificateNotAfter: notAfter, nodeExists, decisionChanged }, now);
    await patchStatusIfChanged(this.d.api, target, obj.status, status);
    if (row.decidedAt !== null) {
      const gcAt = row.decidedAt.getTime() + (this.d.retentionMs ?? 24 * 3_600_000);
      if (now.getTime() >= gcAt) {
        try {
          await this.d.api.deleteClusterCustomObject({ group: res.group, version: res.version, plural: res.plural, name: key.name });
          ctx.log.info("decided join request garbage-collected", { joinRequest: key.name });
        } catch (err) {
          if (httpStatusOf(err) !== 404) throw err;
        }
        return;
      }
      return { requeueAfterMs: gcAt - now.getTime() + 50 };
    }
    return;
  }

  private async ensureNode(name: string, request: string, row: { cluster: string; hostFingerprint: string; nodeGroup: string | null; facts: Record<string, unknown> }): Promise<void> {
    if (this.d.nodeInformer?.get({ name }) !== undefined) return;
    const spec: FabricNodeSpec = { cluster: row.cluster, hostFingerprint: row.hostFingerprint, membership: "Active", joinRequestRef: { name: request } };
    if (row.nodeGroup !== null) spec.group = row.nodeGroup;
    const hostname = row.facts.hostname;
    if (typeof hostname === "string" && hostname.length <= 253) spec.hostname = hostname;
    try {
      await this.d.api.createClusterCustomObject({
        group: nodeRes.group,
        version: nodeRes.version,
        plural: nodeRes.plural,
        body: { apiVersion: `${nodeRes.group}/${nodeRes.version}`, kind: "FabricNode", metadata: { name, labels: { "accessfabric.io/cluster": row.cluster } }, spec },
      });
    } catch (err) {
      if (httpStatusOf(err) !== 409) throw err;
    }
  }
}
