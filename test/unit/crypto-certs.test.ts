import assert from "node:assert/strict";
import { createPrivateKey, generateKeyPairSync, X509Certificate, type KeyObject } from "node:crypto";
import { createEcCertificateAuthority, issueEcServingCertificate, keyMatchesCertificate } from "../../lib/crypto/ec-certs.js";
import { createCertificateAuthority, issueServingCertificate, randomSerial, type CertBundle } from "../../lib/crypto/pki.js";
import { bool, octets, seq } from "../../lib/crypto/der.js";
import {
  CertificateRejected,
  createCsr,
  CsrError,
  extension,
  issueNodeCertificate,
  keyIdOf,
  OID,
  parseCsr,
  publicKeyFingerprint,
  signCertificate,
  subjectName,
  verifyNodeCertificate,
} from "../../lib/crypto/x509.js";

/** A self-signed Ed25519 CA built with the shared certificate builder (no other module makes one). */
function ed25519Ca(): { certPem: string; key: KeyObject } {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const spkiDer = publicKey.export({ format: "der", type: "spki" });
  const subject = subjectName("ed25519 test CA");
  const certPem = signCertificate(
    {
      serialHex: randomSerial(),
      issuer: subject,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 86_400_000),
      subject,
      spkiDer,
      extensions: [extension(OID.basicConstraints, true, seq(bool(true))), extension(OID.subjectKeyId, false, octets(keyIdOf(spkiDer)))],
    },
    privateKey,
  );
  return { certPem, key: privateKey };
}

/** A node certificate for a fresh P-256 key, valid from a second ago for an hour. */
function nodeCertificate(ca: { certPem: string; key: KeyObject }, serialHex: string): { pem: string; publicKey: KeyObject } {
  const { publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const now = Date.now();
  const pem = issueNodeCertificate({
    caCertPem: ca.certPem,
    caKey: ca.key,
    spkiDer: publicKey.export({ format: "der", type: "spki" }),
    cluster: "c1",
    node: "n1",
    serialHex,
    notBefore: new Date(now - 1000),
    notAfter: new Date(now + 3_600_000),
  });
  return { pem, publicKey };
}

describe("lib/crypto certificates", () => {
  const ecCa = createEcCertificateAuthority("ec test CA");
  const rsaCa: CertBundle = createCertificateAuthority("rsa test CA");
  const edCa = ed25519Ca();
  const ecSigner = { certPem: ecCa.certPem, key: createPrivateKey(ecCa.keyPem) };
  const cas: Array<{ kind: string; certPem: string; key: KeyObject }> = [
    { kind: "ECDSA", ...ecSigner },
    { kind: "RSA", certPem: rsaCa.certPem, key: createPrivateKey(rsaCa.keyPem) },
    { kind: "Ed25519", certPem: edCa.certPem, key: edCa.key },
  ];

  describe("certificate authorities", () => {
    it("an ECDSA CA is a self-signed CA whose key matches its certificate", () => {
      const cert = new X509Certificate(ecCa.certPem);
      assert.equal(cert.ca, true);
      assert.equal(cert.subject, "CN=ec test CA");
      assert.equal(cert.issuer, cert.subject);
      assert.ok(cert.verify(cert.publicKey));
      assert.ok(keyMatchesCertificate(ecCa.certPem, ecCa.keyPem));
    });
  });

  describe("issueNodeCertificate", () => {
    for (const ca of cas) {
      it(`a node certificate signed by an ${ca.kind} CA verifies and names its cluster and node`, () => {
        const { pem, publicKey } = nodeCertificate(ca, "01ab");
        const cert = new X509Certificate(pem);
        const caCert = new X509Certificate(ca.certPem);
        assert.ok(cert.checkIssued(caCert), "authority key id and issuer name match the CA");
        const v = verifyNodeCertificate(cert, caCert, new Date());
        assert.equal(v.cluster, "c1");
        assert.equal(v.node, "n1");
        assert.equal(v.serial, "01ab");
        assert.equal(v.publicKeyFingerprint, publicKeyFingerprint(publicKey));
        assert.equal(cert.subject, "O=c1\nCN=n1");
        assert.equal(cert.ca, false);
        assert.match(cert.subjectAltName ?? "", /DNS:n1\.c1\.fabric\.internal/);
        assert.deepEqual([...(cert.keyUsage ?? [])].sort(), ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]);
      });
    }

    it("a node certificate is rejected by another CA", () => {
      const { pem } = nodeCertificate(ecSigner, "02");
      assert.throws(() => verifyNodeCertificate(new X509Certificate(pem), new X509Certificate(rsaCa.certPem), new Date()), CertificateRejected);
    });
  });

  describe("serving certificates", () => {
    for (const ca of [
      { kind: "ECDSA", bundle: ecCa },
      { kind: "RSA", bundle: rsaCa },
    ]) {
      it(`an ECDSA serving certificate signed by an ${ca.kind} CA verifies and carries its names and addresses`, () => {
        const s = issueEcServingCertificate(ca.bundle, "srv", ["localhost", "a.example"], ["127.0.0.1", "::1"]);
        const cert = new X509Certificate(s.certPem);
        const caCert = new X509Certificate(ca.bundle.certPem);
        assert.ok(cert.checkIssued(caCert));
        assert.ok(cert.verify(caCert.publicKey));
        assert.equal(cert.ca, false);
        assert.equal(cert.subject, "CN=srv");
        assert.equal(cert.subjectAltName, "DNS:localhost, DNS:a.example, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1");
        assert.deepEqual(cert.keyUsage, ["1.3.6.1.5.5.7.3.1"]);
        assert.ok(keyMatchesCertificate(s.certPem, s.keyPem));
      });
    }

    it("an RSA serving certificate from node-forge verifies against its CA", () => {
      const s = issueServingCertificate(rsaCa, "srv", ["localhost"], ["10.1.2.3"]);
      const cert = new X509Certificate(s.certPem);
      assert.ok(cert.verify(new X509Certificate(rsaCa.certPem).publicKey));
      assert.equal(cert.subjectAltName, "DNS:localhost, IP Address:10.1.2.3");
      assert.ok(new Date(cert.validTo).getTime() > Date.now() + 364 * 86_400_000);
    });
  });

  describe("certificate requests", () => {
    for (const kind of ["ec", "ed25519", "rsa"] as const) {
      it(`a ${kind} request parses, verifies and names its key and common name`, () => {
        const { privateKey, publicKey } =
          kind === "ec" ? generateKeyPairSync("ec", { namedCurve: "P-256" }) : kind === "rsa" ? generateKeyPairSync("rsa", { modulusLength: 2048 }) : generateKeyPairSync("ed25519");
        const parsed = parseCsr(createCsr(privateKey, publicKey, "host-1"));
        assert.equal(parsed.commonName, "host-1");
        assert.equal(parsed.fingerprint, publicKeyFingerprint(publicKey));
      });
    }

    it("a request signed by another key is refused", () => {
      const a = generateKeyPairSync("ec", { namedCurve: "P-256" });
      const b = generateKeyPairSync("ec", { namedCurve: "P-256" });
      assert.throws(() => parseCsr(createCsr(b.privateKey, a.publicKey, "host-1")), CsrError);
    });
  });
});
