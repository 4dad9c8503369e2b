/**
 * Hostile requests get a clean 4xx metav1.Status and store nothing: query
 * parameters parsed as kube-apiserver parses them, body limits enforced
 * before and while decoding, strict DeleteOptions, valid Warning headers.
 * Each test sends the exact request a client (or an attacker) would.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import https from "node:https";
import { sharedControlPlane, type TestControlPlane } from "../support/controlplane.js";

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** The raw header lines, so the bytes a client would parse can be checked. */
  rawHeaders: string[];
  body: string;
}

interface KubeStatus {
  kind: string;
  apiVersion: string;
  status: string;
  reason: string;
  code: number;
  message: string;
  details?: { causes?: Array<{ reason?: string; field?: string; message?: string }>; retryAfterSeconds?: number };
}

/** One request; a watch is read for at most `readMs` before the client hangs up. */
function send(t: TestControlPlane, method: string, path: string, body?: string | Buffer, headers: Record<string, string> = {}, readMs = 10_000): Promise<Reply> {
  const url = new URL(t.cp.api.url);
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: url.hostname,
        port: url.port,
        method,
        path,
        ca: t.cp.api.caPem,
        // Node sends a DELETE body unframed unless told its length.
        headers: { Authorization: `Bearer ${t.cp.api.adminToken}`, ...(body === undefined ? {} : { "Content-Length": String(Buffer.byteLength(body)) }), ...headers },
      },
      (res) => {
        let data = "";
        const done = () => resolve({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body: data });
        const timer = setTimeout(() => {
          res.destroy();
          done();
        }, readMs);
        res.on("data", (c: Buffer) => (data += c.toString()));
        res.on("end", () => {
          clearTimeout(timer);
          done();
        });
        res.on("error", () => undefined);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** Parses a Status and checks it is a kube failure Status with this code. */
function failure(r: Reply, code: number, reason?: string): KubeStatus {
  assert.equal(r.status, code, r.body);
  const s = JSON.parse(r.body) as KubeStatus;
  assert.equal(s.kind, "Status");
  assert.equal(s.apiVersion, "v1");
  assert.equal(s.status, "Failure");
  assert.equal(s.code, code);
  if (reason) assert.equal(s.reason, reason);
  return s;
}

/** The watch events of a stream body. */
function events(body: string): Array<{ type: string; object: Record<string, unknown> }> {
  return body
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as { type: string; object: Record<string, unknown> });
}

const cms = "/api/v1/namespaces/default/configmaps";
const json = { "Content-Type": "application/json" };

function cm(name: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name }, data: { a: "b" }, ...extra });
}

/** `depth` nested arrays around a number, as raw JSON text. */
function nested(depth: number): string {
  return "[".repeat(depth) + "1" + "]".repeat(depth);
}

describe("API server: hostile request parsing", function () {
  this.timeout(60_000);
  let t: TestControlPlane;
  let run: string;

  before(async () => {
    t = await sharedControlPlane();
    run = randomUUID().slice(0, 8);
  });

  async function create(name: string): Promise<Record<string, unknown>> {
    const r = await send(t, "POST", cms, cm(name), json);
    assert.equal(r.status, 201, r.body);
    return JSON.parse(r.body) as Record<string, unknown>;
  }

  async function assertAbsent(name: string): Promise<void> {
    const r = await send(t, "GET", `${cms}/${name}`);
    assert.equal(r.status, 404, `${name} was stored: ${r.body}`);
  }

  async function assertData(name: string, data: Record<string, string>): Promise<void> {
    const r = await send(t, "GET", `${cms}/${name}`);
    assert.equal(r.status, 200, r.body);
    assert.deepEqual((JSON.parse(r.body) as { data?: unknown }).data, data);
  }

  describe("query parameters", () => {
    for (const [param, path] of [
      ["watch", `${cms}?watch=yes`],
      ["allowWatchBookmarks", `${cms}?watch=true&allowWatchBookmarks=maybe`],
      ["pretty", `${cms}?pretty=2`],
    ] as const) {
      it(`refuses ${path.split("?")[1] ?? ""} (not a Go boolean) with 400 naming ${param}`, async () => {
        const s = failure(await send(t, "GET", path, undefined, {}, 3000), 400, "BadRequest");
        assert.match(s.message, new RegExp(param));
        assert.equal(s.details?.causes?.[0]?.field, param);
      });
    }

    it("refuses force=yes on an apply with 400 and applies nothing", async () => {
      const name = `force-${run}`;
      const r = await send(t, "PATCH", `${cms}/${name}?fieldManager=t&force=yes`, `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\n`, { "Content-Type": "application/apply-patch+yaml" });
      assert.match(failure(r, 400, "BadRequest").message, /force/);
      await assertAbsent(name);
    });

    it("accepts the Python client's watch=True and streams watch events", async () => {
      const name = `pywatch-${run}`;
      await create(name);
      const r = await send(t, "GET", `${cms}?watch=True&fieldSelector=metadata.name%3D${name}&timeoutSeconds=1`);
      assert.equal(r.status, 200, r.body);
      const evs = events(r.body);
      assert.equal(evs[0]?.type, "ADDED");
      assert.equal((evs[0]?.object.metadata as { name: string }).name, name);
    });

    it("streams a watch on the legacy /api/v1/watch/ path instead of answering a list", async () => {
      const name = `legacy-${run}`;
      await create(name);
      const r = await send(t, "GET", `/api/v1/watch/namespaces/default/configmaps?fieldSelector=metadata.name%3D${name}&timeoutSeconds=1`);
      assert.equal(r.status, 200, r.body);
      const evs = events(r.body);
      assert.equal(evs.length, 1, r.body);
      assert.equal(evs[0]?.type, "ADDED");
      const one = await send(t, "GET", `/api/v1/watch/namespaces/default/configmaps/${name}?timeoutSeconds=1`);
      assert.equal(events(one.body)[0]?.type, "ADDED", one.body);
    });

    it("watches a single object whose name holds a comma without building a broken field selector", async () => {
      const r = await send(t, "GET", `${cms}/a,b?watch=1&timeoutSeconds=1`);
      assert.equal(r.status, 200, r.body);
      assert.deepEqual(events(r.body), []);
      const legacy = await send(t, "GET", `/api/v1/watch/namespaces/default/configmaps/a,b=c?timeoutSeconds=1`);
      assert.equal(legacy.status, 200, legacy.body);
      assert.deepEqual(events(legacy.body), []);
    });

    it("uses the first value of a repeated parameter, like Go's url.Values", async () => {
      const r = await send(t, "GET", `${cms}?labelSelector=a%3Db&labelSelector=c&limit=1&limit=x`);
      assert.equal(r.status, 200, r.body);
    });

    for (const v of ["abc", "1.5", "1e3", "9223372036854775808", "0x10", " 1"]) {
      it(`refuses limit=${v} with 400 naming limit`, async () => {
        const s = failure(await send(t, "GET", `${cms}?limit=${encodeURIComponent(v)}`), 400, "BadRequest");
        assert.match(s.message, /limit/);
      });
    }

    it("treats a negative limit as no limit, like kube-apiserver", async () => {
      const r = await send(t, "GET", `${cms}?limit=-1`);
      assert.equal(r.status, 200, r.body);
      assert.equal((JSON.parse(r.body) as { metadata: { continue?: string } }).metadata.continue, undefined);
    });

    for (const v of ["x", "-5", "1.5", "99999999999999999999"]) {
      it(`refuses timeoutSeconds=${v} on a watch with 400 naming timeoutSeconds`, async () => {
        const s = failure(await send(t, "GET", `${cms}?watch=1&timeoutSeconds=${v}`, undefined, {}, 3000), 400, "BadRequest");
        assert.match(s.message, /timeoutSeconds/);
      });
    }

    it("keeps a watch with a huge timeoutSeconds open (capped, not overflowing the timer)", async () => {
      const r = await send(t, "GET", `${cms}?watch=1&timeoutSeconds=9223372036854775807&fieldSelector=metadata.name%3Dnone`, undefined, {}, 1500);
      assert.equal(r.status, 200);
      // The client hung up after 1.5 s: the server had not closed the stream.
      assert.deepEqual(events(r.body), []);
    });

    for (const [verb, suffix] of [
      ["list", ""],
      ["watch", "&watch=1"],
      ["get", ""],
    ] as const) {
      for (const rv of ["abc", "-1", "1.0", "18446744073709551616", "18446744073709551615", "9223372036854775808"]) {
        it(`refuses resourceVersion=${rv} on a ${verb} with 400 Invalid value`, async () => {
          const path = verb === "get" ? `${cms}/nothing-${run}` : cms;
          const s = failure(await send(t, "GET", `${path}?resourceVersion=${rv}${suffix}`, undefined, {}, 3000), 400, "BadRequest");
          assert.match(s.message, /resourceVersion: Invalid value/);
          assert.equal(s.details?.causes?.[0]?.field, "resourceVersion");
          assert.equal(s.details?.causes?.[0]?.reason, "FieldValueInvalid");
        });
      }
    }

    it("answers a watch from a future resourceVersion with kube's 504 Too large resource version", async () => {
      for (const rv of ["9223372036854775807", "9007199254740993", "999999999999"]) {
        const r = await send(t, "GET", `${cms}?watch=1&resourceVersion=${rv}`, undefined, {}, 5000);
        assert.equal(r.status, 200, r.body);
        const evs = events(r.body);
        assert.equal(evs.length, 1, r.body);
        assert.equal(evs[0]?.type, "ERROR");
        const s = evs[0]?.object as unknown as KubeStatus;
        assert.equal(s.kind, "Status");
        assert.equal(s.code, 504);
        assert.equal(s.reason, "Timeout");
        assert.match(s.message, /Too large resource version/);
        assert.equal(s.details?.causes?.[0]?.reason, "ResourceVersionTooLarge");
      }
    });

    it("answers a list at a future resourceVersion with 504 Timeout ResourceVersionTooLarge", async () => {
      const s = failure(await send(t, "GET", `${cms}?resourceVersion=999999999999`), 504, "Timeout");
      assert.equal(s.details?.causes?.[0]?.reason, "ResourceVersionTooLarge");
    });

    for (const [label, query, fields] of [
      ["without a resourceVersion", "resourceVersionMatch=Exact", ["Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"]],
      ["with a continue token", "resourceVersionMatch=NotOlderThan&resourceVersion=1&continue=abc", ["Forbidden: resourceVersionMatch is forbidden when continue is provided"]],
      ["of an unknown value", "resourceVersionMatch=Newest&resourceVersion=1", ['Unsupported value: "Newest": supported values: "Exact", "NotOlderThan", ""']],
      ["Exact at resourceVersion 0", "resourceVersionMatch=Exact&resourceVersion=0", ['Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"']],
      ["on a watch", "watch=true&resourceVersionMatch=NotOlderThan&resourceVersion=1", ["Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"]],
    ] as const) {
      it(`refuses resourceVersionMatch ${label} with 422 like kube's ListOptions validation`, async () => {
        const s = failure(await send(t, "GET", `${cms}?${query}`), 422, "Invalid");
        assert.deepEqual(
          s.details?.causes?.map((c) => c.message),
          fields,
        );
        assert.ok(s.details?.causes?.every((c) => c.field === "resourceVersionMatch"));
      });
    }

    it("lists exactly as of a past revision with resourceVersionMatch=Exact, and at least as new with NotOlderThan", async () => {
      const name = `rvm-${run}`;
      const created = await send(t, "POST", cms, cm(name), json);
      assert.equal(created.status, 201, created.body);
      const before = (JSON.parse(created.body) as { metadata: { resourceVersion: string } }).metadata.resourceVersion;
      const del = await send(t, "DELETE", `${cms}/${name}`);
      assert.equal(del.status, 200, del.body);
      const names = (r: Reply) => (JSON.parse(r.body) as { items: Array<{ metadata: { name: string } }> }).items.map((i) => i.metadata.name);
      const exact = await send(t, "GET", `${cms}?resourceVersionMatch=Exact&resourceVersion=${before}`);
      assert.equal(exact.status, 200, exact.body);
      assert.ok(names(exact).includes(name), "the list at the creation revision holds the object deleted since");
      assert.equal((JSON.parse(exact.body) as { metadata: { resourceVersion: string } }).metadata.resourceVersion, before);
      const newer = await send(t, "GET", `${cms}?resourceVersionMatch=NotOlderThan&resourceVersion=${before}`);
      assert.equal(newer.status, 200, newer.body);
      assert.ok(!names(newer).includes(name), "NotOlderThan answers the current state");
    });

    it("percent-decodes the path as Go's net/http does: an escaped name finds the object, %2F splits segments, a bad escape is 400", async () => {
      const name = `pct-${run}`;
      const created = await send(t, "POST", cms, cm(name), json);
      assert.equal(created.status, 201, created.body);
      const escaped = [...name].map((ch) => `%${ch.charCodeAt(0).toString(16).padStart(2, "0")}`).join("");
      const got = await send(t, "GET", `${cms}/${escaped}`);
      assert.equal(got.status, 200, got.body);
      assert.equal((JSON.parse(got.body) as { metadata: { name: string } }).metadata.name, name);
      failure(await send(t, "GET", `${cms}/${name}%2Fstatus%2Fextra`), 404, "NotFound");
      const bad = failure(await send(t, "GET", `${cms}/%zz`), 400, "BadRequest");
      assert.match(bad.message, /invalid URL escape/);
      failure(await send(t, "GET", `${cms}/%C3%28`), 400, "BadRequest");
      failure(await send(t, "DELETE", `${cms}/a%00b`), 400, "BadRequest");
      assert.equal((await send(t, "DELETE", `${cms}/${escaped}`)).status, 200);
      await assertAbsent(name);
    });

    const token = (v: unknown) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");
    for (const [label, cont] of [
      ["not base64 JSON", "!!!"],
      ["JSON null", token("null")],
      ["an array", token([1, 2])],
      ["a fractional revision", token({ rv: 1.5, ns: "", n: "a" })],
      ["a string revision", token({ rv: "1", ns: "", n: "a" })],
      ["a negative revision", token({ rv: -3, ns: "", n: "a" })],
      ["a huge revision", token({ rv: 1e300, ns: "", n: "a" })],
      ["a numeric name", token({ rv: 1, ns: "", n: 7 })],
      ["a NUL in the namespace", token({ rv: 1, ns: "a\u0000b", n: "a" })],
      ["a lone surrogate in the name", token('{"rv":1,"ns":"","n":"\\ud800"}')],
    ] as const) {
      it(`refuses a continue token with ${label} with 400 continue key is not valid`, async () => {
        const s = failure(await send(t, "GET", `${cms}?limit=1&continue=${encodeURIComponent(cont)}`), 400, "BadRequest");
        assert.match(s.message, /continue key is not valid/);
      });
    }

    it("refuses fieldManager over 128 characters and dryRun other than All, storing nothing", async () => {
      const name = `opts-${run}`;
      const long = failure(await send(t, "POST", `${cms}?fieldManager=${"m".repeat(129)}`, cm(name), json), 422, "Invalid");
      assert.equal(long.details?.causes?.[0]?.field, "fieldManager");
      assert.equal(long.details?.causes?.[0]?.reason, "FieldValueTooLong");
      const ctl = failure(await send(t, "POST", `${cms}?fieldManager=a%01b`, cm(name), json), 422, "Invalid");
      assert.equal(ctl.details?.causes?.[0]?.field, "fieldManager");
      const dry = failure(await send(t, "POST", `${cms}?dryRun=Some`, cm(name), json), 422, "Invalid");
      assert.equal(dry.details?.causes?.[0]?.field, "dryRun");
      assert.equal(dry.details?.causes?.[0]?.reason, "FieldValueNotSupported");
      const fv = failure(await send(t, "POST", `${cms}?fieldValidation=Loud`, cm(name), json), 400, "BadRequest");
      assert.match(fv.message, /fieldValidation/);
      await assertAbsent(name);
    });

    it("refuses DELETE with an unknown propagationPolicy or a malformed gracePeriodSeconds and keeps the object", async () => {
      const name = `prop-${run}`;
      await create(name);
      const p = failure(await send(t, "DELETE", `${cms}/${name}?propagationPolicy=Sideways`), 422, "Invalid");
      assert.equal(p.details?.causes?.[0]?.field, "propagationPolicy");
      const g = failure(await send(t, "DELETE", `${cms}/${name}?gracePeriodSeconds=soon`), 400, "BadRequest");
      assert.match(g.message, /gracePeriodSeconds/);
      const o = failure(await send(t, "DELETE", `${cms}/${name}?orphanDependents=perhaps`), 400, "BadRequest");
      assert.match(o.message, /orphanDependents/);
      await assertData(name, { a: "b" });
      const ok = await send(t, "DELETE", `${cms}/${name}?propagationPolicy=Background&gracePeriodSeconds=0`);
      assert.equal(ok.status, 200, ok.body);
    });
  });

  describe("body limits", () => {
    it("refuses a create nested 100,000 deep with 400 before parsing, storing nothing", async () => {
      const name = `deep-${run}`;
      const body = `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"${name}"},"x":${nested(100_000)}}`;
      const s = failure(await send(t, "POST", cms, body, json), 400, "BadRequest");
      assert.match(s.message, /nest/);
      await assertAbsent(name);
    });

    it("refuses a create nested just past 1000 and accepts one nested 1000 deep", async () => {
      const name = `deep1000-${run}`;
      // Depth counts the object itself: {"x": [ ... ]} with 999 arrays is 1000 deep.
      const over = `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"${name}"},"x":${nested(1000)}}`;
      failure(await send(t, "POST", `${cms}?fieldValidation=Ignore`, over, json), 400, "BadRequest");
      const at = `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"${name}"},"x":${nested(999)}}`;
      const r = await send(t, "POST", `${cms}?fieldValidation=Ignore`, at, json);
      assert.equal(r.status, 201, r.body);
    });

    it("refuses deep updates, merge, JSON and strategic merge patches with 400 and leaves the object unchanged", async () => {
      const name = `deepw-${run}`;
      const cur = await create(name);
      const rv = (cur.metadata as { resourceVersion: string }).resourceVersion;
      const deep = nested(50_000);
      const put = `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"${name}","resourceVersion":"${rv}"},"data":{"a":"c"},"x":${deep}}`;
      failure(await send(t, "PUT", `${cms}/${name}`, put, json), 400, "BadRequest");
      failure(await send(t, "PATCH", `${cms}/${name}`, `{"data":{"a":"c"},"x":${deep}}`, { "Content-Type": "application/merge-patch+json" }), 400, "BadRequest");
      failure(await send(t, "PATCH", `${cms}/${name}`, `{"data":{"a":"c"},"x":${deep}}`, { "Content-Type": "application/strategic-merge-patch+json" }), 400, "BadRequest");
      failure(await send(t, "PATCH", `${cms}/${name}`, `[{"op":"add","path":"/x","value":${deep}}]`, { "Content-Type": "application/json-patch+json" }), 400, "BadRequest");
      await assertData(name, { a: "b" });
    });

    it("refuses deep apply patches (flow and block YAML) with 400", async () => {
      const name = `deepa-${run}`;
      const head = `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\n`;
      const flow = `${head}x: ${nested(50_000)}\n`;
      failure(await send(t, "PATCH", `${cms}/${name}?fieldManager=t`, flow, { "Content-Type": "application/apply-patch+yaml" }), 400, "BadRequest");
      let block = `${head}x:\n`;
      for (let i = 1; i <= 1500; i++) block += `${" ".repeat(i)}k:\n`;
      block += `${" ".repeat(1501)}v\n`;
      failure(await send(t, "PATCH", `${cms}/${name}?fieldManager=t`, block, { "Content-Type": "application/apply-patch+yaml" }), 400, "BadRequest");
      await assertAbsent(name);
    });

    it("answers a JSON patch that moves the document root into one of its children with 4xx, leaving the object unchanged", async () => {
      const name = `moveroot-${run}`;
      await create(name);
      for (const op of [`[{"op":"move","from":"","path":"/metadata"}]`, `[{"op":"copy","from":"","path":"/data/x"}]`, `[{"op":"move","from":"/data","path":"/data/a/b"}]`]) {
        const r = await send(t, "PATCH", `${cms}/${name}`, op, { "Content-Type": "application/json-patch+json" });
        assert.ok(r.status >= 400 && r.status < 500, `${op}: ${r.status} ${r.body}`);
      }
      await assertData(name, { a: "b" });
    });

    it("refuses a YAML alias bomb and a recursive alias in an apply patch with 400", async () => {
      const name = `alias-${run}`;
      let bomb = `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\ndata:\n  a: b\nx:\n  l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n`;
      for (let i = 1; i < 9; i++) bomb += `  l${i}: &l${i} [${Array(10).fill(`*l${i - 1}`).join(", ")}]\n`;
      const s = failure(await send(t, "PATCH", `${cms}/${name}?fieldManager=t`, bomb, { "Content-Type": "application/apply-patch+yaml" }), 400, "BadRequest");
      assert.match(s.message, /alias/i);
      const loop = `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\nx: &a [*a]\n`;
      failure(await send(t, "PATCH", `${cms}/${name}?fieldManager=t`, loop, { "Content-Type": "application/apply-patch+yaml" }), 400, "BadRequest");
      const loopCreate = `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\nx: &a {b: *a}\n`;
      failure(await send(t, "POST", cms, loopCreate, { "Content-Type": "application/yaml" }), 400, "BadRequest");
      await assertAbsent(name);
    });

    it("refuses NUL and lone surrogates in values and keys with 400 naming the field, storing nothing", async () => {
      const name = `nul-${run}`;
      const cases: Array<[string, string]> = [
        [`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"${name}"},"data":{"a":"x\\u0000y"}}`, "data.a"],
        [`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"${name}"},"data":{"\\ud800":"x"}}`, "data"],
        [`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"${name}","labels":{"k":"\\udfff"}},"data":{}}`, "metadata.labels.k"],
        [`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"${name}"},"binaryData":{"b":"AA=="},"x":["ok","\\u0000"]}`, "x[1]"],
      ];
      for (const [body, field] of cases) {
        const s = failure(await send(t, "POST", cms, body, json), 400, "BadRequest");
        assert.equal(s.details?.causes?.[0]?.field, field, s.message);
        assert.equal(s.details?.causes?.[0]?.reason, "FieldValueInvalid");
      }
      await assertAbsent(name);
      const yaml = `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\ndata:\n  a: "x\\0y"\n`;
      failure(await send(t, "PATCH", `${cms}/${name}?fieldManager=t`, yaml, { "Content-Type": "application/apply-patch+yaml" }), 400, "BadRequest");
      await assertAbsent(name);
      await create(name);
      failure(await send(t, "PATCH", `${cms}/${name}`, `{"data":{"a":"\\u0000"}}`, { "Content-Type": "application/merge-patch+json" }), 400, "BadRequest");
      failure(await send(t, "PATCH", `${cms}/${name}`, `[{"op":"add","path":"/data/k\\u0000","value":"v"}]`, { "Content-Type": "application/json-patch+json" }), 400, "BadRequest");
      await assertData(name, { a: "b" });
    });
  });

  describe("DeleteOptions", () => {
    for (const [label, body] of [
      ["null", "null"],
      ["a string", '"x"'],
      ["an array", "[]"],
      ["string preconditions", '{"preconditions":"x"}'],
      ["a numeric precondition uid", '{"preconditions":{"uid":5}}'],
      ["a string gracePeriodSeconds", '{"gracePeriodSeconds":"x"}'],
      ["an unknown propagationPolicy", '{"propagationPolicy":"Sideways"}'],
      ["dryRun not a list", '{"dryRun":"All"}'],
      ["a wrong kind", '{"kind":"Pod","apiVersion":"v1"}'],
    ] as const) {
      it(`refuses DELETE with a body of ${label} with 4xx and keeps the object`, async () => {
        const name = `del-${label.replace(/[^a-z]/g, "")}-${run}`;
        await create(name);
        const r = await send(t, "DELETE", `${cms}/${name}`, body, json);
        assert.ok(r.status === 400 || r.status === 422, `${r.status} ${r.body}`);
        failure(r, r.status);
        await assertData(name, { a: "b" });
      });
    }

    it("still deletes with a valid DeleteOptions body", async () => {
      const name = `del-ok-${run}`;
      await create(name);
      const r = await send(t, "DELETE", `${cms}/${name}`, JSON.stringify({ kind: "DeleteOptions", apiVersion: "v1", propagationPolicy: "Foreground", preconditions: { uid: null } }), json);
      assert.equal(r.status, 200, r.body);
      await assertAbsent(name);
    });

    it("refuses DELETE of a collection with a malformed DeleteOptions body and deletes nothing", async () => {
      const name = `delc-${run}`;
      await create(name);
      const r = await send(t, "DELETE", `${cms}?fieldSelector=metadata.name%3D${name}`, "null", json);
      failure(r, 400, "BadRequest");
      await assertData(name, { a: "b" });
    });
  });

  describe("Warning header", () => {
    it("sends a valid, escaped Warning header for an unknown field with control and non-ASCII characters", async () => {
      const name = `warn-${run}`;
      const body = JSON.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name }, data: { a: "b" }, "ünknown\u0001\n\"q\"": 1 });
      const r = await send(t, "POST", `${cms}?fieldValidation=Warn`, body, json);
      assert.equal(r.status, 201, r.body);
      const warnings: string[] = [];
      for (let i = 0; i < r.rawHeaders.length; i += 2) if (r.rawHeaders[i]?.toLowerCase() === "warning") warnings.push(r.rawHeaders[i + 1] ?? "");
      assert.equal(warnings.length, 1, JSON.stringify(r.rawHeaders));
      assert.equal(warnings[0], '299 - "unknown field \\"?nknown  \\"q\\"\\""');
    });

    it("truncates warnings past kube's 4 KiB budget", async () => {
      const name = `warnlong-${run}`;
      const extra: Record<string, number> = {};
      for (let i = 0; i < 10; i++) extra[`${String(i)}${"u".repeat(1000)}`] = 1;
      const r = await send(t, "POST", `${cms}?fieldValidation=Warn`, cm(name, extra), json);
      assert.equal(r.status, 201, r.body);
      const warnings: string[] = [];
      for (let i = 0; i < r.rawHeaders.length; i += 2) if (r.rawHeaders[i]?.toLowerCase() === "warning") warnings.push(r.rawHeaders[i + 1] ?? "");
      assert.equal(warnings.length, 10);
      const total = warnings.reduce((n, w) => n + Buffer.byteLength(w, "latin1"), 0);
      assert.ok(total <= 10 * 300, `warnings total ${String(total)} bytes`);
      for (const w of warnings) assert.match(w, /^299 - "[\x20-\x7e]*"$/);
    });
  });

  describe("unexpected errors", () => {
    it("tags every response with an Audit-Id", async () => {
      const r = await send(t, "GET", `${cms}/nothing-${run}`);
      assert.equal(r.status, 404);
      assert.match(String(r.headers["audit-id"]), /^[0-9a-f-]{36}$/);
    });
  });
});
