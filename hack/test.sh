#!/usr/bin/env bash
# The whole suite: strict type check, generated-file drift, then mocha
# (unit, integration against real PostgreSQL + real kubectl, e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/ensure-kubectl.sh
echo "== type check"
npx tsc --noEmit -p tsconfig.json
echo "== generated files"
bash hack/verify.sh
echo "== tests"
npx mocha "$@"
