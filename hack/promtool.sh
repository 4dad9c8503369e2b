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

command -v apt-get >/dev/null 2>&1 || fail "apt-get not found: Debian's prometheus package can only be fetched on Debian or Ubuntu; set PROMTOOL to a promtool binary"
command -v dpkg-deb >/dev/null 2>&1 || fail "dpkg-deb not found; set PROMTOOL to a promtool binary"

mkdir -p "${tmp_dir}"
download_dir="$(mktemp -d "${tmp_dir}/prometheus-deb.XXXXXX")"
partial=""
cleanup() {
  rm -rf "${download_dir}"
  if [[ -n "${partial}" ]]; then rm -rf "${partial}"; fi
}
trap cleanup EXIT

fetch() {
  (cd "${download_dir}" && apt-get download -q prometheus >&2)
}

if ! fetch; then
  # A fresh machine has no (or stale) package lists.
  if [[ "$(id -u)" -ne 0 ]]; then
    fail "apt-get download prometheus failed and refreshing the package lists needs root; run 'sudo apt-get update' and retry, or set PROMTOOL to a promtool binary"
  fi
  echo "promtool: refreshing package lists (apt-get update)" >&2
  apt-get update -q >&2 || fail "apt-get update failed"
  fetch || fail "apt-get download prometheus failed (is the package in this distribution's repositories?); set PROMTOOL to a promtool binary"
fi

deb="$(find "${download_dir}" -maxdepth 1 -name 'prometheus_*.deb' | head -n 1)"
[[ -n "${deb}" ]] || fail "apt-get download produced no prometheus package"

# Extract beside the destination and move it into place, so an interrupted run
# never leaves a half-extracted binary that a later run would reuse.
partial="$(mktemp -d "${dest}.partial.XXXXXX")"
dpkg-deb -x "${deb}" "${partial}"
runs "${partial}/usr/bin/promtool" || fail "the downloaded prometheus package holds no runnable usr/bin/promtool"
rm -rf "${dest}"
mv "${partial}" "${dest}"
partial=""

runs "${binary}" || fail "${binary} missing or not runnable after extraction"
echo "${binary}"
