//go:build linux

package pty_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// ignoredSignalsEnv makes the test binary run TestSessionsGetDefaultSignals
// as the process that ignores signals.
const ignoredSignalsEnv = "TETHER_PTY_IGNORED_SIGNALS"

// TestSessionsGetDefaultSignals runs sessions in a process that ignores
// the signals a terminal relies on: SIGINT and SIGHUP ignored from the
// start (as for a job started with '&' from a script, or with nohup), and
// SIGQUIT and SIGPIPE through signal.Ignore. The session's process must
// not inherit that, or ^C and ^\ do nothing in the shell.
//
// That process is a child: neither state can be undone by a Go program,
// so it must not be this test binary.
func TestSessionsGetDefaultSignals(t *testing.T) {
	if os.Getenv(ignoredSignalsEnv) == "" {
		ctx, cancel := context.WithTimeout(context.Background(), 2*patience)
		defer cancel()
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", `trap "" INT HUP; exec "$0" "$@"`,
			os.Args[0], "-test.run=^TestSessionsGetDefaultSignals$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), ignoredSignalsEnv+"=1")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "the test in a process that ignores the signals:\n%s", out)
		require.Contains(t, string(out), "--- PASS: TestSessionsGetDefaultSignals")
		return
	}

	sigs := []syscall.Signal{syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGPIPE}
	signal.Ignore(syscall.SIGQUIT, syscall.SIGPIPE)
	for _, sig := range sigs {
		require.True(t, signal.Ignored(sig), "the test process should ignore %v", sig)
	}
	r := newRig(t, enabled)
	p := r.shell(t, 80, 24, "grep SigIgn /proc/self/status")
	var seen bytes.Buffer
	out := expect(t, p, "\n", &seen)
	_, mask, ok := strings.Cut(strings.TrimSpace(out), "SigIgn:")
	require.True(t, ok, "got %q; want a SigIgn line", out)
	ignored, err := strconv.ParseUint(strings.TrimSpace(mask), 16, 64)
	require.NoError(t, err, "SigIgn mask %q", mask)
	for _, sig := range sigs {
		require.Zero(t, ignored&(1<<(uint(sig)-1)), "the session's process ignores %v (SigIgn %016x)", sig, ignored)
	}
}
