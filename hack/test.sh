#!/usr/bin/env bash
# The whole suite: strict type check, generated-file drift, then mocha
# (unit, integration against real PostgreSQL + real kubectl, e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/ensure-kubectl.sh
echo "== kubectl 1.20 (Debian's kubernetes-client), for the kubectl compatibility pass"
# The kubectl tests run once with kubectl on PATH and once with $KUBECTL_LEGACY;
# when both report the same minor version (a machine whose only kubectl is
# Debian's 1.20, as ensure-kubectl.sh installs it), they run once.
# A missing old client fails the run: the compatibility pass is never skipped.
if [[ -z "${KUBECTL_LEGACY:-}" ]]; then
  if kubectl version --client -o json 2>/dev/null | grep '"gitVersion": *"v1\.20\.' >/dev/null; then
    KUBECTL_LEGACY="$(command -v kubectl)"
  elif ! KUBECTL_LEGACY="$(bash hack/kubectl-1.20.sh)"; then
    echo "hack/test.sh: could not obtain Debian's kubectl 1.20 (hack/kubectl-1.20.sh failed, see above)." >&2
    echo "hack/test.sh: the kubectl compatibility tests need it; set KUBECTL_LEGACY to a kubectl 1.20 binary to supply one." >&2
    exit 1
  fi
fi
if [[ ! -x "${KUBECTL_LEGACY}" ]]; then
  echo "hack/test.sh: KUBECTL_LEGACY=${KUBECTL_LEGACY} is not an executable file" >&2
  exit 1
fi
export KUBECTL_LEGACY
echo "${KUBECTL_LEGACY}"
echo "== the official Kubernetes Python client (Debian's python3-kubernetes), for the third-party client test"
# Like the old kubectl, a missing client fails the run: that test is never skipped.
if [[ -z "${FABRIC_PYTHON:-}" ]]; then
  if ! FABRIC_PYTHON="$(bash hack/python-kubernetes.sh)"; then
    echo "hack/test.sh: could not obtain python3 with Debian's python3-kubernetes (hack/python-kubernetes.sh failed, see above)." >&2
    echo "hack/test.sh: test/integration/python-client.test.ts needs it; set FABRIC_PYTHON to a python3 that can import kubernetes to supply one." >&2
    exit 1
  fi
fi
export FABRIC_PYTHON
echo "${FABRIC_PYTHON}"
echo "== promtool (Debian's prometheus package), for the alert rule checks"
# The alert rules are checked with promtool; a missing promtool fails the run (never skipped).
if ! PROMTOOL="$(bash hack/promtool.sh)"; then
  echo "hack/test.sh: could not obtain promtool (hack/promtool.sh failed, see above); set PROMTOOL to a promtool binary to supply one." >&2
  exit 1
fi
export PROMTOOL
echo "${PROMTOOL}"
echo "== iproute2, for the network-namespace tests"
# test/support/netns.ts needs `ip`; a missing one fails the run (never skipped).
bash hack/netns-tools.sh || { echo "hack/test.sh: iproute2 is missing (hack/netns-tools.sh failed, see above)." >&2; exit 1; }
echo "== wireguard-go, wireguard-tools and iproute2 (Debian's), for the VPN data plane tests"
# The VPN tests run real userspace WireGuard in network namespaces; missing tools fail the run (never skipped).
if ! bash hack/wireguard.sh; then
  echo "hack/test.sh: could not obtain wireguard-go, wg and ip (hack/wireguard.sh failed, see above); install Debian's wireguard-go, wireguard-tools and iproute2 as root." >&2
  exit 1
fi
echo "== type check"
# Incremental: a later run in the same checkout re-checks only what changed (16 s of CPU -> 5 s);
# the build info lives in the git-ignored .tmp/.
npx tsc --noEmit -p tsconfig.json --incremental --tsBuildInfoFile .tmp/tsc.tsbuildinfo
echo "== precompiled agent"
# bin/fabric-agent would rebuild it on first use anyway; building here keeps that out of test timings.
node hack/build-agent.mjs
echo "== generated files"
bash hack/verify.sh
echo "== tests"
# In-process control planes log only warnings and errors; spawned ones still log their ready line.
# After the summary, the reporter (test/support/file-timing-reporter.ts) lists the 15 slowest
# test files by wall time, hooks included: where the suite's time goes, in every CI log.
FABRIC_SLOWEST_FILES="${FABRIC_SLOWEST_FILES:-15}" FABRIC_LOG_LEVEL="${FABRIC_LOG_LEVEL:-warn}" npx mocha "$@"
