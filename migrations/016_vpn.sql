-- VPN connections: desired state, fenced single-active leases and their
-- grant history (lib/state/vpn.ts, docs/vpn.md).

-- A VPNConnection's intent as the controller projected it. `connection` is
-- "<namespace>/<name>"; the namespace is the organization.
CREATE TABLE vpn_connections (
  connection       text PRIMARY KEY,
  namespace        text NOT NULL,
  name             text NOT NULL,
  cluster          text NOT NULL,
  mode             text NOT NULL CHECK (mode IN ('Exit', 'Connector')),
  allowed_nodes    text[] NOT NULL,
  routes           jsonb NOT NULL DEFAULT '[]',
  lease_ttl_ms     integer NOT NULL CHECK (lease_ttl_ms BETWEEN 1000 AND 3600000),
  secret_name      text,                       -- credentialSecretRef.name, same namespace
  secret_key       text,
  enabled          boolean NOT NULL,
  -- Whether the spec validated (an invalid connection grants nobody).
  valid            boolean NOT NULL DEFAULT true,
  -- The allowed nodes the controller last found eligible (a change re-signs their snapshots).
  eligible_nodes   text[] NOT NULL DEFAULT '{}',
  observed_fence   bigint NOT NULL DEFAULT 0,
  updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX vpn_connections_cluster ON vpn_connections (cluster);
CREATE INDEX vpn_connections_allowed ON vpn_connections USING gin (allowed_nodes);

-- One lease row per connection, kept after the connection is deleted so a
-- re-created connection of the same name never reuses a token. The token
-- comes from this row's lock (token + 1), never from a sequence; expiry is
-- judged by the database clock.
CREATE TABLE vpn_leases (
  connection   text PRIMARY KEY,
  holder       text,
  token        bigint NOT NULL DEFAULT 0 CHECK (token >= 0),
  acquired_at  timestamptz,
  renewed_at   timestamptz,
  expires_at   timestamptz,
  renewals     integer NOT NULL DEFAULT 0,
  CHECK ((holder IS NULL) = (expires_at IS NULL))
);
CREATE INDEX vpn_leases_expiry ON vpn_leases (expires_at) WHERE holder IS NOT NULL;

-- Every grant, open until released, expired, fenced or revoked.
CREATE TABLE vpn_grants (
  id          bigserial PRIMARY KEY,
  connection  text NOT NULL,
  token       bigint NOT NULL,
  holder      text NOT NULL,
  granted_at  timestamptz NOT NULL,
  ended_at    timestamptz,
  end_reason  text CHECK (end_reason IN ('released', 'expired', 'fenced', 'ineligible')),
  renewals    integer NOT NULL DEFAULT 0,
  CHECK ((ended_at IS NULL) = (end_reason IS NULL)),
  UNIQUE (connection, token)
);
CREATE UNIQUE INDEX vpn_grants_one_open ON vpn_grants (connection) WHERE ended_at IS NULL;
-- The controller's change feed reads grants ended since its last pass.
CREATE INDEX vpn_grants_ended ON vpn_grants (ended_at);
