package agent

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestReloaderCoalesces holds the first run open, asks for five more
// reloads, and checks that every request returns at once and that all five
// share one second run.
func TestReloaderCoalesces(t *testing.T) {
	var runs atomic.Int32
	started := make(chan int32, 10)
	release := make(chan struct{})
	r := &reloader{run: func(ctx context.Context) error {
		n := runs.Add(1)
		started <- n
		<-release
		return errors.New("run " + string(rune('0'+n)))
	}}
	defer r.close()

	first := r.trigger(context.Background())
	require.Equal(t, int32(1), recvWithin(t, started))

	// While run 1 is held, more requests must not block.
	more := make(chan []*reloadResult, 1)
	go func() {
		var rs []*reloadResult
		for range 5 {
			rs = append(rs, r.trigger(context.Background()))
		}
		more <- rs
	}()
	var rest []*reloadResult
	select {
	case rest = <-more:
	case <-time.After(30 * time.Second):
		t.Fatal("trigger blocked while a reload was running")
	}
	for _, res := range rest[1:] {
		require.Same(t, rest[0], res, "requests during one run share the next run")
	}
	require.NotSame(t, first, rest[0], "a request during a run is served by a later run")
	require.Equal(t, 5, r.waiting())

	close(release)
	waitResult(t, first)
	require.EqualError(t, first.err, "run 1")
	waitResult(t, rest[0])
	require.EqualError(t, rest[0].err, "run 2")
	require.Equal(t, int32(2), recvWithin(t, started))
	require.Equal(t, int32(2), runs.Load(), "six requests, two runs")

	// Idle again: a new request starts a new run.
	third := r.trigger(context.Background())
	waitResult(t, third)
	require.EqualError(t, third.err, "run 3")
}

func TestReloaderAfterClose(t *testing.T) {
	r := &reloader{run: func(context.Context) error { return nil }}
	r.close()
	res := r.trigger(context.Background())
	waitResult(t, res)
	require.ErrorIs(t, res.err, ErrAgentClosed)
}

func recvWithin(t *testing.T, ch <-chan int32) int32 {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatal("timed out")
		return 0
	}
}

func waitResult(t *testing.T, r *reloadResult) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		t.Fatal("reload did not finish")
	}
}

func TestTailBuffer(t *testing.T) {
	var b tailBuffer
	b.Write([]byte("first line\nsecond"))
	b.Write([]byte(" line\n"))
	require.Equal(t, "first line | second line", b.String())
	b.Write([]byte(strings.Repeat("x", maxTail) + "END"))
	require.Len(t, b.buf, maxTail)
	require.True(t, strings.HasSuffix(b.String(), "END"))
	for range 100 {
		b.Write([]byte("0123456789"))
	}
	require.Len(t, b.buf, maxTail)
}

func TestRunReloadCommand(t *testing.T) {
	log := testLogger(t)
	ctx := context.Background()
	cases := []struct {
		name    string
		cmd     []string
		timeout time.Duration
		want    string // "" = success
	}{
		{"success", []string{"sh", "-c", "echo ignored stdout"}, 0, ""},
		{"exit status and stderr tail", []string{"sh", "-c", "echo starting >&2; echo 'bad thing' >&2; exit 3"}, 0, "command exited 3: starting | bad thing"},
		{"silent failure", []string{"false"}, 0, "command exited 1 (nothing on stderr)"},
		{"timeout kills the group", []string{"sh", "-c", "echo slow >&2; sleep 60 & sleep 60"}, 200 * time.Millisecond, "command timed out after 200ms and was killed: slow"},
		{"missing program", []string{"/nonexistent/tether-reload"}, 0, `command "/nonexistent/tether-reload" could not run`},
		{"signal", []string{"sh", "-c", "kill -TERM $$"}, 0, "command killed by signal terminated"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := runReloadCommand(ctx, ReloadConfig{Command: tc.cmd, Timeout: tc.timeout}, log)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.True(t, strings.HasPrefix(err.Error(), tc.want), "got %q; want prefix %q", err, tc.want)
		})
	}
}
