-- Enrollment and node identity (issue 4): join tokens (hash only), join
-- requests, node memberships and their certificates (public halves only;
-- private keys never leave the host). Written only through lib/state.

-- One row per JoinToken. The raw token lives only in a Secret; here only the
-- SHA-256 of its secret part. `used` changes in the same transaction as the
-- checks, under the row lock, so it can never pass max_uses.
CREATE TABLE join_tokens (
  name          text PRIMARY KEY,
  uid           text NOT NULL,
  token_id      text NOT NULL UNIQUE,
  secret_hash   bytea NOT NULL,
  cluster       text NOT NULL,
  expires_at    timestamptz NOT NULL,
  max_uses      int NOT NULL CHECK (max_uses >= 1),
  used          int NOT NULL DEFAULT 0,
  allowed_roles text[] NOT NULL DEFAULT '{}',
  auto_approve  boolean NOT NULL DEFAULT false,
  node_group    text,
  revoked_at    timestamptz,
  expired_at    timestamptz,                 -- when the controller recorded the expiry (audited once)
  last_used_at  timestamptz,
  created_at    timestamptz NOT NULL DEFAULT now(),
  CHECK (used <= max_uses)
);

-- One row per JoinRequest, created by the enrollment API with the token use.
-- public_key_fingerprint is unique: one key, one request, one cluster (a
-- replayed enrollment finds its request instead of making another).
CREATE TABLE join_requests (
  name                   text PRIMARY KEY,
  cluster                text NOT NULL,
  token_name             text NOT NULL,
  node_name              text NOT NULL,
  host_fingerprint       text NOT NULL,
  public_key_fingerprint text NOT NULL UNIQUE,
  public_key_der         bytea NOT NULL,
  csr_pem                text NOT NULL,
  capabilities           text[] NOT NULL DEFAULT '{}',
  requested_roles        text[] NOT NULL DEFAULT '{}',
  facts                  jsonb NOT NULL DEFAULT '{}',
  node_group             text,
  auto_approve           boolean NOT NULL DEFAULT false,
  state                  text NOT NULL DEFAULT 'Pending' CHECK (state IN ('Pending', 'Approved', 'Denied')),
  reason                 text,
  fabric_node            text,
  certificate_pem        text,
  decided_at             timestamptz,
  created_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX join_requests_decided ON join_requests (decided_at) WHERE decided_at IS NOT NULL;

-- One row per FabricNode: one host's membership in one cluster.
CREATE TABLE nodes (
  name             text PRIMARY KEY,           -- FabricNode name: <cluster>.<node name>
  cluster          text NOT NULL,
  node_name        text NOT NULL,
  host_fingerprint text NOT NULL,
  membership       text NOT NULL DEFAULT 'Active' CHECK (membership IN ('Active', 'Disabled', 'Revoked')),
  join_request     text,
  capabilities     text[] NOT NULL DEFAULT '{}',
  facts            jsonb NOT NULL DEFAULT '{}',
  node_group       text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (cluster, node_name)
);

-- Certificates issued to nodes. Exactly one 'active' row per node; renewal
-- supersedes the previous one; revocation is final. The agent API checks the
-- presented serial here on every request.
CREATE TABLE node_identities (
  serial                 text PRIMARY KEY,
  node                   text NOT NULL REFERENCES nodes (name) ON DELETE CASCADE,
  cluster                text NOT NULL,
  public_key_fingerprint text NOT NULL,
  not_before             timestamptz NOT NULL,
  not_after              timestamptz NOT NULL,
  status                 text NOT NULL CHECK (status IN ('active', 'superseded', 'revoked')),
  issued_at              timestamptz NOT NULL DEFAULT now(),
  superseded_at          timestamptz,
  revoked_at             timestamptz
);
CREATE UNIQUE INDEX node_identities_one_active ON node_identities (node) WHERE status = 'active';
CREATE INDEX node_identities_node ON node_identities (node);
