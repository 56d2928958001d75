package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
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

// RunWithBinaries is the body of a TestMain whose tests run built
// binaries; pass its result to os.Exit. It makes a temporary directory,
// calls build with it and runs the tests. If they pass, it calls check
// (the package's goleak.Find, say) and fails the run on an error. The
// directory is removed before it returns; errors go to stderr, after name.
func RunWithBinaries(m *testing.M, name string, build func(dir string) error, check func() error) int {
	dir, err := os.MkdirTemp("", "tether-test-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := build(dir); err != nil {
		fmt.Fprintf(os.Stderr, "%s: build the binaries: %v\n", name, err)
		return 1
	}
	code := m.Run()
	if code != 0 || check == nil {
		return code
	}
	if err := check(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}
