#!/usr/bin/env bash
# Builds the .deb and .rpm of tether-agent or tether-edge from a built
# binary, with nfpm (packaging/nfpm-*.yaml).
#
#   scripts/package.sh agent|edge ARCH BINARY VERSION OUTDIR
#   scripts/package.sh tools      only install nfpm (CI does, ahead of the tests)
#
# PACKAGERS (default "deb rpm") picks the formats. MANDIR (default
# dist/man, relative to where the script was started) holds the manual
# page the package installs, gzipped: make man writes it.
# ARCH is Go's name of the architecture, with the ARM version: amd64,
# arm64, arm7, arm6, mipsle, riscv64. VERSION is the build's version
# (v1.2.3, or git describe's output); a leading v is dropped, dashes
# become dots (rpm refuses them), and a version that is no release number
# (a bare commit, "dev") becomes 0.0.0~git.VERSION, which sorts before
# every release. nfpm is installed at the version pinned below
# into $NFPM_BIN (default bin/tools), from the Go module proxy.
set -euo pipefail
here=$PWD
cd "$(dirname "$0")/.."

nfpm_version=v2.45.2

# install_nfpm puts nfpm at the pinned version into $tools.
install_nfpm() {
  tools=${NFPM_BIN:-bin/tools}
  mkdir -p "$tools"
  tools=$(cd "$tools" && pwd)
  if ! "$tools/nfpm" --version 2>/dev/null | grep -q "GitVersion: *${nfpm_version#v}\$"; then
    GOBIN=$tools GOFLAGS=-mod=mod go install -ldflags "-X main.version=${nfpm_version#v}" \
      "github.com/goreleaser/nfpm/v2/cmd/nfpm@$nfpm_version"
  fi
}

if [ "${1:-}" = tools ] && [ $# -eq 1 ]; then
  install_nfpm
  exit 0
fi
if [ $# -ne 5 ]; then
  echo "usage: $0 agent|edge ARCH BINARY VERSION OUTDIR, or $0 tools" >&2
  exit 2
fi
what=$1 arch=$2 bin=$3 version=$4 out=$5
# BINARY and OUTDIR are relative to where the script was started.
case $bin in /*) ;; *) bin=$here/$bin ;; esac
case $out in /*) ;; *) out=$here/$out ;; esac
case $what in
agent | edge) ;;
*) echo "package.sh: unknown package $what: use agent or edge" >&2; exit 2 ;;
esac
if [ ! -x "$bin" ]; then
  echo "package.sh: $bin is not an executable: build it first (make dist)" >&2
  exit 1
fi

version=${version#v}
case $version in
[0-9]*.[0-9]*) ;;
*) version="0.0.0~git.$version" ;;
esac
version=$(printf '%s' "$version" | tr -- '-' '.')

man=${MANDIR:-dist/man}/tether-$what.1
case $man in /*) ;; *) man=$here/$man ;; esac
if [ ! -f "$man" ]; then
  echo "package.sh: no manual page at $man: run make man first (or set MANDIR)" >&2
  exit 1
fi

mkdir -p "$out"
install_nfpm
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gzip -9 -n -c "$man" >"$work/tether-$what.1.gz"

for packager in ${PACKAGERS:-deb rpm}; do
  TETHER_PKG_ARCH=$arch TETHER_PKG_VERSION=$version TETHER_PKG_BIN=$bin TETHER_PKG_MAN=$work/tether-$what.1.gz \
    "$tools/nfpm" package --config "packaging/nfpm-$what.yaml" --packager $packager --target "$out/"
done
