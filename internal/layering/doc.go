// Package layering holds the test of scripts/deps-check.sh, the check
// that imports flow one way (docs/architecture.md, Layering). The test runs
// the script on the real tree, which must pass, and on overlays that add
// one file with a forbidden import (go build's -overlay, passed through
// GOFLAGS), which must fail naming the package and the import. It has no
// code of its own.
package layering
