//go:build linux

package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tetherhq/tether/internal/testutil"
)

func TestShellCommands(t *testing.T) {
	f := newFleet(t)
	f.addAgent("d1", "")

	// Stdin is not a terminal in these: the commands run without one.
	t.Run("exit code of the remote command", func(t *testing.T) {
		out, errOut, code := f.tether("", "shell", "d1", "--", "echo from-the-device; exit 7")
		require.Equal(t, 7, code, errOut)
		require.Equal(t, "from-the-device\n", out)
	})
	t.Run("128+N for a signal", func(t *testing.T) {
		_, errOut, code := f.tether("", "shell", "d1", "--", "kill", "-TERM", "$$")
		require.Equal(t, 128+15, code, errOut)
	})
	t.Run("a piped script runs in the login shell and returns", func(t *testing.T) {
		out, errOut, code := f.tether("echo piped-$((6*7))\nexit 3\n", "shell", "d1")
		require.Equal(t, 3, code, errOut)
		require.Equal(t, "piped-42\n", out)
	})
	t.Run("echo 'echo hi' | tether shell d1", func(t *testing.T) {
		out, errOut, code := f.tether("echo hi\n", "shell", "d1")
		require.Equal(t, 0, code, errOut)
		require.Equal(t, "hi\n", out, "no terminal echo, no prompt")
	})
	t.Run("the end of stdin reaches the command", func(t *testing.T) {
		out, errOut, code := f.tether("one line\n", "shell", "d1", "--", "cat")
		require.Equal(t, 0, code, errOut)
		require.Equal(t, "one line\n", out)
	})
	t.Run("-t gets a terminal with a pipe for stdin", func(t *testing.T) {
		out, errOut, code := f.tether("", "shell", "-t", "d1", "--", "tty; stty size")
		require.Equal(t, 0, code, errOut)
		require.Contains(t, out, "/dev/pts/")
		require.Contains(t, out, "24 80", "a terminal without a local one is 80x24")
	})
	t.Run("without -t there is no terminal", func(t *testing.T) {
		out, _, code := f.tether("", "shell", "d1", "--", "tty")
		require.Equal(t, 1, code)
		require.Contains(t, out, "not a tty")
	})
	t.Run("-t and -T together", func(t *testing.T) {
		_, errOut, code := f.tether("", "shell", "-t", "-T", "d1")
		require.Equal(t, ExitUsage, code)
		require.Contains(t, errOut, "-T forbids one")
	})
	t.Run("input the command never reads does not hide its exit code", func(t *testing.T) {
		// The device closes the stream with this input unread and resets it
		// after its FIN: only the client's writes fail.
		input := strings.Repeat("input nobody reads\n", 200_000)
		exec, pty := []string{"shell", "d1", "--", "exit 5"}, []string{"shell", "-t", "d1", "--", "exit 5"}
		runs := [][]string{exec, pty, exec, pty, exec, pty}
		for _, args := range runs {
			_, errOut, code := f.tether(input, args...)
			require.Equal(t, 5, code, "tether %s: %s", strings.Join(args, " "), errOut)
		}
		// The edge audits both ends as normal ones, though the client exits,
		// closing its session, as soon as it has the exit status.
		closes := func() (all []string) {
			for _, l := range strings.Split(f.edge.Stdout(), "\n") {
				if strings.Contains(l, `"event":"stream_close"`) && strings.Contains(l, `exit 5"`) {
					all = append(all, l)
				}
			}
			return all
		}
		require.Eventually(t, func() bool { return len(closes()) == len(runs) }, 10*time.Second, 50*time.Millisecond)
		for _, l := range closes() {
			require.Contains(t, l, `"result":"ok"`)
		}
	})
	t.Run("a command the device cannot run", func(t *testing.T) {
		_, errOut, code := f.tether("", "shell", "d1", "--", "/nonexistent/program")
		require.Equal(t, 127, code, "the shell's code for a missing command")
		require.Contains(t, errOut, "/nonexistent/program")
	})
}

func TestShellLostSession(t *testing.T) {
	f := newFleet(t)
	f.addAgent("d1", "")
	sh := f.startTether(true, "shell", "d1", "--", "echo started; sleep 120")
	require.Eventually(t, func() bool { return strings.Contains(sh.Stdout(), "started") },
		30*time.Second, 20*time.Millisecond, "the command did not start:\n%s", sh.Stderr())
	f.edge.Kill9()
	require.Equal(t, ExitLost, exitCode(t, sh), sh.Stderr())
	require.Contains(t, sh.Stderr(), "connection to the edge was lost")
	sh.Stdin.Close()
}

// tmux drives the built tether shell on a real terminal.
type tmux struct {
	t    *testing.T
	sock string
}

func (m *tmux) run(args ...string) (string, error) {
	cmd := exec.Command("tmux", append([]string{"-S", m.sock, "-f", "/dev/null"}, args...)...)
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (m *tmux) pane() string {
	out, _ := m.run("capture-pane", "-p", "-t", "s")
	return out
}

// shellInTmux starts `tether shell d1` (or tether with shellArgs) in a tmux pane of 100x30 through a
// script that records the terminal mode before and after tether (files
// before and after in dir), tether's PID (pid) and its exit code (code).
func shellInTmux(t *testing.T, f *fleet, shellArgs ...string) (m *tmux, dir string) {
	t.Helper()
	testutil.NeedTool(t, "tmux", "tmux")
	dir = t.TempDir()
	m = &tmux{t: t, sock: filepath.Join(dir, "tmux.sock")}
	script := filepath.Join(dir, "run.sh")
	if len(shellArgs) == 0 {
		shellArgs = []string{"shell", "d1"}
	}
	cmdline := strings.Join(quoteAll(append([]string{binPath("tether")}, f.args(f.token, shellArgs...)...)), " ")
	require.NoError(t, os.WriteFile(script, []byte(fmt.Sprintf(`#!/bin/sh
stty -g > %[1]s/before
sh -c 'echo $$ > %[1]s/pid; exec %[2]s'
echo $? > %[1]s/code.tmp
stty -g > %[1]s/after
mv %[1]s/code.tmp %[1]s/code
sleep 60
`, dir, strings.ReplaceAll(cmdline, "'", `'\''`))), 0o700))
	out, err := m.run("new-session", "-d", "-s", "s", "-x", "100", "-y", "30", script)
	require.NoError(t, err, out)
	t.Cleanup(func() { _, _ = m.run("kill-server") })
	m.wait("no prompt", func(p string) bool {
		p = strings.TrimRight(p, "\n ")
		return strings.HasSuffix(p, "$") || strings.HasSuffix(p, "#")
	})
	return m, dir
}

func (m *tmux) wait(what string, cond func(string) bool) {
	m.t.Helper()
	require.Eventually(m.t, func() bool { return cond(m.pane()) }, 30*time.Second, 50*time.Millisecond,
		"%s; the pane shows:\n%s", what, m.pane())
}

// finished waits for the script of shellInTmux to record tether's exit,
// checks that the terminal mode was restored, and returns the exit code.
func finished(t *testing.T, m *tmux, dir string) string {
	t.Helper()
	require.Eventually(t, func() bool {
		_, err := os.Stat(filepath.Join(dir, "code"))
		return err == nil
	}, 30*time.Second, 50*time.Millisecond, "tether shell did not exit:\n%s", m.pane())
	code, err := os.ReadFile(filepath.Join(dir, "code"))
	require.NoError(t, err)
	before, err := os.ReadFile(filepath.Join(dir, "before"))
	require.NoError(t, err)
	after, err := os.ReadFile(filepath.Join(dir, "after"))
	require.NoError(t, err)
	require.Equal(t, string(before), string(after), "the terminal mode was not restored")
	return strings.TrimSpace(string(code))
}

// TestShellInteractive runs tether shell inside tmux: a prompt appears, a
// typed command runs, a window resize reaches the remote terminal, and the
// local terminal is restored after the session.
func TestShellInteractive(t *testing.T) {
	f := newFleet(t)
	f.addAgent("d1", "")
	m, dir := shellInTmux(t, f)
	_, err := m.run("send-keys", "-t", "s", "echo typed-$((6*7))", "Enter")
	require.NoError(t, err)
	m.wait("the typed command did not run", func(p string) bool { return strings.Contains(p, "typed-42") })

	_, err = m.run("send-keys", "-t", "s", "stty size", "Enter")
	require.NoError(t, err)
	m.wait("the initial size did not reach the device", func(p string) bool { return strings.Contains(p, "30 100") })

	out, err := m.run("resize-window", "-t", "s", "-x", "120", "-y", "40")
	require.NoError(t, err, out)
	// The resize reaches the device asynchronously: ask until it shows.
	require.Eventually(t, func() bool {
		if strings.Contains(m.pane(), "40 120") {
			return true
		}
		_, _ = m.run("send-keys", "-t", "s", "stty size", "Enter")
		return false
	}, 30*time.Second, 500*time.Millisecond, "the resize did not reach the device:\n%s", m.pane())

	// Ctrl-C goes to the remote program, not to tether.
	_, err = m.run("send-keys", "-t", "s", `echo sl""eeping-now; sleep 600`, "Enter")
	require.NoError(t, err)
	m.wait("sleep did not start", func(p string) bool { return strings.Contains(p, "\nsleeping-now") })
	_, err = m.run("send-keys", "-t", "s", "C-c")
	require.NoError(t, err)
	_, err = m.run("send-keys", "-t", "s", "echo after-$((2*21))", "Enter")
	require.NoError(t, err)
	m.wait("Ctrl-C did not reach the remote sleep", func(p string) bool { return strings.Contains(p, "after-42") })
	_, err = os.Stat(filepath.Join(dir, "code"))
	require.ErrorIs(t, err, os.ErrNotExist, "tether exited on Ctrl-C")

	_, err = m.run("send-keys", "-t", "s", "exit 5", "Enter")
	require.NoError(t, err)
	require.Equal(t, "5", finished(t, m, dir))
}

// TestShellRestoresTerminalOnSignal: SIGTERM ends tether shell with 130 and
// a restored terminal.
func TestShellRestoresTerminalOnSignal(t *testing.T) {
	f := newFleet(t)
	f.addAgent("d1", "")
	m, dir := shellInTmux(t, f)
	pidText, err := os.ReadFile(filepath.Join(dir, "pid"))
	require.NoError(t, err)
	var pid int
	_, err = fmt.Sscan(string(pidText), &pid)
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pid, syscall.SIGTERM))
	require.Equal(t, "130", finished(t, m, dir))
}

// quoteAll quotes each argument for /bin/sh.
func quoteAll(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return out
}
