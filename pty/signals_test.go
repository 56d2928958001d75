package pty_test

import (
	"bytes"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSessionsGetDefaultSignals runs sessions in a process that ignores
// the signals a terminal relies on (signal.Ignore; a process started with
// SIGINT ignored is in the same state): the session's process must not
// inherit that, or ^C and ^\ do nothing in the shell.
func TestSessionsGetDefaultSignals(t *testing.T) {
	sigs := []syscall.Signal{syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGPIPE}
	for _, sig := range sigs {
		signal.Ignore(sig)
	}
	t.Cleanup(func() {
		for _, sig := range sigs {
			signal.Reset(sig)
		}
	})
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
