/**
 * metav1.DeleteOptions of a DELETE, as kube-apiserver reads them: from the
 * body when there is one (JSON or Kubernetes protobuf), else from the query.
 * A body of the wrong shape (null, a string, `"preconditions": "x"`, a
 * numeric uid) is a 400, as Go's decoder refuses it; values of the right
 * type but unsupported (propagationPolicy, dryRun) are kube's 422 on
 * DeleteOptions. Either way nothing is deleted.
 */
import type Koa from "koa";
import { badRequest } from "../errors.js";
import { kubeProtobufMediaType } from "../kube-protobuf.js";
import { isObj, type Obj } from "../object.js";
import { checkDecoded, decodeJson } from "./decode.js";
import { boolParam, checkDryRun, checkPropagationPolicy, int64Param, invalidOptions } from "./params.js";
import { decodeProtobufBody, mediaType, readBody } from "./prepare.js";
import { queryOf } from "./request.js";

/** What a delete honours of its DeleteOptions. */
export interface DeleteOptions {
  preconditions: { uid?: string; resourceVersion?: string };
  dryRun: boolean;
}

/** Reads and checks the DeleteOptions of a DELETE request. */
export async function deleteOptions(ctx: Koa.Context, maxBodyBytes: number): Promise<DeleteOptions> {
  const raw = await readBody(ctx, maxBodyBytes);
  if (raw.length > 0) {
    let body: unknown;
    if (mediaType(ctx) === kubeProtobufMediaType) {
      body = decodeProtobufBody(raw);
      checkDecoded(body, "DeleteOptions");
    } else body = decodeJson(raw, "DeleteOptions");
    return fromBody(body);
  }
  const q = queryOf(ctx);
  const grace = int64Param(q, "gracePeriodSeconds");
  const orphan = q.orphanDependents === undefined || q.orphanDependents === "" ? undefined : boolParam(q, "orphanDependents");
  const policy = q.propagationPolicy === undefined || q.propagationPolicy === "" ? undefined : q.propagationPolicy;
  return validate({ grace, orphan, policy, dryRun: q.dryRun === undefined || q.dryRun === "" ? [] : [q.dryRun], preconditions: {} });
}

/** A 400 for a field of the wrong JSON type, in the words of Go's decoder. */
function wrongType(field: string, want: string, got: unknown): Error {
  const kind = got === null ? "null" : Array.isArray(got) ? "array" : typeof got;
  return badRequest(`error decoding DeleteOptions: json: cannot unmarshal ${kind} into Go struct field DeleteOptions.${field} of type ${want}`);
}

function optString(o: Obj, key: string, field: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw wrongType(field, "string", v);
  return v;
}

function fromBody(body: unknown): DeleteOptions {
  if (!isObj(body)) throw wrongType("", "v1.DeleteOptions", body);
  // Every API group version serves DeleteOptions, so any apiVersion string goes.
  optString(body, "apiVersion", "apiVersion");
  const kind = optString(body, "kind", "kind");
  if (kind !== undefined && kind !== "" && kind !== "DeleteOptions") throw badRequest(`error decoding DeleteOptions: the body is a ${kind}, not a DeleteOptions`);
  const preconditions: DeleteOptions["preconditions"] = {};
  const pre = body.preconditions;
  if (pre !== undefined && pre !== null) {
    if (!isObj(pre)) throw wrongType("preconditions", "v1.Preconditions", pre);
    const uid = optString(pre, "uid", "preconditions.uid");
    const rv = optString(pre, "resourceVersion", "preconditions.resourceVersion");
    if (uid !== undefined) preconditions.uid = uid;
    if (rv !== undefined) preconditions.resourceVersion = rv;
  }
  let grace: bigint | undefined;
  const g = body.gracePeriodSeconds;
  if (g !== undefined && g !== null) {
    if (typeof g !== "number" || !Number.isSafeInteger(g)) throw wrongType("gracePeriodSeconds", "int64", g);
    grace = BigInt(g);
  }
  const o = body.orphanDependents;
  if (o !== undefined && o !== null && typeof o !== "boolean") throw wrongType("orphanDependents", "bool", o);
  const policy = optString(body, "propagationPolicy", "propagationPolicy");
  const d = body.dryRun;
  let dryRun: string[] = [];
  if (d !== undefined && d !== null) {
    if (!Array.isArray(d)) throw wrongType("dryRun", "[]string", d);
    dryRun = d.map((x) => {
      if (typeof x !== "string") throw wrongType("dryRun", "string", x);
      return x;
    });
  }
  return validate({ grace, orphan: typeof o === "boolean" ? o : undefined, policy, dryRun, preconditions });
}

/** kube's ValidateDeleteOptions, then what a delete here honours. */
function validate(o: { grace: bigint | undefined; orphan: boolean | undefined; policy: string | undefined; dryRun: string[]; preconditions: DeleteOptions["preconditions"] }): DeleteOptions {
  if (o.orphan !== undefined && o.policy !== undefined) {
    throw invalidOptions("DeleteOptions", [{ reason: "FieldValueInvalid", field: "propagationPolicy", message: "Invalid value: orphanDependents and deletionPropagation cannot be both set" }]);
  }
  if (o.policy !== undefined) checkPropagationPolicy(o.policy);
  // Deletion is immediate here whatever the grace period; it only has to be an int64.
  void o.grace;
  return { preconditions: o.preconditions, dryRun: checkDryRun(o.dryRun, "DeleteOptions") };
}
