#!/usr/bin/env bash
# Fails when the files generated from schemas/ differ from what is checked in:
# runs the generator, then checks for modified and for untracked generated
# files. Fix a failure with `make generate` and commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."

generated=(crds apiserver/generated lib/api/types.generated.ts docs/api-reference.md)

npx tsx hack/generate.ts >/dev/null

if ! git diff --exit-code --stat -- "${generated[@]}"; then
  echo >&2
  echo "verify: generated files are out of date with schemas/ (diff above)." >&2
  echo "verify: run 'make generate' and commit the result." >&2
  exit 1
fi

untracked="$(git status --porcelain --untracked-files=all -- "${generated[@]}" | grep '^??' || true)"
if [[ -n "${untracked}" ]]; then
  echo "${untracked}" >&2
  echo >&2
  echo "verify: generated files are not tracked by git (listed above)." >&2
  echo "verify: run 'make generate' and add the new files." >&2
  exit 1
fi

echo "verify: generated files are up to date"
