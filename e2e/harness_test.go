// Package e2e runs the three built binaries (tether-edge, tether-agent and
// tether) as real processes on loopback with a real PKI, and checks the
// whole system: every stream type, policy at the edge and at the agent,
// revocation, drain, restarts and keep-alive.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tetherhq/tether/internal/testutil"
)

// binDir holds the binaries built once for the whole package.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(testutil.RunWithBinaries(m, "e2e", func(dir string) error {
		binDir = dir
		return testutil.BuildBinaries(dir, "../cmd/tether", "../cmd/tether-edge", "../cmd/tether-agent", "./internal/natsd", "./internal/floorrelay")
	}, leaks))
}

// leaks fails the run if goroutines or child processes outlive the tests.
func leaks() error {
	if err := goleak.Find(); err != nil {
		return fmt.Errorf("leaked goroutines: %w", err)
	}
	if kids := childPIDs(os.Getpid()); len(kids) > 0 {
		return fmt.Errorf("leaked child processes: %v", kids)
	}
	return nil
}

// childPIDs lists the live children of pid (zombies included: a zombie is
// a child nobody reaped).
func childPIDs(pid int) []int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(data)) {
		var p int
		fmt.Sscan(f, &p)
		out = append(out, p)
	}
	return out
}

func bin(name string) string { return filepath.Join(binDir, name) }

// proc is a running binary whose output is kept for the test log. cmd is
// its command, for the benchmarks that read the edge's CPU time.
type proc struct {
	*testutil.Proc
	cmd *exec.Cmd
}

// tetherEnv is added to the environment of the Tether binaries (tether,
// tether-edge, tether-agent) that start runs, while a benchmark that sets
// it runs (BenchmarkInteractiveAllProcs).
var tetherEnv []string

// start runs a binary with args. It is stopped (SIGTERM, then SIGKILL) at
// the end of the test, and its output is logged if the test failed.
func start(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	var o testutil.Options
	if tetherEnv != nil && strings.HasPrefix(name, "tether") {
		o.Env = append(os.Environ(), tetherEnv...)
	}
	p := testutil.StartWith(t, o, bin(name), args...)
	return &proc{Proc: p, cmd: p.Cmd}
}

// run runs a binary to completion with a deadline and returns its stdout,
// stderr and exit code.
func run(t testing.TB, stdin string, name string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin(name), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run %s %v: %v", name, args, err)
		}
		code = ee.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	return testutil.FreePort(t)
}

// fdCount returns the number of open file descriptors of this process.
func fdCount(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
