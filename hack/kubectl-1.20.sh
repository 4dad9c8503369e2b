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

command -v apt-get >/dev/null 2>&1 || fail "apt-get not found: Debian's kubernetes-client can only be fetched on Debian or Ubuntu"
command -v dpkg-deb >/dev/null 2>&1 || fail "dpkg-deb not found"

mkdir -p "${tmp_dir}"
download_dir="$(mktemp -d "${tmp_dir}/kubectl-deb.XXXXXX")"
partial=""
cleanup() {
  rm -rf "${download_dir}"
  if [[ -n "${partial}" ]]; then rm -rf "${partial}"; fi
}
trap cleanup EXIT

fetch() {
  (cd "${download_dir}" && apt-get download -q kubernetes-client >&2)
}

if ! fetch; then
  # A fresh machine has no (or stale) package lists.
  if [[ "$(id -u)" -ne 0 ]]; then
    fail "apt-get download kubernetes-client failed and refreshing the package lists needs root; run 'sudo apt-get update' and retry, or point KUBECTL_LEGACY at a kubectl 1.20 binary"
  fi
  echo "kubectl-1.20: refreshing package lists (apt-get update)" >&2
  apt-get update -q >&2 || fail "apt-get update failed"
  fetch || fail "apt-get download kubernetes-client failed (is the package in this distribution's repositories? Debian bookworm ships 1.20)"
fi

deb="$(find "${download_dir}" -maxdepth 1 -name 'kubernetes-client_*.deb' | head -n 1)"
[[ -n "${deb}" ]] || fail "apt-get download produced no kubernetes-client package"

# Extract beside the destination and move it into place, so an interrupted run
# never leaves a half-extracted binary that a later run would reuse.
partial="$(mktemp -d "${dest}.partial.XXXXXX")"
dpkg-deb -x "${deb}" "${partial}"
is_120 "${partial}/usr/bin/kubectl" || fail "the downloaded kubernetes-client is not kubectl 1.20 (reports '$(client_version "${partial}/usr/bin/kubectl")')"
rm -rf "${dest}"
mv "${partial}" "${dest}"
partial=""

is_120 "${binary}" || fail "${binary} missing or not runnable after extraction"
echo "${binary}"
