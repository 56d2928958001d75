#!/usr/bin/env bash
# Fails when a package imports against the layering in docs/architecture.md:
#   cmd -> cli | edge | device/agent -> transport/client | device (runtimes)
#     -> transport/tcp, udp, pty (stream types) -> transport (sessions)
#     -> transport/wire, transport/target (stdlib only)
#   certs is stdlib only; edge, cli and the agent never import each other;
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

# The session layer and below know nothing of the runtimes and stream types.
pkg_exists transport/wire && deny transport/wire "$mod" "github.com" "golang.org/x" "gopkg.in"
pkg_exists transport/target && deny transport/target "$mod" "github.com" "golang.org/x" "gopkg.in"
pkg_exists transport && deny transport "$mod/(cmd|cli|edge|device|mock|pty|udp|certs|transport/client|transport/tcp)" \
  "github.com/spf13" "github.com/prometheus" "github.com/creack/pty"
pkg_exists certs && deny certs "$mod" "github.com" "golang.org/x" "gopkg.in"
# Stream types: both halves, on the session layer only.
for p in transport/tcp pty udp; do
  pkg_exists $p && deny $p "$mod/(cmd|cli|edge|device|mock|transport/client)" "github.com/spf13" "github.com/prometheus"
done
pkg_exists transport/tcp && deny transport/tcp "$mod/(pty|udp)"
# Runtimes: the client's and the device's never meet.
pkg_exists transport/client && deny transport/client "$mod/(cmd|cli|edge|device|mock|pty|udp|transport/tcp)"
pkg_exists device && deny device "$mod/(cmd|cli|edge|mock|pty|udp|transport/client|transport/tcp|device/agent)"
pkg_exists device/agent && deny device/agent "$mod/(cmd|cli|edge|mock|transport/client)" "github.com/spf13" "github.com/prometheus"
# Services and front ends: edge, cli and the agent never import each other.
pkg_exists edge && deny edge "$mod/(cmd|cli|device|mock|pty|udp|transport/client|transport/tcp)"
pkg_exists cli && deny cli "$mod/(cmd|edge|device|mock)"
pkg_exists mock && deny mock "$mod/(cmd|cli|device/agent)"
pkg_exists cmd/tether-agent && deny cmd/tether-agent "$mod/(cli|edge|mock|transport/client)" "github.com/spf13" "github.com/prometheus"

if [ $fail -ne 0 ]; then exit 1; fi
echo "deps-check: imports flow one way"
