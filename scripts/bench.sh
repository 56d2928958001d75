#!/usr/bin/env bash
# make bench: run every benchmark once at a fixed size, print the table and
# write BENCHMARKS.md. Never part of make test.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=$(go list ./... | grep -v /internal/ )
# -benchtime 1x: each benchmark sizes its own workload and reports its own
# figures, with the same-run baselines beside them.
go test -run '^$' -bench "${BENCH:-.}" -benchtime "${BENCHTIME:-1x}" -benchmem -timeout 40m $pkgs \
  | go run ./internal/benchreport -o BENCHMARKS.md
