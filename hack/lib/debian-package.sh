# Sourced by hack/kubectl-1.20.sh and hack/promtool.sh: fetches one Debian
# package without installing it and extracts it under a destination folder.
#
#   fetch_debian_package PACKAGE DEST CHECK HINT
#
# Downloads PACKAGE with `apt-get download` (refreshing the package lists once
# when that fails and we are root), extracts it beside DEST and moves it into
# place only after `CHECK <extracted root>` succeeds, so an interrupted or wrong
# download never leaves something a later run would reuse. HINT ends every
# failure message (how to supply the tool by hand). Needs the caller's `fail`.

fetch_debian_package() {
  local package="$1" dest="$2" check="$3" hint="$4"
  command -v apt-get >/dev/null 2>&1 || fail "apt-get not found: Debian's ${package} package can only be fetched on Debian or Ubuntu; ${hint}"
  command -v dpkg-deb >/dev/null 2>&1 || fail "dpkg-deb not found; ${hint}"
  local parent download_dir partial deb
  parent="$(dirname "${dest}")"
  mkdir -p "${parent}"
  download_dir="$(mktemp -d "${parent}/${package}-deb.XXXXXX")"
  partial=""
  # shellcheck disable=SC2064 # expand now: the locals are gone when the trap runs
  trap "rm -rf '${download_dir}'" EXIT
  if ! (cd "${download_dir}" && apt-get download -q "${package}" >&2); then
    # A fresh machine has no (or stale) package lists.
    if [[ "$(id -u)" -ne 0 ]]; then
      fail "apt-get download ${package} failed and refreshing the package lists needs root; run 'sudo apt-get update' and retry, or ${hint}"
    fi
    echo "$(basename "$0" .sh): refreshing package lists (apt-get update)" >&2
    apt-get update -q >&2 || fail "apt-get update failed"
    (cd "${download_dir}" && apt-get download -q "${package}" >&2) || fail "apt-get download ${package} failed (is the package in this distribution's repositories?); ${hint}"
  fi
  deb="$(find "${download_dir}" -maxdepth 1 -name "${package}_*.deb" | head -n 1)"
  [[ -n "${deb}" ]] || fail "apt-get download produced no ${package} package"
  partial="$(mktemp -d "${dest}.partial.XXXXXX")"
  trap "rm -rf '${download_dir}' '${partial}'" EXIT
  dpkg-deb -x "${deb}" "${partial}"
  "${check}" "${partial}" || fail "the downloaded ${package} package did not pass its check; ${hint}"
  rm -rf "${dest}"
  mv "${partial}" "${dest}"
  trap "rm -rf '${download_dir}'" EXIT
}
