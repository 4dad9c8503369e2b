-- Tables of the first controllers (controllers/fabriccluster, controllers/nodegroup)
-- and the audit chain (lib/audit). Written only through lib/state, inside
-- PgAuthority.runFenced transactions, each change with its audit row.

-- One row per FabricCluster: the projected intent plus the public halves of
-- its keys. Private keys live in cluster_keys, encrypted.
CREATE TABLE clusters (
  name                     text PRIMARY KEY,
  uid                      text NOT NULL,
  generation               bigint NOT NULL,
  spec                     jsonb NOT NULL,
  ca_cert_pem              text NOT NULL,
  ca_fingerprint           text NOT NULL,
  snapshot_public_key      text NOT NULL,      -- raw Ed25519 public key, base64
  snapshot_key_id          text NOT NULL,
  snapshot_key_fingerprint text NOT NULL,
  created_at               timestamptz NOT NULL DEFAULT now(),
  updated_at               timestamptz NOT NULL DEFAULT now()
);

-- Private keys, sealed with AES-256-GCM under the key-encryption key (KEK).
-- aad binds a ciphertext to its row (cluster, kind, key_version), so a
-- ciphertext copied to another row does not decrypt. kek_id names the KEK
-- (first 16 hex digits of its SHA-256) so a wrong KEK is reported as such.
CREATE TABLE cluster_keys (
  cluster      text NOT NULL REFERENCES clusters (name) ON DELETE CASCADE,
  kind         text NOT NULL CHECK (kind IN ('ca', 'snapshot')),
  key_version  int NOT NULL DEFAULT 1,
  kek_id       text NOT NULL,
  nonce        bytea NOT NULL,
  ciphertext   bytea NOT NULL,                 -- GCM ciphertext followed by the 16-byte tag
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (cluster, kind, key_version)
);

-- One row per NodeGroup with the result of the tree validation.
CREATE TABLE node_groups (
  name        text PRIMARY KEY,
  uid         text NOT NULL,
  cluster     text NOT NULL,
  parent      text,
  generation  bigint NOT NULL,
  ready       boolean NOT NULL,
  reason      text NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX node_groups_cluster ON node_groups (cluster);

-- Append-only audit chain: hash = sha256(canonical JSON of the row's fields
-- including prev_hash). Appends are serialised by an advisory transaction lock.
CREATE TABLE audit_events (
  id          bigint PRIMARY KEY,
  at          timestamptz NOT NULL,
  actor       text NOT NULL,
  term        bigint NOT NULL,
  action      text NOT NULL,
  object_kind text NOT NULL,
  object_name text NOT NULL,
  cluster     text,
  details     jsonb NOT NULL,
  prev_hash   text NOT NULL,
  hash        text NOT NULL UNIQUE
);
CREATE SEQUENCE audit_events_id_seq OWNED BY audit_events.id;

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_events is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_events_no_update_delete BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
