#!/usr/bin/env bash
# Makes sure Debian's python3 with the official Kubernetes Python client
# (package python3-kubernetes) is there for the third-party client tests.
# Prints the path of a python3 that can `import kubernetes` on stdout
# (everything else goes to stderr). Installs python3-kubernetes with apt when
# it is missing and we are root (apt-get update first when the lists are
# missing or stale). Never prompts.
#
# Debian's package installs into /usr/lib/python3/dist-packages, which only
# Debian's /usr/bin/python3 reads: a python3 earlier on PATH (pyenv, venv)
# would not see it, so that interpreter is the one we check and print.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

python="/usr/bin/python3"

fail() {
  echo "python-kubernetes: $*" >&2
  exit 1
}

has_client() {
  [[ -x "${python}" ]] && "${python}" -c 'import kubernetes, kubernetes.watch' >/dev/null 2>&1
}

if has_client; then
  echo "${python}"
  exit 0
fi

command -v apt-get >/dev/null 2>&1 || fail "apt-get not found: install Debian's python3-kubernetes (the official Kubernetes Python client) so that ${python} can import kubernetes"
if [[ "$(id -u)" -ne 0 ]]; then
  fail "${python} cannot import kubernetes and installing it needs root: run 'sudo apt-get install python3-kubernetes'"
fi

echo "python-kubernetes: installing Debian's python3-kubernetes" >&2
install() {
  apt-get install -y -q --no-install-recommends python3 python3-kubernetes >&2
}
if ! install; then
  # A fresh machine has no (or stale) package lists.
  echo "python-kubernetes: refreshing package lists (apt-get update)" >&2
  apt-get update -q >&2 || fail "apt-get update failed"
  install || fail "apt-get install python3-kubernetes failed (is it in this distribution's repositories? Debian bookworm ships 22.6)"
fi

has_client || fail "python3-kubernetes installed but ${python} still cannot import kubernetes"
echo "${python}"
