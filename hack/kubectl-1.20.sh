#!/usr/bin/env bash
# Obtains Debian's kubernetes-client (kubectl 1.20) without installing it, so
# compatibility tests can run the old client beside /usr/bin/kubectl (1.32).
# Prints the path of the extracted kubectl binary. Idempotent: reuses an
# earlier extraction. Needs apt (root, or a readable apt cache).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp_dir="${repo_root}/.tmp"
dest="${tmp_dir}/kubectl-1.20"
binary="${dest}/usr/bin/kubectl"

if [[ -x "${binary}" ]]; then
  echo "${binary}"
  exit 0
fi

mkdir -p "${tmp_dir}"
download_dir="$(mktemp -d "${tmp_dir}/kubectl-deb.XXXXXX")"
trap 'rm -rf "${download_dir}"' EXIT

fetch() {
  (cd "${download_dir}" && apt-get download kubernetes-client >&2)
}

if ! fetch; then
  # A fresh machine has no package lists yet.
  apt-get update >&2
  fetch
fi

deb="$(find "${download_dir}" -maxdepth 1 -name 'kubernetes-client_*.deb' | head -n 1)"
if [[ -z "${deb}" ]]; then
  echo "kubectl-1.20: apt-get download produced no kubernetes-client package" >&2
  exit 1
fi

rm -rf "${dest}.partial"
mkdir -p "${dest}.partial"
dpkg-deb -x "${deb}" "${dest}.partial"
rm -rf "${dest}"
mv "${dest}.partial" "${dest}"

if [[ ! -x "${binary}" ]]; then
  echo "kubectl-1.20: ${binary} missing after extraction" >&2
  exit 1
fi
echo "${binary}"
