//go:build linux

package pty_test

import (
	"bytes"
	"fmt"
	"os"
	"os/user"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/pty"
	"github.com/tetherhq/tether/transport/wire"
)

var enabled = pty.Config{Enabled: true}

func TestSizeAndResize(t *testing.T) {
	r := newRig(t, enabled)
	p := r.shell(t, 123, 45, "stty size; read x; stty size")
	var seen bytes.Buffer
	expect(t, p, "45 123", &seen)

	require.NoError(t, pty.Resize(ctxT(t), r.cl, p.ID, 100, 30))
	_, err := p.Write([]byte("\n"))
	require.NoError(t, err)
	expect(t, p, "30 100", &seen)
	readAll(t, p)
	require.Equal(t, wire.ExitStatus{Exited: true, Code: 0}, r.exitStatus(t, p.ID))
}

func TestResizeSendsSIGWINCH(t *testing.T) {
	r := newRig(t, enabled)
	p := r.shell(t, 80, 24, `trap 'echo "winch $(stty size)"' WINCH; echo ready; while :; do sleep 0.05; done`)
	var seen bytes.Buffer
	expect(t, p, "ready", &seen)
	require.NoError(t, pty.Resize(ctxT(t), r.cl, p.ID, 132, 50))
	expect(t, p, "winch 50 132", &seen)
}

func TestDefaultSize(t *testing.T) {
	r := newRig(t, enabled)
	p := r.shell(t, 0, 0, "stty size")
	require.Contains(t, readAll(t, p), fmt.Sprintf("%d %d", pty.DefaultRows, pty.DefaultCols))
}

func TestExitCode(t *testing.T) {
	r := newRig(t, enabled)
	p := r.shell(t, 80, 24, "echo bye; exit 7")
	require.Contains(t, readAll(t, p), "bye")
	es := r.exitStatus(t, p.ID)
	require.Equal(t, wire.ExitStatus{Exited: true, Code: 7}, es)
	require.Equal(t, "exit code 7", es.String())
}

func TestKilledChildReportsSignal(t *testing.T) {
	r := newRig(t, enabled)
	p := r.shell(t, 80, 24, "kill -9 $$")
	readAll(t, p)
	es := r.exitStatus(t, p.ID)
	require.Equal(t, wire.ExitStatus{Exited: true, Code: 128 + 9, Signal: "KILL"}, es)
}

func TestStatusWhileRunning(t *testing.T) {
	r := newRig(t, enabled)
	p := r.shell(t, 80, 24, "echo up; read x")
	var seen bytes.Buffer
	expect(t, p, "up", &seen)
	es, err := pty.Status(ctxT(t), r.cl, p.ID)
	require.NoError(t, err)
	require.Equal(t, wire.ExitStatus{}, es)
	require.Equal(t, "running", es.String())

	_, err = p.Write([]byte("\n"))
	require.NoError(t, err)
	readAll(t, p)
	require.Equal(t, wire.ExitStatus{Exited: true}, r.exitStatus(t, p.ID))
}

func TestLoginShellEnvironment(t *testing.T) {
	t.Setenv("TETHER_AGENT_SECRET", "must-not-leak")
	r := newRig(t, enabled)
	p := r.open(t, pty.Request{Cols: 80, Rows: 24, Term: "vt100"})
	var seen bytes.Buffer
	_, err := p.Write([]byte("echo \"arg0=$0 T=$TERM S=[$TETHER_AGENT_SECRET] P=$(pwd)\"; exit 3\n"))
	require.NoError(t, err)
	out := expect(t, p, "P=", &seen)
	out += readAll(t, p)
	self, err := user.Current() // the passwd entry, not the test's $HOME
	require.NoError(t, err)
	require.Regexp(t, regexp.MustCompile(`arg0=-\S+ T=vt100 S=\[\] P=`+regexp.QuoteMeta(self.HomeDir)), out)
	require.Equal(t, wire.ExitStatus{Exited: true, Code: 3}, r.exitStatus(t, p.ID))
}

func TestEnvironmentIsBuiltExplicitly(t *testing.T) {
	t.Setenv("TETHER_AGENT_SECRET", "must-not-leak")
	t.Setenv("LANG", "C.UTF-8")
	r := newRig(t, enabled)
	p := r.open(t, pty.Request{Cols: 80, Rows: 24, Command: "env"})
	out := readAll(t, p)
	var names []string
	for _, line := range strings.Split(strings.ReplaceAll(out, "\r", ""), "\n") {
		if k, _, ok := strings.Cut(line, "="); ok {
			names = append(names, k)
		}
	}
	require.ElementsMatch(t, []string{"TERM", "HOME", "USER", "LOGNAME", "SHELL", "PATH", "LANG"}, names, "env printed %q", out)
	require.Contains(t, out, "TERM="+wire.DefaultPTYTerm)
	require.Contains(t, out, "LANG=C.UTF-8")
}

func TestConfiguredShell(t *testing.T) {
	r := newRig(t, pty.Config{Enabled: true, Shell: "/bin/sh"})
	p := r.open(t, pty.Request{Cols: 80, Rows: 24})
	_, err := p.Write([]byte("echo \"zero=$0 shell=$SHELL\"; exit\n"))
	require.NoError(t, err)
	require.Contains(t, readAll(t, p), "zero=-sh shell=/bin/sh")
}

func TestCommandNotFound(t *testing.T) {
	r := newRig(t, enabled)
	_, err := pty.Open(ctxT(t), r.cl, pty.Request{Command: "no-such-command-tether"})
	require.Contains(t, remoteErr(t, err), "not found in PATH")
}

func TestOutputIsDrainedAfterExit(t *testing.T) {
	r := newRig(t, enabled)
	const n = 200_000
	p := r.shell(t, 80, 24, fmt.Sprintf("head -c %d /dev/zero | tr '\\000' a; exit 4", n))
	out := readAll(t, p)
	require.Equal(t, n, strings.Count(out, "a"))
	require.Equal(t, 4, r.exitStatus(t, p.ID).Code)
}

func TestSendEOFEndsInput(t *testing.T) {
	for _, tc := range []struct{ name, input string }{
		{"after a full line", "hello\n"},
		{"after a partial line", "partial"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, enabled)
			p := r.open(t, pty.Request{Cols: 80, Rows: 24, Command: "cat"})
			_, err := p.Write([]byte(tc.input))
			require.NoError(t, err)
			require.NoError(t, p.SendEOF())
			require.Contains(t, readAll(t, p), strings.TrimSpace(tc.input))
			require.Equal(t, wire.ExitStatus{Exited: true}, r.exitStatus(t, p.ID))
		})
	}
}

// TestHangupLeavesNothing closes the stream of a session whose processes
// ignore SIGHUP, one of them a background job in its own process group:
// SIGKILL must reach all of them after the grace period, and nothing of the
// session may be left, not even a zombie.
func TestHangupLeavesNothing(t *testing.T) {
	r := newRig(t, enabled)
	p := r.shell(t, 80, 24, `set -m; trap '' HUP; sleep 1000 & echo "pid=$$ job=$!"; wait`)
	var seen bytes.Buffer
	out := expect(t, p, "job=", &seen)
	m := regexp.MustCompile(`pid=(\d+) job=(\d+)`).FindStringSubmatch(expect(t, p, "\n", &seen))
	require.NotNil(t, m, "output %q", out)
	pid, _ := strconv.Atoi(m[1])
	job, _ := strconv.Atoi(m[2])
	require.NotEmpty(t, sessionProcs(t, pid))
	leader, ok := readProc(job)
	require.True(t, ok)
	require.Equal(t, pid, leader.session, "the background job should be in the session")

	require.NoError(t, p.Close())
	require.Eventually(t, func() bool {
		return len(sessionProcs(t, pid)) == 0 && r.srv.NumSessions() == 0
	}, patience, 20*time.Millisecond, "left behind: %v", sessionProcs(t, pid))
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	require.True(t, os.IsNotExist(err), "the session leader %d was not reaped", pid)
	_, err = os.Stat(fmt.Sprintf("/proc/%d", job))
	require.True(t, os.IsNotExist(err), "the background job %d is still there", job)

	es := r.exitStatus(t, p.ID)
	require.Equal(t, wire.ExitStatus{Exited: true, Code: 137, Signal: "KILL"}, es)
}

func TestHangupSendsSIGHUP(t *testing.T) {
	r := newRig(t, enabled)
	p := r.shell(t, 80, 24, `echo "pid=$$"; sleep 1000`)
	var seen bytes.Buffer
	expect(t, p, "\n", &seen)
	pid, err := strconv.Atoi(regexp.MustCompile(`pid=(\d+)`).FindStringSubmatch(seen.String())[1])
	require.NoError(t, err)
	require.NoError(t, p.CloseWrite())
	require.Eventually(t, func() bool { return len(sessionProcs(t, pid)) == 0 }, patience, 20*time.Millisecond)
	require.Equal(t, wire.ExitStatus{Exited: true, Code: 129, Signal: "HUP"}, r.exitStatus(t, p.ID))
}

func TestNoLeakedFDs(t *testing.T) {
	r := newRig(t, enabled)
	session := func(script string, hangup bool) {
		p := r.shell(t, 80, 24, script)
		if hangup {
			var seen bytes.Buffer
			expect(t, p, "go", &seen)
			require.NoError(t, p.Close())
		} else {
			readAll(t, p)
			require.True(t, r.exitStatus(t, p.ID).Exited)
			require.NoError(t, p.Close())
		}
		require.Eventually(t, func() bool { return r.srv.NumSessions() == 0 }, patience, 10*time.Millisecond)
	}
	session("echo warm-up", false) // the first session sets up lazily created runtime fds
	// With the collector off, no finalizer closes a forgotten *os.File
	// behind the test's back.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	before := countFDs(t)
	for i := range 5 {
		session(fmt.Sprintf("echo run %d", i), false)
		session("echo go; sleep 1000", true)
		// A start that fails after the terminal was opened.
		r.srv.SetConfig(pty.Config{Enabled: true, Shell: "/etc/passwd"})
		_, err := pty.Open(ctxT(t), r.cl, pty.Request{})
		require.Contains(t, remoteErr(t, err), "permission denied")
		r.srv.SetConfig(enabled)
	}
	require.Eventually(t, func() bool { return countFDs(t) <= before }, patience, 20*time.Millisecond,
		"fds: %d before, %d after", before, countFDs(t))
}

func TestUnknownSession(t *testing.T) {
	r := newRig(t, enabled)
	err := pty.Resize(ctxT(t), r.cl, "00112233445566778899aabbccddeeff", 80, 24)
	require.Contains(t, remoteErr(t, err), "no such shell session")
	_, err = pty.WaitExit(ctxT(t), r.cl, "00112233445566778899aabbccddeeff")
	require.Contains(t, remoteErr(t, err), "no such shell session")
}

func TestResizeAfterExit(t *testing.T) {
	r := newRig(t, enabled)
	p := r.shell(t, 80, 24, "exit 0")
	readAll(t, p)
	require.True(t, r.exitStatus(t, p.ID).Exited)
	require.Eventually(t, func() bool { return r.srv.NumSessions() == 0 }, patience, 10*time.Millisecond)
	require.Contains(t, remoteErr(t, pty.Resize(ctxT(t), r.cl, p.ID, 80, 24)), "ended")
}

func TestBadCommand(t *testing.T) {
	r := newRig(t, enabled)
	for name, payload := range map[string]string{
		"not JSON":      "{",
		"negative size": `{"sid":"x","type":0,"cols":-1,"rows":2}`,
		"unknown type":  `{"sid":"x","type":9}`,
		"zero size":     `{"sid":"x","type":0,"cols":0,"rows":0}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := r.cl.OpenStream(ctxT(t), wire.MsgPTYCommand, []byte(payload))
			remoteErr(t, err)
		})
	}
	// The edge may refuse it first ("bad pty request"); either way the
	// client is told the request is malformed.
	_, _, err := r.cl.OpenStream(ctxT(t), wire.MsgPTY, []byte(`{"cols":"wide"}`))
	require.Contains(t, strings.ToLower(remoteErr(t, err)), "bad pty request")
}

func TestMaxSessions(t *testing.T) {
	r := newRig(t, pty.Config{Enabled: true, MaxSessions: 1})
	p := r.shell(t, 80, 24, "echo one; read x")
	var seen bytes.Buffer
	expect(t, p, "one", &seen)
	_, err := pty.Open(ctxT(t), r.cl, pty.Request{Command: "true"})
	require.Contains(t, remoteErr(t, err), "too many shell sessions")

	require.NoError(t, p.Close())
	require.Eventually(t, func() bool { return r.srv.NumSessions() == 0 }, patience, 10*time.Millisecond)
	p2 := r.shell(t, 80, 24, "echo two")
	require.Contains(t, readAll(t, p2), "two")
}

func TestDisabledByDefault(t *testing.T) {
	r := newRig(t, pty.Config{})
	_, err := pty.Open(ctxT(t), r.cl, pty.Request{})
	require.Contains(t, remoteErr(t, err), "disabled")

	r.srv.SetConfig(enabled) // a reload turns it on
	p := r.shell(t, 80, 24, "echo on; read x; stty size")
	var seen bytes.Buffer
	expect(t, p, "on", &seen)

	// A reload that turns it off refuses new sessions; the running one
	// goes on and can still be resized.
	r.srv.SetConfig(pty.Config{})
	_, err = pty.Open(ctxT(t), r.cl, pty.Request{})
	require.Contains(t, remoteErr(t, err), "disabled")
	require.NoError(t, pty.Resize(ctxT(t), r.cl, p.ID, 99, 33))
	_, err = p.Write([]byte("\n"))
	require.NoError(t, err)
	expect(t, p, "33 99", &seen)
	readAll(t, p)
	require.Equal(t, wire.ExitStatus{Exited: true}, r.exitStatus(t, p.ID))
}

func TestIdleTimeout(t *testing.T) {
	r := newRig(t, pty.Config{Enabled: true, IdleTimeout: 200 * time.Millisecond})
	p := r.shell(t, 80, 24, "echo idle; sleep 1000")
	require.Contains(t, readAll(t, p), "idle") // the device ends the session by itself
	require.Equal(t, "HUP", r.exitStatus(t, p.ID).Signal)
}

func TestCloseEndsSessions(t *testing.T) {
	r := newRig(t, enabled)
	p := r.shell(t, 80, 24, `echo "pid=$$"; sleep 1000`)
	var seen bytes.Buffer
	expect(t, p, "\n", &seen)
	pid, err := strconv.Atoi(regexp.MustCompile(`pid=(\d+)`).FindStringSubmatch(seen.String())[1])
	require.NoError(t, err)
	require.NoError(t, r.srv.Close())
	require.Zero(t, r.srv.NumSessions())
	// The leader is reaped by Close; orphans that got the hang-up are
	// reaped by init.
	require.Eventually(t, func() bool { return len(sessionProcs(t, pid)) == 0 }, patience, 20*time.Millisecond,
		"left behind: %v", sessionProcs(t, pid))
	_, err = os.Stat(fmt.Sprintf("/proc/%d", pid))
	require.True(t, os.IsNotExist(err), "the session leader %d was not reaped", pid)
	readAll(t, p)
	_, err = pty.Open(ctxT(t), r.cl, pty.Request{})
	require.Contains(t, remoteErr(t, err), "shutting down")
}

// TestCloseWithStalledClient ends a session whose client stopped reading
// while the process floods the terminal: teardown must not wait on the
// stalled stream for ever.
func TestCloseWithStalledClient(t *testing.T) {
	r := newRig(t, enabled)
	// yes ignores the hang-up, so it floods until SIGKILL: by then the
	// stream's windows are full and the drain must give up on it.
	p := r.shell(t, 80, 24, `trap '' HUP; echo "pid=$$"; exec yes`)
	var seen bytes.Buffer
	expect(t, p, "\n", &seen)
	pid, err := strconv.Atoi(regexp.MustCompile(`pid=(\d+)`).FindStringSubmatch(seen.String())[1])
	require.NoError(t, err)

	closed := make(chan error, 1)
	go func() { closed <- r.srv.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(patience):
		t.Fatal("Close did not return while the client was stalled")
	}
	require.Eventually(t, func() bool { return len(sessionProcs(t, pid)) == 0 }, patience, 20*time.Millisecond,
		"left behind: %v", sessionProcs(t, pid))
	require.Equal(t, "KILL", r.exitStatus(t, p.ID).Signal)
}
