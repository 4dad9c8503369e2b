#!/usr/bin/env bash
# Makes sure a kubectl binary exists for the tests: the one on PATH, else
# Debian's kubernetes-client package (kubectl 1.20) installed with apt.
set -euo pipefail
if command -v kubectl >/dev/null 2>&1; then
  exit 0
fi
echo "kubectl not found: installing Debian's kubernetes-client" >&2
if [ "$(id -u)" -ne 0 ]; then
  echo "need root to apt-get install kubernetes-client; install kubectl yourself" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >/dev/null
command -v kubectl >/dev/null
