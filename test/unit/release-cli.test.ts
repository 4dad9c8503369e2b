/**
 * fabricctl release keygen / sign / verify / rotate-trust as an operator runs
 * them (the real binary, offline): a key file 0600 that is never overwritten,
 * a signed Release that verifies against the printed releaseTrust and is
 * refused with the reason against another key or with a changed artifact,
 * and a rotation that the verifier accepts only from the old threshold.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { verifyTrustRotation, type TrustSet } from "../../lib/release/index.js";
import { fabricctl } from "../support/controlplane.js";

describe("fabricctl release (offline)", function () {
  this.timeout(120_000);
  let dir: string;
  const f = (n: string) => join(dir, n);
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "afg-cli-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("keygen writes a 0600 key once and prints releaseTrust; sign + verify accept, another key or a changed file is refused", async () => {
    const a = await fabricctl(["release", "keygen", "--out", f("a.pem")]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(statSync(f("a.pem")).mode & 0o777, 0o600);
    assert.equal((await fabricctl(["release", "keygen", "--out", f("a.pem")])).code, 2);
    writeFileSync(f("trust-a.yaml"), a.stdout.slice(a.stdout.indexOf("releaseTrust:")));
    const b = await fabricctl(["release", "keygen", "--out", f("b.pem")]);
    writeFileSync(f("trust-b.yaml"), b.stdout.slice(b.stdout.indexOf("releaseTrust:")));
    writeFileSync(f("art"), "artifact bytes");
    const s = await fabricctl(["release", "sign", "--cluster", "c1", "--component", "rdp-worker", "--version", "1.2.3", "--artifact", `linux/amd64=${f("art")}`, "--key", f("a.pem"), "--out", f("rel.yaml")]);
    assert.equal(s.code, 0, s.stderr);
    const ok = await fabricctl(["release", "verify", f("rel.yaml"), f("art"), "--trust", f("trust-a.yaml")]);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /^verified: rdp-worker 1\.2\.3/);
    const other = await fabricctl(["release", "verify", f("rel.yaml"), "--trust", f("trust-b.yaml")]);
    assert.equal(other.code, 1);
    assert.match(other.stdout, /^refused: UnknownKey/);
    writeFileSync(f("art"), "artifact byteS");
    const changed = await fabricctl(["release", "verify", f("rel.yaml"), f("art"), "--trust", f("trust-a.yaml")]);
    assert.equal(changed.code, 1);
    assert.match(changed.stdout, /^refused: .* is not an artifact of this release/);
  });

  it("rotate-trust signs the new set with the current keys; the verifier takes it from the old set", async () => {
    const r = await fabricctl(["release", "rotate-trust", "--new", f("trust-b.yaml"), "--key", f("a.pem")]);
    assert.equal(r.code, 0, r.stderr);
    const out = parseYaml(r.stdout) as { releaseTrust: TrustSet & { rotation: unknown } };
    const oldSet = (parseYaml(readFileSync(f("trust-a.yaml"), "utf8")) as { releaseTrust: TrustSet }).releaseTrust;
    const newSet = (parseYaml(readFileSync(f("trust-b.yaml"), "utf8")) as { releaseTrust: TrustSet }).releaseTrust;
    verifyTrustRotation(oldSet, newSet, out.releaseTrust.rotation);
    assert.throws(() => verifyTrustRotation(newSet, newSet, out.releaseTrust.rotation), /RotationRefused|not signed/);
  });
});
