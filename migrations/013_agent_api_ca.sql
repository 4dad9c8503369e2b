-- The agent API's certificate authority, one per database: every
-- control-plane process on this database issues its agent API serving
-- certificate from it, so an agent that pinned its hash (--ca-hash) can talk
-- to any of them. The private key is sealed under the KEK like cluster keys
-- (lib/crypto/kek.ts), bound to this row by the CA hash. Written once, by
-- whichever process starts first (INSERT ... ON CONFLICT DO NOTHING).
CREATE TABLE agent_api_ca (
  id           smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
  cert_pem     text NOT NULL,
  ca_hash      text NOT NULL,                  -- sha256:<hex> of the SubjectPublicKeyInfo: the --ca-hash value
  kek_id       text NOT NULL,
  nonce        bytea NOT NULL,
  ciphertext   bytea NOT NULL,                 -- sealed PKCS#8 DER, GCM tag appended
  origin       text NOT NULL CHECK (origin IN ('generated', 'imported')),
  created_by   text NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now()
);
