//go:build linux

package pty_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/pty"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/wire"
)

// execRig is a real edge (mock) and a device serving exec streams.
type execRig struct {
	srv *pty.ExecServer
	cl  *client.Client
}

func newExecRig(t *testing.T, cfg pty.ExecConfig) *execRig {
	t.Helper()
	cl, dc, _ := mock.NewEdgeMock(t)
	srv := &pty.ExecServer{Config: cfg, Logger: slog.New(slog.NewTextHandler(&testWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	dc.Handle(wire.MsgExec, srv.Serve)
	t.Cleanup(func() {
		require.NoError(t, srv.Close())
		require.Zero(t, srv.NumRunning(), "commands left after Close")
	})
	return &execRig{srv: srv, cl: cl}
}

// result is what a command did.
type result struct {
	stdout, stderr string
	status         wire.ExitStatus
	err            error
}

// run runs command with stdin and waits for its end.
func (r *execRig) run(t *testing.T, command string, stdin []byte) result {
	t.Helper()
	e, err := pty.Exec(ctxT(t), r.cl, command)
	require.NoError(t, err)
	defer e.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if len(stdin) > 0 {
			if _, err := e.Write(stdin); err != nil {
				return
			}
		}
		_ = e.CloseWrite()
	}()
	var out, errOut bytes.Buffer
	es, err := e.Wait(&out, &errOut)
	e.Close()
	wg.Wait()
	return result{stdout: out.String(), stderr: errOut.String(), status: es, err: err}
}

func TestExec(t *testing.T) {
	r := newExecRig(t, pty.ExecConfig{Enabled: true, Shell: "/bin/sh"})
	t.Run("stdout and stderr apart", func(t *testing.T) {
		res := r.run(t, "echo to-out; echo to-err >&2; exit 3", nil)
		require.NoError(t, res.err)
		require.Equal(t, "to-out\n", res.stdout)
		require.Equal(t, "to-err\n", res.stderr)
		require.Equal(t, wire.ExitStatus{Exited: true, Code: 3}, res.status)
	})
	t.Run("a pipeline through the shell", func(t *testing.T) {
		res := r.run(t, "echo a | tr a b", nil)
		require.NoError(t, res.err)
		require.Equal(t, "b\n", res.stdout)
	})
	t.Run("binary stdin through cat", func(t *testing.T) {
		in := make([]byte, 300_000)
		_, _ = rand.Read(in)
		res := r.run(t, "cat", in)
		require.NoError(t, res.err)
		require.True(t, bytes.Equal(in, []byte(res.stdout)), "cat returned %d bytes, not the %d sent", len(res.stdout), len(in))
		require.Zero(t, res.status.Code)
	})
	t.Run("128+N for a signal", func(t *testing.T) {
		res := r.run(t, "kill -KILL $$", nil)
		require.NoError(t, res.err)
		require.Equal(t, wire.ExitStatus{Exited: true, Code: 137, Signal: "KILL"}, res.status)
	})
	t.Run("the login shell reads stdin", func(t *testing.T) {
		res := r.run(t, "", []byte("echo hi-$((6*7))\nexit 4\n"))
		require.NoError(t, res.err)
		require.Equal(t, "hi-42\n", res.stdout)
		require.Equal(t, 4, res.status.Code)
	})
	t.Run("a clean environment without a terminal", func(t *testing.T) {
		res := r.run(t, "env; test -t 0 || echo no-tty", nil)
		require.NoError(t, res.err)
		require.Contains(t, res.stdout, "PATH=")
		require.Contains(t, res.stdout, "no-tty")
		require.NotContains(t, res.stdout, "TERM=")
		require.NotContains(t, res.stdout, "GOFLAGS")
	})
}

func TestExecRefusals(t *testing.T) {
	r := newExecRig(t, pty.ExecConfig{})
	_, err := pty.Exec(ctxT(t), r.cl, "true")
	require.Contains(t, remoteErr(t, err), "exec.enabled")

	r.srv.SetConfig(pty.ExecConfig{Enabled: true, Shell: "/bin/sh", MaxSessions: 1})
	first, err := pty.Exec(ctxT(t), r.cl, "sleep 600")
	require.NoError(t, err)
	defer first.Close()
	_, err = pty.Exec(ctxT(t), r.cl, "true")
	require.Contains(t, remoteErr(t, err), "too many commands")
}

// A client that leaves hangs the command up: its processes are killed and
// reaped, background jobs too.
func TestExecHangUp(t *testing.T) {
	r := newExecRig(t, pty.ExecConfig{Enabled: true, Shell: "/bin/sh"})
	e, err := pty.Exec(ctxT(t), r.cl, "sleep 600 & echo $$; wait")
	require.NoError(t, err)
	pr, pw := io.Pipe()
	done := make(chan result, 1)
	go func() {
		es, err := e.Wait(pw, io.Discard)
		pw.CloseWithError(err)
		done <- result{status: es, err: err}
	}()
	line := make([]byte, 32)
	n, err := pr.Read(line)
	require.NoError(t, err)
	sid, err := strconv.Atoi(strings.TrimSpace(string(line[:n])))
	require.NoError(t, err)
	require.NotEmpty(t, sessionProcs(t, sid))
	require.NoError(t, e.Close())
	res := <-done
	require.Error(t, res.err)
	require.Eventually(t, func() bool { return r.srv.NumRunning() == 0 }, patience, 10*time.Millisecond)
	require.Eventually(t, func() bool { return len(sessionProcs(t, sid)) == 0 }, patience, 10*time.Millisecond,
		"processes of the command outlived its stream: %v", sessionProcs(t, sid))
}

// Output the client does not read stalls the command (the stream's window
// carries backpressure) rather than piling up on the device.
func TestExecBackpressure(t *testing.T) {
	r := newExecRig(t, pty.ExecConfig{Enabled: true, Shell: "/bin/sh"})
	e, err := pty.Exec(ctxT(t), r.cl, "head -c 50000000 /dev/zero; echo finished >&2")
	require.NoError(t, err)
	defer e.Close()
	// Nothing is read for a while; then everything arrives, in order, and
	// the status after it.
	time.Sleep(200 * time.Millisecond)
	var n countWriter
	var errOut bytes.Buffer
	es, err := e.Wait(&n, &errOut)
	require.NoError(t, err)
	require.Equal(t, int64(50_000_000), n.n)
	require.Equal(t, "finished\n", errOut.String())
	require.Zero(t, es.Code)
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	for _, b := range p {
		if b != 0 {
			return 0, errors.New("unexpected byte")
		}
	}
	c.n += int64(len(p))
	return len(p), nil
}

// Commands run as the configured user with a shell's clean environment.
func TestExecRunAsConfiguredUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching users needs root; the agent runs as root on devices")
	}
	if _, err := exec.LookPath("useradd"); err != nil {
		t.Skip("useradd is not installed, so no test user can be made")
	}
	name, group := addUser(t)
	u, err := user.Lookup(name)
	require.NoError(t, err)
	g, err := user.LookupGroup(group)
	require.NoError(t, err)

	r := newExecRig(t, pty.ExecConfig{Enabled: true, User: name})
	res := r.run(t, `echo "uid=$(id -u) gid=$(id -g) groups=$(id -G) home=$HOME user=$USER shell=$SHELL cwd=$(pwd) zero=$0"`, nil)
	require.NoError(t, res.err)
	require.Contains(t, res.stdout, "uid="+u.Uid+" gid="+u.Gid+" ")
	require.Regexp(t, `groups=[0-9 ]*\b`+g.Gid+`\b`, res.stdout)
	require.Contains(t, res.stdout, "home="+u.HomeDir+" user="+name+" shell=/bin/sh cwd="+u.HomeDir+" zero=sh")

	res = r.run(t, "", []byte("echo \"who=$(id -un) zero=$0\"\n"))
	require.NoError(t, res.err)
	require.Equal(t, "who="+name+" zero=-sh\n", res.stdout, "the login shell, as the user")

	r.srv.SetConfig(pty.ExecConfig{Enabled: true, User: "no-such-user-tether"})
	_, err = pty.Exec(ctxT(t), r.cl, "true")
	require.Contains(t, remoteErr(t, err), "not in /etc/passwd")
}

// A client that breaks the framing gets its stream reset, with the reason,
// and the command is hung up.
func TestExecProtocolErrors(t *testing.T) {
	r := newExecRig(t, pty.ExecConfig{Enabled: true, Shell: "/bin/sh"})
	payload, err := wire.ExecRequest{Command: "sleep 600"}.Encode()
	require.NoError(t, err)
	eof, _ := wire.AppendExecFrame(nil, wire.ExecStdinEOF, nil)
	stdin, _ := wire.AppendExecFrame(nil, wire.ExecStdin, []byte("late"))
	cases := []struct {
		name   string
		frames []byte
		reason string
	}{
		{"a device channel", []byte{byte(wire.ExecStdout), 0, 0, 0, 1, 'x'}, "a client may not send a stdout frame"},
		{"data after the end of stdin", append(append([]byte{}, eof...), stdin...), "a client may not send a stdin frame"},
		{"an unknown channel", []byte{0x09, 0, 0, 0, 0}, "unknown channel 0x09"},
		{"an oversized frame", []byte{byte(wire.ExecStdin), 0, 1, 0, 1}, "at most 32768"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, _, err := r.cl.OpenStream(ctxT(t), wire.MsgExec, payload)
			require.NoError(t, err)
			defer st.Close()
			_ = st.SetDeadline(time.Now().Add(patience))
			_, err = st.Write(tc.frames)
			require.NoError(t, err)
			_, err = io.ReadAll(st)
			require.ErrorIs(t, err, transport.ErrStreamReset)
			require.ErrorContains(t, err, tc.reason)
			require.Eventually(t, func() bool { return r.srv.NumRunning() == 0 }, patience, 10*time.Millisecond, "the command was not hung up")
		})
	}
}

// A background job of an exited command may finish its output within the
// drain time; one that outlives it is killed and the status still comes.
func TestExecBackgroundJobs(t *testing.T) {
	r := newExecRig(t, pty.ExecConfig{Enabled: true, Shell: "/bin/sh"})
	res := r.run(t, "(sleep 0.2; echo late) & exit 6", nil)
	require.NoError(t, res.err)
	require.Equal(t, "late\n", res.stdout)
	require.Equal(t, 6, res.status.Code)

	res = r.run(t, "echo $$; sleep 600 & exit 2", nil)
	require.NoError(t, res.err)
	require.Equal(t, 2, res.status.Code)
	sid, err := strconv.Atoi(strings.TrimSpace(res.stdout))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(sessionProcs(t, sid)) == 0 }, patience, 10*time.Millisecond,
		"a background job outlived its command: %v", sessionProcs(t, sid))
}

// TestExecWaitsForTheEndAfterTheExitStatus: Wait returns once the stream
// that brought the exit status has ended, so that a client that closes its
// session as soon as Wait returns never cuts the stream's end on its way
// (the edge would record the stream as cut).
func TestExecWaitsForTheEndAfterTheExitStatus(t *testing.T) {
	cl, dc, _ := mock.NewEdgeMock(t)
	release := make(chan struct{})
	dc.Handle(wire.MsgExec, func(ctx context.Context, st *transport.Stream, _ []byte) error {
		if err := wire.WriteOK(st, nil); err != nil {
			return err
		}
		status, err := wire.ExitStatus{Exited: true, Code: 4}.Encode()
		if err != nil {
			return err
		}
		out, _ := wire.AppendExecFrame(nil, wire.ExecStdout, []byte("done\n"))
		exit, _ := wire.AppendExecFrame(nil, wire.ExecExit, status)
		if _, err := st.Write(append(out, exit...)); err != nil {
			return err
		}
		select { // the stream's end comes later
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	e, err := pty.Exec(ctxT(t), cl, "anything")
	require.NoError(t, err)
	defer e.Close()
	type waited struct {
		st  wire.ExitStatus
		err error
	}
	done := make(chan waited, 1)
	var out bytes.Buffer
	go func() {
		st, err := e.Wait(&out, io.Discard)
		done <- waited{st, err}
	}()
	select {
	case w := <-done:
		t.Fatalf("Wait returned before the stream ended: %+v", w)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	w := <-done
	require.NoError(t, w.err)
	require.Equal(t, 4, w.st.Code)
	require.Equal(t, "done\n", out.String())
}
