#!/usr/bin/env bash
# Obtains promtool from Debian's prometheus package without installing it,
# so the alert rules can be checked (`promtool check rules`). Prints the path
# of the promtool binary on stdout (everything else goes to stderr).
# Idempotent: reuses an earlier extraction that still runs. A promtool given
# in PROMTOOL, or one on PATH, is used as it is. Needs apt-get and dpkg-deb;
# refreshing the package lists on a fresh machine needs root. Never prompts.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp_dir="${repo_root}/.tmp"
dest="${tmp_dir}/prometheus"
binary="${dest}/usr/bin/promtool"
export DEBIAN_FRONTEND=noninteractive

fail() {
  echo "promtool: $*" >&2
  exit 1
}

runs() {
  [[ -x "$1" ]] && "$1" --version >/dev/null 2>&1
}

if [[ -n "${PROMTOOL:-}" ]]; then
  runs "${PROMTOOL}" || fail "PROMTOOL=${PROMTOOL} is not a runnable promtool"
  echo "${PROMTOOL}"
  exit 0
fi
if on_path="$(command -v promtool 2>/dev/null)" && runs "${on_path}"; then
  echo "${on_path}"
  exit 0
fi
if runs "${binary}"; then
  echo "${binary}"
  exit 0
fi

# shellcheck source=hack/lib/debian-package.sh
source "${repo_root}/hack/lib/debian-package.sh"
promtool_in() { runs "$1/usr/bin/promtool"; }
fetch_debian_package prometheus "${dest}" promtool_in "set PROMTOOL to a promtool binary"

runs "${binary}" || fail "${binary} missing or not runnable after extraction"
echo "${binary}"
