#!/usr/bin/env bash
# Obtains Debian's kubernetes-client (kubectl 1.20) without installing it, so
# compatibility tests can run the old client beside /usr/bin/kubectl (1.32).
# Prints the path of the extracted kubectl binary on stdout (everything else
# goes to stderr). Idempotent: reuses an earlier extraction that still runs
# and reports 1.20. Needs apt-get and dpkg-deb; refreshing the package lists
# on a fresh machine needs root. Never prompts.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp_dir="${repo_root}/.tmp"
dest="${tmp_dir}/kubectl-1.20"
binary="${dest}/usr/bin/kubectl"
export DEBIAN_FRONTEND=noninteractive

fail() {
  echo "kubectl-1.20: $*" >&2
  exit 1
}

# The client version a binary reports, e.g. v1.20.2; empty when it cannot run.
client_version() {
  "$1" version --client -o json 2>/dev/null | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' | head -n 1
}

is_120() {
  [[ -x "$1" ]] && [[ "$(client_version "$1")" == v1.20.* ]]
}

if is_120 "${binary}"; then
  echo "${binary}"
  exit 0
fi

# shellcheck source=hack/lib/debian-package.sh
source "${repo_root}/hack/lib/debian-package.sh"
kubectl_120_in() { is_120 "$1/usr/bin/kubectl" || { echo "kubectl-1.20: the downloaded kubectl reports '$(client_version "$1/usr/bin/kubectl")', not 1.20" >&2; return 1; }; }
fetch_debian_package kubernetes-client "${dest}" kubectl_120_in "point KUBECTL_LEGACY at a kubectl 1.20 binary (Debian bookworm ships 1.20)"

is_120 "${binary}" || fail "${binary} missing or not runnable after extraction"
echo "${binary}"
