#!/usr/bin/env bash
# Fails when a package imports against the layering in docs/architecture.md:
#   cmd -> cli | edge | device -> pty, udp -> transport -> smux + stdlib
#   certs is stdlib only; edge, device and cli never import each other;
#   the agent binary stays small (no edge, cli, prometheus or cobra).
set -euo pipefail
mod=github.com/tetherhq/tether
fail=0

# deny PKG PATTERN... : PKG's transitive deps must match none of the patterns.
deny() {
  local pkg=$1; shift
  local deps
  deps=$(go list -deps "$mod/$pkg" 2>/dev/null | grep -v "^$mod/$pkg\$" || true)
  for pat in "$@"; do
    local hit
    hit=$(printf '%s\n' "$deps" | grep -E "^($pat)(/|\$)" || true)
    if [ -n "$hit" ]; then
      echo "deps-check: $pkg must not import $pat (found: $(echo $hit | tr '\n' ' '))"
      fail=1
    fi
  done
}

pkg_exists() { [ -d "$1" ] && ls "$1"/*.go >/dev/null 2>&1; }

up="$mod/(cmd|cli|edge|device|mock|pty|udp)"
pkg_exists transport && deny transport "$up" "$mod/certs" "github.com/spf13" "github.com/prometheus" "github.com/creack/pty"
pkg_exists certs && deny certs "$mod" "github.com" "golang.org/x" "gopkg.in"
for p in pty udp; do
  pkg_exists $p && deny $p "$mod/(cmd|cli|edge|device|mock)" "github.com/spf13" "github.com/prometheus"
done
pkg_exists edge && deny edge "$mod/(cmd|cli|device|mock|pty|udp)"
pkg_exists device && deny device "$mod/(cmd|cli|edge|mock)" "github.com/spf13" "github.com/prometheus"
pkg_exists cli && deny cli "$mod/(cmd|edge|device|mock)"
pkg_exists mock && deny mock "$mod/(cmd|cli|device)"
pkg_exists cmd/tether-agent && deny cmd/tether-agent "$mod/(cli|edge|mock)" "github.com/spf13" "github.com/prometheus"

if [ $fail -ne 0 ]; then exit 1; fi
echo "deps-check: imports flow one way"
