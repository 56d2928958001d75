package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// BuildBinaries builds the main packages pkgs (paths as go build takes
// them, "../cmd/tether" say) into dir, each named after its directory.
// The compiler's output goes to stderr.
func BuildBinaries(dir string, pkgs ...string) error {
	return Build{}.Binaries(dir, pkgs...)
}

// Build holds what a package's binaries need beyond a plain go build.
type Build struct {
	// Flags are more go build flags: "-race", "-trimpath", ...
	Flags []string
	// Env is added to this process's environment ("CGO_ENABLED=0").
	Env []string
}

// Binaries is BuildBinaries with b's flags and environment.
func (b Build) Binaries(dir string, pkgs ...string) error {
	args := append([]string{"build"}, b.Flags...)
	args = append(args, "-o", dir+string(os.PathSeparator))
	cmd := exec.Command("go", append(args, pkgs...)...)
	if b.Env != nil {
		cmd.Env = append(os.Environ(), b.Env...)
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w", strings.Join(pkgs, " "), err)
	}
	return nil
}
