// Package version holds the build's version, set by the linker, and the
// line that `--version` prints on every Tether binary.
package version

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// Version is set with -ldflags "-X .../internal/version.Version=...".
var Version = "dev"

// Commit is the source revision, set with -ldflags
// "-X .../internal/version.Commit=...". When unset, the revision the Go
// toolchain recorded in the binary is used, if any.
var Commit = ""

// commit returns Commit, else the VCS revision in the build info (with
// "-dirty" when the tree had changes), else "unknown".
func commit() string {
	if Commit != "" {
		return Commit
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return "unknown"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified == "true" {
		rev += "-dirty"
	}
	return rev
}

// Line is what `NAME --version` prints: the name, the version, then in
// parentheses the details (such as the protocol spoken), the commit, the
// Go version and the platform:
//
//	tether-edge v1.4.0 (commit 1a2b3c4d5e6f, go1.26.8, linux/amd64)
func Line(name string, details ...string) string {
	parts := append(append([]string(nil), details...),
		"commit "+commit(), runtime.Version(), runtime.GOOS+"/"+runtime.GOARCH)
	return name + " " + Version + " (" + strings.Join(parts, ", ") + ")"
}
