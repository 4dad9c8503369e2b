#!/usr/bin/env bash
# Makes sure the VPN data plane's tools are there for its tests: Debian's
# wireguard-go (userspace WireGuard on a TUN device), wireguard-tools (`wg`)
# and iproute2 (`ip`). Installs what is missing with apt when we are root
# (apt-get update first when the lists are missing or stale). Never prompts;
# prints nothing on stdout; exits non-zero with the reason when a tool cannot
# be had (the tests that need them then fail, they are never skipped).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

fail() {
  echo "wireguard: $*" >&2
  exit 1
}

missing() {
  local m=()
  command -v wireguard-go >/dev/null 2>&1 || m+=(wireguard-go)
  command -v wg >/dev/null 2>&1 || m+=(wireguard-tools)
  command -v ip >/dev/null 2>&1 || m+=(iproute2)
  echo "${m[@]:-}"
}

packages="$(missing)"
[[ -z "${packages}" ]] && exit 0

command -v apt-get >/dev/null 2>&1 || fail "apt-get not found: install ${packages} (Debian's names) so that wireguard-go, wg and ip are on PATH"
if [[ "$(id -u)" -ne 0 ]]; then
  fail "missing ${packages} and installing needs root: run 'sudo apt-get install ${packages}'"
fi
echo "wireguard: installing Debian's ${packages}" >&2
# shellcheck disable=SC2086 # a list of package names
install() { apt-get install -y -q --no-install-recommends ${packages} >&2; }
if ! install; then
  echo "wireguard: refreshing package lists (apt-get update)" >&2
  apt-get update -q >&2 || fail "apt-get update failed"
  install || fail "apt-get install ${packages} failed (are they in this distribution's repositories?)"
fi
still="$(missing)"
[[ -z "${still}" ]] || fail "installed, but still missing: ${still}"
