#!/usr/bin/env bash
# Refreshes web/vendor from the npm registry: the exact versions and
# integrity hashes in web/vendor/VENDOR.txt. Each package's tarball is
# fetched with npm pack, its sha512 checked against VENDOR.txt (a mismatch
# fails and changes nothing), and the files the edge serves are copied,
# with the package's LICENSE. The committed files are what go:embed uses:
# building the edge never needs npm or the network.
#
# To move to a new version, change its line in VENDOR.txt to the version
# and the integrity that `npm view PACKAGE@VERSION dist.integrity` prints,
# then run make vendor-web and review the diff.
set -euo pipefail
cd "$(dirname "$0")/.."
vendor=web/vendor
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# files PACKAGE: the package's files that the edge serves.
files() {
  case $1 in
    @xterm/xterm) echo lib/xterm.js css/xterm.css ;;
    @xterm/addon-fit) echo lib/addon-fit.js ;;
    @xterm/addon-search) echo lib/addon-search.js ;;
    @xterm/addon-web-links) echo lib/addon-web-links.js ;;
    asciinema-player) echo dist/bundle/asciinema-player.min.js dist/bundle/asciinema-player.css ;;
    *) echo "vendor-web: no file list for $1; add one to $0" >&2; exit 1 ;;
  esac
}

grep -v '^#' "$vendor/VENDOR.txt" | while read -r pkg version integrity; do
  [ -n "$pkg" ] || continue
  (cd "$tmp" && npm pack --silent "$pkg@$version" >/dev/null)
  tgz="$tmp/$(echo "${pkg#@}" | tr / -)-$version.tgz"
  got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
  if [ "$got" != "$integrity" ]; then
    echo "vendor-web: $pkg@$version has integrity $got, but VENDOR.txt pins $integrity; nothing was changed" >&2
    exit 1
  fi
  dir="$tmp/${pkg#@}"
  mkdir -p "$dir"
  tar xzf "$tgz" -C "$dir"
  name=$(basename "$pkg")
  cp "$dir/package/LICENSE" "$vendor/LICENSE.$name"
  for f in $(files "$pkg"); do
    cp "$dir/package/$f" "$vendor/$(basename "$f")"
  done
  echo "vendor-web: $pkg@$version ($integrity)"
done
