#!/usr/bin/env bash
# Makes sure `ip` (iproute2) is installed: the network-namespace tests
# (test/support/netns.ts) build bridges, veth pairs and namespaces with it.
# A fresh Debian minbase root has none. Installs Debian's iproute2 with
# apt-get as root; fails with a clear message otherwise. Never prompts.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

fail() {
  echo "netns-tools: $*" >&2
  exit 1
}

command -v ip >/dev/null 2>&1 && exit 0
[[ "$(id -u)" -eq 0 ]] || fail "'ip' (iproute2) is missing and installing it needs root; run 'sudo apt-get install iproute2' (the network-namespace tests also need root to run)"
command -v apt-get >/dev/null 2>&1 || fail "'ip' (iproute2) is missing and apt-get is not available; install iproute2 with this system's package manager"
echo "netns-tools: installing iproute2 (apt-get)" >&2
if ! apt-get install -y -q --no-install-recommends iproute2 >&2; then
  echo "netns-tools: refreshing package lists (apt-get update)" >&2
  apt-get update -q >&2 || fail "apt-get update failed"
  apt-get install -y -q --no-install-recommends iproute2 >&2 || fail "apt-get install iproute2 failed"
fi
command -v ip >/dev/null 2>&1 || fail "iproute2 installed but 'ip' is still not on PATH"
