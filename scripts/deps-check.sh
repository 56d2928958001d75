#!/usr/bin/env bash
# Fails when a package imports against the layering in docs/architecture.md:
#   cmd -> cli | edge | device/agent -> transport/client | device (runtimes)
#     -> transport/tcp, udp, pty (stream types) -> transport (sessions)
#     -> transport/wire, transport/target (stdlib only)
#   certs is stdlib only; edge, cli and the agent never import each other;
#   the agent binary stays small (no edge, cli, prometheus, cobra or NATS);
#   no binary links package testing, and the test rigs under internal/ are
#   imported by tests only.
# It also fails, saying why, when go list cannot list the imports (an
# import cycle, a missing package, a file that does not parse): a check
# that cannot see the imports must not pass. GOFLAGS (such as -overlay)
# reaches every go list.
set -euo pipefail
cd "$(dirname "$0")/.."
mod=github.com/tetherhq/tether
fail=0

# golist ARGS...: go list's output, or a message with go list's errors on
# stderr and a non-zero status.
golist() {
  local out errf
  errf=$(mktemp)
  if ! out=$(go list "$@" 2>"$errf"); then
    echo "deps-check: go list $* failed, so the imports cannot be checked; fix the error below (or the package path in $0):" >&2
    sed 's/^/  /' "$errf" >&2
    rm -f "$errf"
    return 1
  fi
  rm -f "$errf"
  printf '%s\n' "$out"
}

# The whole module must list: otherwise every check below would see less
# than the build does.
golist -deps ./... >/dev/null || exit 1

# deny PKG PATTERN... : PKG's transitive deps must match none of the patterns.
deny() {
  local pkg=$1; shift
  local deps
  if ! deps=$(golist -deps "$mod/$pkg"); then
    fail=1
    return
  fi
  deps=$(printf '%s\n' "$deps" | grep -v "^$mod/$pkg\$" || true)
  for pat in "$@"; do
    local hit
    hit=$(printf '%s\n' "$deps" | grep -E "^($pat)(/|\$)" || true)
    if [ -n "$hit" ]; then
      echo "deps-check: $pkg must not import $pat (found: $(echo $hit | tr '\n' ' '))" >&2
      fail=1
    fi
  done
}

stdlib_only="$mod github.com golang.org/x gopkg.in"

# The session layer and below know nothing of the runtimes and stream types.
deny transport/wire $stdlib_only
deny transport/target $stdlib_only
deny transport/labels $stdlib_only
deny transport "$mod/(cmd|cli|edge|device|mock|pty|udp|certs|transport/client|transport/tcp|transport/qbeecompat)" \
  "github.com/spf13" "github.com/prometheus" "github.com/creack/pty"
deny certs $stdlib_only
deny web $stdlib_only
# The test identity provider stays out of every binary we ship.
for p in cmd/tether cmd/tether-edge cmd/tether-agent; do
  deny $p "github.com/zitadel"
done
deny internal/logx $stdlib_only
deny internal/ratelimit $stdlib_only
deny internal/asciicast $stdlib_only
deny internal/termfilter $stdlib_only
deny internal/limitread $stdlib_only
deny internal/procs $stdlib_only
deny internal/workers $stdlib_only
# Stream types: both halves, on the session layer only.
for p in transport/tcp transport/files pty udp; do
  deny $p "$mod/(cmd|cli|edge|device|mock|transport/client|transport/qbeecompat)" "github.com/spf13" "github.com/prometheus"
done
deny transport/tcp "$mod/(pty|udp)"
deny transport/files "$mod/(pty|udp|transport/tcp)"
# Runtimes: the client's and the device's never meet.
deny transport/client "$mod/(cmd|cli|edge|device|mock|pty|udp|transport/tcp|transport/qbeecompat)"
deny device "$mod/(cmd|cli|edge|mock|pty|udp|transport/client|transport/tcp|transport/qbeecompat|device/agent)"
deny device/agent "$mod/(cmd|cli|edge|mock|transport/client|transport/qbeecompat)" "github.com/spf13" "github.com/prometheus"
# Services and front ends: edge, cli and the agent never import each other.
deny edge "$mod/(cmd|cli|device|mock|pty|udp|transport/client|transport/tcp|transport/qbeecompat|edge/cluster)" "github.com/nats-io"
deny edge/cluster "$mod/(cmd|cli|device|mock|pty|udp|transport/client|transport/tcp|transport/qbeecompat)"
deny cli "$mod/(cmd|edge|device|mock|transport/qbeecompat)"
deny mock "$mod/(cmd|cli|device/agent|transport/qbeecompat)"
deny transport/qbeecompat "$mod/(cmd|cli|device/agent|edge/cluster)"
deny cmd/tether-agent "$mod/(cli|edge|mock|transport/client|transport/qbeecompat)" "github.com/spf13" "github.com/prometheus" "github.com/nats-io"
# Binaries carry no test code: mock, certstest and the test rigs import
# package testing.
for p in cmd/tether cmd/tether-edge cmd/tether-agent; do
  deny $p "testing"
done

# The test rigs are imported by _test.go files only (go list without -test
# sees no test imports, so any importer found here is product code).
rigs="$mod/internal/(testutil|testbroker|testedge|testoidc)"
if ! imports=$(golist -f '{{.ImportPath}}{{range .Imports}} {{.}}{{end}}' ./...); then
  fail=1
else
  while read -r pkg deps; do
    # A rig's own packages (testoidc's command) may import it.
    if printf '%s\n' "$pkg" | grep -qE "^($rigs)(/|\$)"; then
      continue
    fi
    hit=$(printf '%s\n' $deps | grep -E "^($rigs)\$" || true)
    if [ -n "$hit" ]; then
      echo "deps-check: ${pkg#$mod/} must not import $(echo $hit | tr '\n' ' '): test rigs are for _test.go files" >&2
      fail=1
    fi
  done <<<"$imports"
fi

if [ $fail -ne 0 ]; then
  echo "deps-check: FAILED; docs/architecture.md (Layering) says which way imports flow" >&2
  exit 1
fi
echo "deps-check: imports flow one way"
