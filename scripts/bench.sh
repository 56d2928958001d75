#!/usr/bin/env bash
# make bench: run every benchmark, print the table and write BENCHMARKS.md.
# Never part of make test. BENCH=regexp narrows the run.
set -euo pipefail
cd "$(dirname "$0")/.."
bench=${BENCH:-.}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# Most benchmarks size their own workload and report their figures beside a
# baseline measured in the same run: one iteration each (-benchtime 1x).
fixed=$(go list ./... | grep -v -e /internal/ -e /pty\$)
go test -run '^$' -bench "$bench" -benchtime 1x -benchmem -timeout 40m $fixed | tee -a "$out"
# The PTY benchmarks are per-operation loops.
go test -run '^$' -bench "$bench" -benchtime 1s -benchmem -timeout 10m ./pty/ | tee -a "$out"

# Agent binary sizes per architecture, against the 8 MiB budget, in the
# same line format so the report shows them.
if [ "$bench" = . ] || echo AgentBinarySize | grep -qE "$bench"; then
  echo "pkg: agent binaries (make dist-agent)" >>"$out"
  make -s dist-agent | while read -r name size _; do
    printf 'BenchmarkAgentBinarySize/%s 1 %s bytes %s x-8MiB\n' "$name" "$size" \
      "$(awk -v s="$size" 'BEGIN{printf "%.3f", s/8388608}')" >>"$out"
  done
fi
go run ./internal/benchreport -o BENCHMARKS.md <"$out" >/dev/null
echo; cat BENCHMARKS.md
