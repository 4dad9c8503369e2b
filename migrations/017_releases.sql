-- Signed releases and the version store (controllers/release, lib/state/releases.ts,
-- lib/state/artifacts.ts, docs/releases.md).

-- The release trust set the controller accepted per cluster: the first
-- FabricCluster spec.releaseTrust as written, later ones only with a rotation
-- envelope signed by the threshold of the set accepted here.
CREATE TABLE release_trust (
  cluster      text PRIMARY KEY,
  trust        jsonb NOT NULL,                       -- {keys: [{keyId, publicKey (base64 SPKI)}], threshold}
  how          text NOT NULL CHECK (how IN ('initial', 'rotation')),
  accepted_at  timestamptz NOT NULL DEFAULT now()
);

-- Every Release the controller checked, with the outcome. Only a row with
-- verified = true (signatures, manifest and artifacts all checked) may be
-- served or assigned.
CREATE TABLE releases (
  name            text PRIMARY KEY,
  uid             text NOT NULL,
  cluster         text NOT NULL,
  component       text NOT NULL,
  version         text NOT NULL,
  payload_sha256  text NOT NULL,
  verified        boolean NOT NULL,
  reason          text NOT NULL,
  message         text NOT NULL DEFAULT '',
  signed_by       text[] NOT NULL DEFAULT '{}',
  expires         timestamptz,
  artifacts       jsonb NOT NULL DEFAULT '[]',       -- [{os, arch, length, sha256}] of the verified manifest
  updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX releases_cluster_component ON releases (cluster, component);
-- One payload per version: two verified releases of the same version must be the same bytes.
CREATE UNIQUE INDEX releases_one_verified_version ON releases (cluster, component, version) WHERE verified;

-- The highest version ever verified per (cluster, component): a lower one
-- offered later is a rollback attack. Kept when the Release is deleted.
CREATE TABLE release_high_water (
  cluster    text NOT NULL,
  component  text NOT NULL,
  version    text NOT NULL,
  PRIMARY KEY (cluster, component)
);

-- The version store's index: content-addressed files under
-- <state dir>/artifacts/sha256/; a file counts only once its row exists.
CREATE TABLE artifacts (
  sha256       text PRIMARY KEY CHECK (sha256 ~ '^[a-f0-9]{64}$'),
  length       bigint NOT NULL CHECK (length >= 0),
  uploaded_at  timestamptz NOT NULL DEFAULT now(),
  uploaded_by  text NOT NULL
);

-- Which node may fetch which artifact of which release (filled by the
-- ReleaseChannel controller from the rollout's assignments).
CREATE TABLE node_release_assignments (
  node_id       text NOT NULL,
  release_name  text NOT NULL,
  sha256        text NOT NULL,
  PRIMARY KEY (node_id, release_name, sha256)
);
CREATE INDEX node_release_assignments_fetch ON node_release_assignments (node_id, sha256);
